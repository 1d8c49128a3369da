//! The simulator's private PKI: a CA generated at start, and server certificates
//! signed by it for every pod instance (IP SAN = the pod's current IP, DNS SAN = its
//! name; or, like an appliance's, only the cluster's DNS name: [`CertNames`]) and for
//! the API server (IP SAN 127.0.0.1). Clients verify them for real against `ca.pem`,
//! as they would a production DSM cluster's CA.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The names a server certificate carries.
#[derive(Clone, Copy, Debug)]
pub enum CertNames<'a> {
    /// The server's IP and, optionally, a DNS name (the pod's name).
    Ip(IpAddr, Option<&'a str>),
    /// Only a DNS name, no IP: as an appliance names the cluster, not each pod.
    DnsOnly(&'a str),
}

/// The CA: its certificate (PEM) and the issuer that signs server certificates.
pub struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

impl Pki {
    /// Generate a fresh CA (ECDSA P-256).
    pub fn new() -> anyhow::Result<Pki> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "cmk-sim CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "cmk-host simulator");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().context("generating the CA key")?;
        let cert = params.self_signed(&key).context("self-signing the CA")?;
        Ok(Pki {
            ca_pem: cert.pem(),
            ca_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// A server certificate and key carrying `names`.
    pub fn server_cert(
        &self,
        names: CertNames<'_>,
    ) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
        let mut params = CertificateParams::default();
        let (ip, dns) = match names {
            CertNames::Ip(ip, dns) => (Some(ip), dns),
            CertNames::DnsOnly(dns) => (None, Some(dns)),
        };
        if let Some(ip) = ip {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
        if let Some(name) = dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(name.try_into()?));
        }
        let common_name = match (dns, ip) {
            (Some(name), _) => name.to_string(),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => String::new(),
        };
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().context("generating a server key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("signing a server certificate")?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((cert.der().clone(), key_der))
    }

    /// A rustls server configuration for that certificate, with the `ring` provider
    /// explicitly (never a process default: tests run many simulators in one process
    /// next to clients that may install another provider).
    pub fn server_config(&self, names: CertNames<'_>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let (cert, key) = self.server_cert(names)?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert, self.ca_der.clone()], key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A rustls client configuration trusting only this CA (ring provider), for tests
    /// and tools that talk to the simulator.
    pub fn client_config(&self) -> anyhow::Result<rustls::ClientConfig> {
        client_config_for(&self.ca_pem)
    }
}

/// A rustls client configuration (ring provider) trusting only the CA in `ca_pem`.
pub fn client_config_for(ca_pem: &str) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("parsing the CA PEM")?)?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn ca_signs_server_certs_that_verify() {
        let pki = Pki::new().unwrap();
        assert!(pki.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let ip: IpAddr = "127.9.9.9".parse().unwrap();
        let (cert, _) = pki.server_cert(CertNames::Ip(ip, Some("sdkms-0"))).unwrap();
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            r.add(pki.ca_der().clone()).unwrap();
            Arc::new(r)
        };
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        for name in ["127.9.9.9", "sdkms-0"] {
            let sn = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&cert, &[], &sn, &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls::pki_types::ServerName::try_from("127.9.9.8").unwrap();
        assert!(
            verifier
                .verify_server_cert(&cert, &[], &other, &[], now)
                .is_err()
        );
        pki.server_config(CertNames::Ip(ip, None)).unwrap();
        pki.client_config().unwrap();

        // A certificate that names only the cluster verifies by that name, not by IP.
        let (cert, _) = pki
            .server_cert(CertNames::DnsOnly("dsm.sim.internal"))
            .unwrap();
        let dsm = rustls::pki_types::ServerName::try_from("dsm.sim.internal").unwrap();
        verifier
            .verify_server_cert(&cert, &[], &dsm, &[], now)
            .unwrap();
        let by_ip = rustls::pki_types::ServerName::try_from("127.9.9.9").unwrap();
        assert!(
            verifier
                .verify_server_cert(&cert, &[], &by_ip, &[], now)
                .is_err()
        );
    }
}
