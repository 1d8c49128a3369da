//! `[tls]`: how pod certificates are verified, and the run's one HTTPS client.
//!
//! Exactly one of: `ca` (verify against this CA, names included), `pins` (SHA-256 of
//! the DER certificates to trust: a pod's own certificate, or the CA certificate
//! its chain presents, which must then verify the pod's certificate), or
//! `insecure = true` (curl -k, warned on every run).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::policy::HttpPolicy;
use crate::frame::{SiteError, SiteFile};

#[derive(Debug, Clone)]
pub enum Tls {
    /// Verify pod certificates against these CA certificates (PEM, as read).
    Ca { path: PathBuf, pem: Vec<u8> },
    /// Trust a certificate whose SHA-256 (of its DER) is one of these.
    Pins(Vec<[u8; 32]>),
    /// Skip verification (`curl -k`): only when the site file says so, warned on every run.
    Insecure,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    ca: Option<PathBuf>,
    pins: Option<Vec<String>>,
    #[serde(default)]
    insecure: bool,
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
            return Ok(Tls::Pins(pins));
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
                Ok(Tls::Ca { path: ca, pem })
            }
        }
    }
}

/// Builds the run's one HTTPS client.
pub fn client(tls: &Tls, policy: &HttpPolicy) -> anyhow::Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match tls {
        Tls::Ca { path, pem } => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Tls::Pins(pins) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(pinned::Pinned {
                pins: pins.clone(),
                provider: provider.clone(),
            }))
            .with_no_client_auth(),
        Tls::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::AcceptAny(provider)))
            .with_no_client_auth(),
    };
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(policy.timeout)
        .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
        .build()?)
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
        assert!(matches!(tls(&pin), Ok(Tls::Pins(p)) if p == [[1; 32]]));
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
}
