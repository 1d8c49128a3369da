//! `[tls]`: how pod certificates are verified, and the run's one HTTPS client.
//!
//! Exactly one of: `ca` (verify against this CA, names included), `pins` (SHA-256 of
//! the DER certificates to trust: a pod's own certificate, or the CA certificate
//! its chain presents, which must then verify the pod's certificate), or
//! `insecure = true` (curl -k, warned on every run).
//!
//! `server_name` (with `ca` or `pins`): the name pod certificates are verified
//! against instead of the pod's IP, for appliances whose certificates name the
//! cluster, not each pod (kubeconfig's `tls-server-name`, curl's `--connect-to`).
//! Connections still go only to the pod IPs the allow-list permits: the name changes
//! what is verified, never where a request goes. A certificate that fails is
//! explained in the host's words: the `[tls]` key at fault, the names the
//! certificate carries, and what to set instead.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::ServerName;

use super::policy::HttpPolicy;
use crate::frame::{SiteError, SiteFile};

#[derive(Debug, Clone)]
pub enum Tls {
    /// Verify pod certificates against these CA certificates (PEM, as read), and
    /// against `server_name` instead of the pod's IP when it is set.
    Ca {
        path: PathBuf,
        pem: Vec<u8>,
        server_name: Option<String>,
    },
    /// Trust a certificate whose SHA-256 (of its DER) is one of these; a pinned CA's
    /// chain is verified against `server_name` instead of the pod's IP when set.
    Pins {
        pins: Vec<[u8; 32]>,
        server_name: Option<String>,
    },
    /// Skip verification (`curl -k`): only when the site file says so, warned on every run.
    Insecure,
}

impl Tls {
    /// `[tls] server_name`, if set.
    pub fn server_name(&self) -> Option<&str> {
        match self {
            Tls::Ca { server_name, .. } | Tls::Pins { server_name, .. } => server_name.as_deref(),
            Tls::Insecure => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    ca: Option<PathBuf>,
    pins: Option<Vec<String>>,
    #[serde(default)]
    insecure: bool,
    server_name: Option<String>,
}

/// `[tls] server_name`: a DNS name (or an IP address) as a certificate carries it.
fn parse_server_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    rustls::pki_types::ServerName::try_from(name)
        .map(|_| name.to_string())
        .map_err(|_| {
            format!(
                "{name:?} is not a DNS name (the name the pods' certificates carry, e.g. \"dsm.example.internal\")"
            )
        })
}

/// `sha256:<64 hex>` or `<64 hex>` (colons between bytes allowed, as openssl prints).
fn parse_pin(text: &str) -> Result<[u8; 32], String> {
    let hex: String = text
        .strip_prefix("sha256:")
        .unwrap_or(text)
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} is not a SHA-256 digest (64 hex digits, e.g. from `openssl x509 -noout -fingerprint -sha256`)"
        ));
    }
    let mut pin = [0u8; 32];
    for (i, byte) in pin.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(pin)
}

impl RawTls {
    pub fn validate(self, file: &SiteFile<'_>) -> Result<Tls, SiteError> {
        let server_name = self
            .server_name
            .as_deref()
            .map(parse_server_name)
            .transpose()
            .map_err(|e| file.error("[tls] server_name", e))?;
        if server_name.is_some() && self.insecure {
            return Err(file.error(
                "[tls] server_name",
                "has no effect with `insecure = true` (nothing is verified): \
                 verify against a CA with `ca`, or remove `server_name`",
            ));
        }
        if let Some(pins) = self.pins {
            if self.ca.is_some() || self.insecure {
                return Err(file.error(
                    "[tls]",
                    "set one of `ca`, `pins` or `insecure = true`, not several",
                ));
            }
            if pins.is_empty() {
                return Err(file.error("[tls] pins", "must list at least one SHA-256 digest"));
            }
            let pins = pins
                .iter()
                .map(|p| parse_pin(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file.error("[tls] pins", e))?;
            return Ok(Tls::Pins { pins, server_name });
        }
        match (self.ca.map(|ca| file.resolve(&ca)), self.insecure) {
            (Some(_), true) => {
                Err(file.error("[tls]", "set either `ca` or `insecure = true`, not both"))
            }
            (None, false) => Err(file.error(
                "[tls] ca",
                "missing: pod certificates are verified against this CA \
                 (or pinned with `pins = [\"<sha256>\"]`, \
                 or write `insecure = true` to skip verification, like curl -k)",
            )),
            (None, true) => Ok(Tls::Insecure),
            (Some(ca), false) => {
                let pem = std::fs::read(&ca).map_err(|e| {
                    file.error("[tls] ca", format!("cannot read {}: {e}", ca.display()))
                })?;
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    return Err(file.error(
                        "[tls] ca",
                        format!("{} holds no PEM certificate", ca.display()),
                    ));
                }
                Ok(Tls::Ca {
                    path: ca,
                    pem,
                    server_name,
                })
            }
        }
    }
}

/// ring, with TLS 1.3's AES-128-GCM-SHA256 offered first (as Go's TLS client
/// does): a rotation makes a new handshake with every pod after each restart, and
/// SHA-384's key schedule has no x86 instruction to run on, where SHA-256's has.
fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    provider
}

/// Builds the run's one HTTPS client.
pub fn client(tls: &Tls, policy: &HttpPolicy) -> anyhow::Result<reqwest::Client> {
    let provider = Arc::new(provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let (verifier, key): (Arc<dyn ServerCertVerifier>, _) = match tls {
        Tls::Ca { path, pem, .. } => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            }
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()?;
            (verifier, Key::Ca(path.clone()))
        }
        Tls::Pins { pins, .. } => (
            Arc::new(pinned::Pinned {
                pins: pins.clone(),
                provider: provider.clone(),
            }),
            Key::Pins,
        ),
        Tls::Insecure => (Arc::new(insecure::AcceptAny(provider)), Key::Insecure),
    };
    let server_name = tls
        .server_name()
        .map(|n| ServerName::try_from(n.to_string()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("[tls] server_name: {e}"))?;
    let verifier = Arc::new(explained::Explained {
        inner: verifier,
        server_name,
        key,
        warned: Default::default(),
    });
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(policy.timeout)
        .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
        .build()?)
}

/// The host's explanation of a certificate that failed verification, if `e` (a
/// transport error) carries one: what `http` reports instead of the transport's chain.
pub fn explanation(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) =
        e.downcast_ref::<rustls::Error>()
        && let Some(found) = other.0.downcast_ref::<explained::Explanation>()
    {
        return Some(found.0.clone());
    }
    // hyper and tokio-rustls hand rustls errors over inside `io::Error`s, whose
    // `source()` skips the wrapped error: look inside.
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        && let Some(found) = explanation(inner)
    {
        return Some(found);
    }
    e.source().and_then(explanation)
}

/// The `[tls]` key a verification failure is explained under.
#[derive(Debug, Clone)]
enum Key {
    Ca(PathBuf),
    Pins,
    Insecure,
}

/// Verification against `[tls] server_name` instead of the pod's IP, and failures
/// explained in the host's words: which `[tls]` key is at fault, the names the
/// certificate carries (bounded, quoted: they come from the network), and what to
/// set instead. The first explanation of a run is also logged as a warning.
mod explained {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, SignatureScheme};

    use super::Key;

    #[derive(Debug)]
    pub struct Explained {
        pub inner: Arc<dyn ServerCertVerifier>,
        pub server_name: Option<ServerName<'static>>,
        pub key: Key,
        pub warned: AtomicBool,
    }

    /// The explanation, as the error rustls hands back; [`explanation`] finds it.
    #[derive(Debug)]
    pub(super) struct Explanation(pub String);

    impl std::fmt::Display for Explanation {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Explanation {}

    /// How many of a certificate's names an explanation lists, and how long each may be.
    const MAX_NAMES: usize = 8;
    const MAX_NAME: usize = 100;

    fn name_text(name: &ServerName<'_>) -> String {
        match name {
            ServerName::DnsName(d) => d.as_ref().to_string(),
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            other => format!("{other:?}"),
        }
    }

    /// webpki's rendering of a name (`DnsName("a.b")`, `IpAddress(1.2.3.4)`) as the
    /// name itself, bounded.
    fn presented_name(rendered: &str) -> String {
        let inner = rendered
            .strip_prefix("DnsName(\"")
            .and_then(|r| r.strip_suffix("\")"))
            .or_else(|| {
                rendered
                    .strip_prefix("IpAddress(")
                    .and_then(|r| r.strip_suffix(')'))
            })
            .unwrap_or(rendered);
        inner.chars().take(MAX_NAME).collect()
    }

    fn names_list(presented: &[String]) -> String {
        if presented.is_empty() {
            return "no DNS name or IP address".into();
        }
        let mut names: Vec<String> = presented
            .iter()
            .take(MAX_NAMES)
            .map(|p| format!("{:?}", presented_name(p)))
            .collect();
        if presented.len() > MAX_NAMES {
            names.push(format!("and {} more", presented.len() - MAX_NAMES));
        }
        names.join(", ")
    }

    impl Explained {
        fn explain(&self, error: Error, pod: &ServerName<'_>) -> Error {
            let pod = name_text(pod);
            let presented = match &error {
                Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                    presented,
                    ..
                }) => Some(presented.as_slice()),
                Error::InvalidCertificate(CertificateError::NotValidForName) => Some(&[][..]),
                _ => None,
            };
            let message = match (presented, &self.server_name) {
                (Some(presented), None) => {
                    let key = match &self.key {
                        Key::Pins => "[tls] pins",
                        _ => "[tls] ca",
                    };
                    let example = presented
                        .first()
                        .map(|p| format!(" (e.g. server_name = {:?})", presented_name(p)))
                        .unwrap_or_default();
                    format!(
                        "{key}: invalid peer certificate: the certificate of pod {pod} names {}, not the pod's IP: set [tls] server_name \
                         to the name the pods' certificates carry{example}, or trust them by digest with [tls] pins",
                        names_list(presented)
                    )
                }
                (Some(presented), Some(expected)) => format!(
                    "[tls] server_name: invalid peer certificate: the certificate of pod {pod} names {}, not {:?}: set [tls] server_name \
                     to a name it carries, or trust it by digest with [tls] pins",
                    names_list(presented),
                    name_text(expected)
                ),
                (None, _) => match (&error, &self.key) {
                    (
                        Error::InvalidCertificate(
                            CertificateError::UnknownIssuer | CertificateError::BadSignature,
                        ),
                        Key::Ca(path),
                    ) => format!(
                        "[tls] ca: invalid peer certificate: the certificate of pod {pod} is not issued by the CA in {}: \
                         set [tls] ca to the CA that issued the pods' certificates, or trust them by digest with [tls] pins",
                        path.display()
                    ),
                    (Error::InvalidCertificate(other), Key::Ca(path)) => format!(
                        "[tls] ca: invalid peer certificate: the certificate of pod {pod}, verified against the CA in {}: {other}",
                        path.display()
                    ),
                    _ => return error,
                },
            };
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!("{message}");
            }
            Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Explanation(
                message,
            )))))
        }
    }

    impl ServerCertVerifier for Explained {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            // `server_name` is the pod's IP, from the URL the allow-list checked; the
            // site's name replaces it for verification only.
            let expected = self.server_name.as_ref().unwrap_or(server_name);
            self.inner
                .verify_server_cert(end_entity, intermediates, expected, ocsp, now)
                .map_err(|e| self.explain(e, server_name))
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }

        fn requires_raw_public_keys(&self) -> bool {
            self.inner.requires_raw_public_keys()
        }

        fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
            self.inner.root_hint_subjects()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn names_are_shown_as_written_bounded() {
            assert_eq!(
                presented_name("DnsName(\"dsm.sim.internal\")"),
                "dsm.sim.internal"
            );
            assert_eq!(presented_name("IpAddress(127.0.0.1)"), "127.0.0.1");
            let many: Vec<String> = (0..10).map(|i| format!("DnsName(\"n{i}\")")).collect();
            let list = names_list(&many);
            assert!(list.starts_with("\"n0\", \"n1\""), "{list}");
            assert!(list.ends_with("and 2 more"), "{list}");
            let long = format!("DnsName(\"{}\")", "a".repeat(500));
            assert_eq!(presented_name(&long).len(), MAX_NAME);
            // A name with control characters is quoted, not printed raw.
            assert_eq!(
                names_list(&["DnsName(\"a\u{1b}[31m\")".into()]),
                "\"a\\u{1b}[31m\""
            );
        }
    }
}

/// `pins`: trust by digest. A pod's own certificate whose SHA-256 is pinned is
/// trusted as it is (the pin is its identity). Otherwise a pinned certificate among
/// those the pod presents is taken as the only root, and the pod's certificate must
/// verify against it (signature, validity, the IP in its names): presenting a pinned
/// CA certificate proves nothing by itself, it is public.
mod pinned {
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
    use sha2::{Digest, Sha256};

    #[derive(Debug)]
    pub struct Pinned {
        pub pins: Vec<[u8; 32]>,
        pub provider: Arc<CryptoProvider>,
    }

    impl Pinned {
        fn pinned(&self, cert: &CertificateDer<'_>) -> bool {
            let digest: [u8; 32] = Sha256::digest(cert.as_ref()).into();
            self.pins.contains(&digest)
        }
    }

    impl ServerCertVerifier for Pinned {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            if self.pinned(end_entity) {
                return Ok(ServerCertVerified::assertion());
            }
            for ca in intermediates.iter().filter(|c| self.pinned(c)) {
                let mut roots = RootCertStore::empty();
                if roots.add(ca.clone().into_owned()).is_err() {
                    continue;
                }
                let verifier = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    self.provider.clone(),
                )
                .build()
                .map_err(|e| Error::General(e.to_string()))?;
                return verifier.verify_server_cert(end_entity, &[], server_name, ocsp, now);
            }
            Err(Error::General(
                "no certificate the pod presented matches a pin of [tls] pins".into(),
            ))
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
}

/// `insecure = true`: accept any certificate, like `curl -k`. The handshake's
/// signatures are still checked, so the connection is at least to the holder of the
/// key the pod presented.
mod insecure {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, Error, SignatureScheme};

    #[derive(Debug)]
    pub struct AcceptAny(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cheaper_tls13_suite_comes_first_and_none_is_dropped() {
        let ours: Vec<_> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(ours[0], rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut defaults: Vec<_> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        let mut sorted = ours.clone();
        sorted.sort_by_key(|s| u16::from(*s));
        defaults.sort_by_key(|s| u16::from(*s));
        assert_eq!(sorted, defaults);
    }

    #[test]
    fn pins_are_sha256_digests_in_hex() {
        let hex = "ab".repeat(32);
        assert_eq!(parse_pin(&hex).unwrap(), [0xab; 32]);
        assert_eq!(parse_pin(&format!("sha256:{hex}")).unwrap(), [0xab; 32]);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_pin(&colons).unwrap(), [0xab; 32]);
        for bad in ["", "ab", &"zz".repeat(32), &"ab".repeat(33)] {
            assert!(parse_pin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exactly_one_way_of_trusting_pods() {
        let file = SiteFile {
            path: std::path::Path::new("site.toml"),
        };
        let tls = |text: &str| toml::from_str::<RawTls>(text).unwrap().validate(&file);
        let pin = format!("pins = [\"{}\"]", "01".repeat(32));
        assert!(
            matches!(tls(&pin), Ok(Tls::Pins { pins, server_name: None }) if pins == [[1; 32]])
        );
        assert_eq!(
            tls(&format!("{pin}\ninsecure = true")).unwrap_err().key,
            "[tls]"
        );
        assert_eq!(
            tls(&format!("{pin}\nca = \"x.pem\"")).unwrap_err().key,
            "[tls]"
        );
        assert_eq!(tls("pins = []").unwrap_err().key, "[tls] pins");
        assert_eq!(tls("pins = [\"nope\"]").unwrap_err().key, "[tls] pins");
    }

    #[test]
    fn server_name_is_a_name_and_needs_something_to_verify() {
        let file = SiteFile {
            path: std::path::Path::new("site.toml"),
        };
        let tls = |text: &str| toml::from_str::<RawTls>(text).unwrap().validate(&file);
        let pin = format!("pins = [\"{}\"]", "01".repeat(32));
        let named = tls(&format!("{pin}\nserver_name = \"dsm.example.internal\""));
        assert_eq!(named.unwrap().server_name(), Some("dsm.example.internal"));
        let e = tls("insecure = true\nserver_name = \"dsm.example.internal\"").unwrap_err();
        assert_eq!(e.key, "[tls] server_name");
        let e = tls(&format!("{pin}\nserver_name = \"not a name\"")).unwrap_err();
        assert_eq!(e.key, "[tls] server_name");
        assert!(
            e.message.contains("\"not a name\" is not a DNS name"),
            "{e}"
        );
    }
}
