//! Trust: which components may run, and what each signer's components receive.
//!
//! This module owns the site file's `[trust]` section (`allow_unsigned` and the
//! `[[trust.signer]]` list), and the one decision made before any byte reaches
//! wasmtime: [`admit`] verifies the signature over the exact bytes read and returns
//! the grants of the signer that verified it, within the site's.

pub mod keys;
pub mod verify;

use std::path::PathBuf;

use serde::Deserialize;

use crate::frame::{SiteError, SiteFile};
use crate::grants::{Capability, Grants, HttpMethod};
use keys::{KeyId, VerifyingKey};
pub use verify::Refusal;

/// A signer the site trusts, and what its components may use.
#[derive(Debug, Clone)]
pub struct Signer {
    pub name: String,
    /// The public key file, resolved against the site file's folder.
    pub key_file: PathBuf,
    pub key: VerifyingKey,
    pub grants: Grants,
}

/// The site's `[trust]` section, validated.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Whether `run --allow-unsigned` may run a component that is not signed.
    pub allow_unsigned: bool,
    pub signers: Vec<Signer>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTrust {
    #[serde(default)]
    allow_unsigned: bool,
    #[serde(default, rename = "signer")]
    signers: Vec<RawSigner>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigner {
    name: String,
    key: PathBuf,
    capabilities: Vec<String>,
    #[serde(default)]
    http_methods: Vec<String>,
    #[serde(default)]
    http_paths: Vec<String>,
}

const SIGNER: &str = "[[trust.signer]]";

impl RawTrust {
    pub fn validate(self, file: &SiteFile<'_>) -> Result<Trust, SiteError> {
        let mut signers: Vec<Signer> = Vec::new();
        for raw in self.signers {
            let signer = raw.validate(file)?;
            let at = |key: &str| format!("{SIGNER} {key}");
            if signers.iter().any(|s| s.name == signer.name) {
                return Err(file.error(
                    at("name"),
                    format!("signer {:?} is listed twice", signer.name),
                ));
            }
            if let Some(other) = signers.iter().find(|s| s.key.id() == signer.key.id()) {
                return Err(file.error(
                    at("key"),
                    format!(
                        "signer {:?} uses the key of signer {:?} (key id {}); one key, one set of grants",
                        signer.name,
                        other.name,
                        signer.key.id()
                    ),
                ));
            }
            signers.push(signer);
        }
        Ok(Trust {
            allow_unsigned: self.allow_unsigned,
            signers,
        })
    }
}

impl RawSigner {
    fn validate(self, file: &SiteFile<'_>) -> Result<Signer, SiteError> {
        let name = self.name.trim().to_string();
        let at = |key: &str| format!("{SIGNER} {key}");
        let of = |message: String| format!("signer {name:?}: {message}");
        if name.is_empty() {
            return Err(file.error(at("name"), "must not be empty"));
        }
        let key_file = file.resolve(&self.key);
        let key = VerifyingKey::load(&key_file).map_err(|e| file.error(at("key"), of(e)))?;

        let mut grants = Grants::none();
        for c in &self.capabilities {
            let capability = Capability::parse(c).ok_or_else(|| {
                file.error(
                    at("capabilities"),
                    of(format!(
                        "unknown capability {c:?}; expected one of {}",
                        Capability::ALL.map(Capability::name).join(", ")
                    )),
                )
            })?;
            if capability != Capability::Http {
                grants = grants.allow(capability);
            }
        }
        let http = self.capabilities.iter().any(|c| c == "http");
        if !http {
            for (key, values) in [
                ("http_methods", &self.http_methods),
                ("http_paths", &self.http_paths),
            ] {
                if !values.is_empty() {
                    return Err(
                        file.error(at(key), of("given without \"http\" in capabilities".into()))
                    );
                }
            }
            return Ok(Signer {
                name,
                key_file,
                key,
                grants,
            });
        }
        // http without methods or paths would grant nothing: say so rather than guess.
        if self.http_methods.is_empty() || self.http_paths.is_empty() {
            let missing = if self.http_methods.is_empty() {
                "http_methods"
            } else {
                "http_paths"
            };
            return Err(file.error(
                at(missing),
                of("\"http\" is granted, so list what it may use".into()),
            ));
        }
        let mut methods = Vec::new();
        for m in &self.http_methods {
            methods.push(match m.to_ascii_uppercase().as_str() {
                "GET" => HttpMethod::Get,
                "POST" => HttpMethod::Post,
                _ => {
                    return Err(file.error(
                        at("http_methods"),
                        of(format!("unknown method {m:?}; expected GET or POST")),
                    ));
                }
            });
        }
        for p in &self.http_paths {
            if !p.starts_with('/') || p.contains("..") || p.contains(['?', '#']) {
                return Err(file.error(
                    at("http_paths"),
                    of(format!(
                        "{p:?} is not a path prefix (it must start with '/', without '..', '?' or '#')"
                    )),
                ));
            }
        }
        Ok(Signer {
            name,
            key_file,
            key,
            grants: grants.allow_http(methods, self.http_paths),
        })
    }
}

/// A component that may run: who signed it, and what it receives.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The signer's name; `None` for an unsigned component run with `--allow-unsigned`.
    pub signer: Option<String>,
    pub key_id: Option<KeyId>,
    /// The caller's grants (the site's) narrowed to the signer's.
    pub grants: Grants,
}

/// How a run asks to be admitted.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    /// `--allow-unsigned` was given.
    pub allow_unsigned: bool,
    /// A detached signature, when the component does not embed one.
    pub detached: Option<&'a [u8]>,
}

/// Verifies `bytes` against the site's signers and decides what they receive:
/// `site_grants` narrowed to the grants of the signer that verified them.
pub fn admit(
    bytes: &[u8],
    trust: &Trust,
    site_grants: &Grants,
    request: &Request<'_>,
) -> Result<Admitted, Refusal> {
    admit_with(
        &verify::Verifier::new(bytes, request.detached),
        trust,
        site_grants,
        request,
    )
}

/// [`admit`], with a verifier that may already have verified the same bytes with
/// the same keys (a fleet's other sites). `request.detached` is the verifier's.
pub fn admit_with(
    verifier: &verify::Verifier<'_>,
    trust: &Trust,
    site_grants: &Grants,
    request: &Request<'_>,
) -> Result<Admitted, Refusal> {
    let keys: Vec<&VerifyingKey> = trust.signers.iter().map(|s| &s.key).collect();
    match verifier.verify(&keys) {
        Ok(verified) => {
            let signer = &trust.signers[verified.key_index];
            Ok(Admitted {
                signer: Some(signer.name.clone()),
                key_id: Some(verified.key_id),
                grants: site_grants.intersect(&signer.grants),
            })
        }
        // Only a component with no signature at all may run unsigned; a bad or
        // untrusted signature is refused even then.
        Err(Refusal::NotSigned) if request.allow_unsigned && trust.allow_unsigned => Ok(Admitted {
            signer: None,
            key_id: None,
            grants: site_grants.clone(),
        }),
        Err(e) => Err(e),
    }
}

/// Why an unsigned component was refused, with what would allow it.
pub fn unsigned_hint(trust: &Trust, request: &Request<'_>) -> &'static str {
    match (request.allow_unsigned, trust.allow_unsigned) {
        (true, false) => {
            "; --allow-unsigned needs `[trust] allow_unsigned = true` in the site file"
        }
        (false, true) => "; the site allows unsigned components only with --allow-unsigned",
        _ => "; sign it (cmk-host sign) with a key listed in [[trust.signer]]",
    }
}

/// A `[[trust.signer]]` entry granting everything the site grants, for generated
/// site files (`demo`, `sim`).
pub fn signer_entry(name: &str, key_file: &str) -> String {
    format!(
        "\n[[trust.signer]]\nname = {name:?}\nkey = {key_file:?}\n\
         capabilities = [\"pods\", \"http\", \"restart\", \"log\", \"journal\", \"confirm\"]\n\
         http_methods = [\"GET\", \"POST\"]\nhttp_paths = [\"/cluster/v1/key\"]\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn trust_in(dir: &Path, body: &str) -> Result<Trust, SiteError> {
        let path = dir.join("site.toml");
        let raw: RawTrust = toml::from_str(body).unwrap();
        raw.validate(&SiteFile { path: &path })
    }

    fn key(dir: &Path, name: &str) -> KeyId {
        keys::generate(&dir.join(name)).unwrap().id
    }

    fn site_grants() -> Grants {
        Grants::none()
            .allow(Capability::Pods)
            .allow(Capability::Log)
            .allow(Capability::Restart)
            .allow_http(
                [HttpMethod::Get, HttpMethod::Post],
                ["/cluster/v1/key".to_string()],
            )
    }

    #[test]
    fn signers_get_their_grants_within_the_sites() {
        let dir = tempfile::tempdir().unwrap();
        let id = key(dir.path(), "vendor");
        let trust = trust_in(
            dir.path(),
            r#"
[[signer]]
name = "vendor"
key = "vendor.pub"
capabilities = ["pods", "log", "http"]
http_methods = ["GET"]
http_paths = ["/cluster/v1/key", "/admin"]
"#,
        )
        .unwrap();
        assert!(!trust.allow_unsigned);
        let signer = &trust.signers[0];
        assert_eq!(signer.key.id(), id);
        let both = site_grants().intersect(&signer.grants);
        assert_eq!(
            both.to_string(),
            "pods, http (GET under /cluster/v1/key), log"
        );
    }

    #[test]
    fn a_missing_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = trust_in(
            dir.path(),
            "[[signer]]\nname = \"ops\"\nkey = \"nope.pub\"\ncapabilities = []\n",
        )
        .unwrap_err();
        assert_eq!(err.key, "[[trust.signer]] key");
        assert!(err.message.contains("nope.pub"), "{err}");
        assert!(err.message.contains("\"ops\""), "{err}");
    }

    #[test]
    fn http_needs_methods_and_paths_and_nothing_else_takes_them() {
        let dir = tempfile::tempdir().unwrap();
        key(dir.path(), "a");
        let base = "[[signer]]\nname = \"a\"\nkey = \"a.pub\"\n";
        let err = trust_in(
            dir.path(),
            &format!("{base}capabilities = [\"http\"]\nhttp_methods = [\"GET\"]\n"),
        )
        .unwrap_err();
        assert_eq!(err.key, "[[trust.signer]] http_paths");
        let err = trust_in(
            dir.path(),
            &format!("{base}capabilities = [\"pods\"]\nhttp_paths = [\"/x\"]\n"),
        )
        .unwrap_err();
        assert_eq!(err.key, "[[trust.signer]] http_paths");
        let err = trust_in(dir.path(), &format!("{base}capabilities = [\"disk\"]\n")).unwrap_err();
        assert_eq!(err.key, "[[trust.signer]] capabilities");
        assert!(err.message.contains("\"disk\""));
    }

    #[test]
    fn one_key_cannot_be_two_signers() {
        let dir = tempfile::tempdir().unwrap();
        key(dir.path(), "a");
        let err = trust_in(
            dir.path(),
            "[[signer]]\nname = \"a\"\nkey = \"a.pub\"\ncapabilities = []\n\
             [[signer]]\nname = \"b\"\nkey = \"a.pub\"\ncapabilities = [\"pods\"]\n",
        )
        .unwrap_err();
        assert_eq!(err.key, "[[trust.signer]] key");
    }

    #[test]
    fn unsigned_runs_only_with_both_the_flag_and_the_site() {
        let component = crate::ROTATE_COMPONENT;
        let strict = Trust::default();
        let lax = Trust {
            allow_unsigned: true,
            signers: Vec::new(),
        };
        let flag = Request {
            allow_unsigned: true,
            detached: None,
        };
        let none = Request::default();
        let site = site_grants();
        assert_eq!(
            admit(component, &strict, &site, &flag).unwrap_err(),
            Refusal::NotSigned
        );
        assert_eq!(
            admit(component, &lax, &site, &none).unwrap_err(),
            Refusal::NotSigned
        );
        let admitted = admit(component, &lax, &site, &flag).unwrap();
        assert_eq!(admitted.signer, None);
        assert_eq!(admitted.grants, site);
    }

    #[test]
    fn a_signer_never_gets_more_than_the_site_grants() {
        let dir = tempfile::tempdir().unwrap();
        key(dir.path(), "ops");
        let trust = trust_in(
            dir.path(),
            r#"
[[signer]]
name = "ops"
key = "ops.pub"
capabilities = ["pods", "http", "restart", "log"]
http_methods = ["GET", "POST"]
http_paths = ["/"]
"#,
        )
        .unwrap();
        let secret = keys::SigningKey::load(&dir.path().join("ops.key")).unwrap();
        let signed = verify::sign(crate::ROTATE_COMPONENT, &secret).unwrap();
        // A site without [restart], and http only to the key API.
        let site = Grants::none()
            .allow(Capability::Pods)
            .allow(Capability::Log)
            .allow_http([HttpMethod::Get], ["/cluster/v1/key".to_string()]);
        let admitted = admit(&signed, &trust, &site, &Request::default()).unwrap();
        assert_eq!(admitted.signer.as_deref(), Some("ops"));
        assert_eq!(admitted.key_id, Some(secret.id()));
        assert_eq!(admitted.grants, site);
    }

    #[test]
    fn an_unknown_capability_is_answered_with_every_capability_there_is() {
        let dir = tempfile::tempdir().unwrap();
        key(dir.path(), "ops");
        let e = trust_in(
            dir.path(),
            r#"
[[signer]]
name = "ops"
key = "ops.pub"
capabilities = ["pods", "htpp"]
"#,
        )
        .unwrap_err();
        assert!(
            e.message.ends_with(
                "unknown capability \"htpp\"; expected one of pods, http, restart, log, journal, confirm"
            ),
            "{e}"
        );
    }

    #[test]
    fn allow_unsigned_does_not_excuse_an_untrusted_signature() {
        let lax = Trust {
            allow_unsigned: true,
            signers: Vec::new(),
        };
        let other = keys::SigningKey::generate();
        let signed = verify::sign(crate::ROTATE_COMPONENT, &other).unwrap();
        let flag = Request {
            allow_unsigned: true,
            detached: None,
        };
        assert!(matches!(
            admit(&signed, &lax, &site_grants(), &flag),
            Err(Refusal::Untrusted(_))
        ));
    }
}
