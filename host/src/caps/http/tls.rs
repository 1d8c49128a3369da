//! `[tls]`: how pod certificates are verified, and the run's one HTTPS client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::policy::HttpPolicy;
use crate::site::{Site, SiteError, SiteFile};

#[derive(Debug, Clone)]
pub enum Tls {
    /// Verify pod certificates against these CA certificates (PEM, as read).
    Ca { path: PathBuf, pem: Vec<u8> },
    /// Skip verification (`curl -k`): only when the site file says so, warned on every run.
    Insecure,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    ca: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
}

impl RawTls {
    pub fn validate(self, file: &SiteFile<'_>) -> Result<Tls, SiteError> {
        match (self.ca.map(|ca| file.resolve(&ca)), self.insecure) {
            (Some(_), true) => {
                Err(file.error("[tls]", "set either `ca` or `insecure = true`, not both"))
            }
            (None, false) => Err(file.error(
                "[tls] ca",
                "missing: pod certificates are verified against this CA \
                 (or write `insecure = true` to skip verification, like curl -k)",
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
pub fn client(site: &Site, policy: &HttpPolicy) -> anyhow::Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match &site.tls {
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
