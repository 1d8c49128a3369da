//! The procedure's parameters: the site's `[params]` then the run's `--param K=V`,
//! later entries overriding earlier ones. The names are the rotation's, so one site
//! file serves both procedures; unknown names are rejected, so that a typo in a field
//! name does not silently fall back to a default.

use std::time::Duration;

pub use guest_kit::params::STEP;
use guest_kit::params::{self as kit, Common};

const KNOWN: &[&str] = &["port", "version_field", "hash_field", "read_timeout_secs"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// `port`, `version_field`, `hash_field`, `read_timeout_secs`: how to read a pod.
    pub common: Common,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            // Shorter than the rotation's default: a status check should answer quickly.
            common: Common::new(Duration::from_secs(10)),
        }
    }
}

impl Params {
    /// Parses `params`; the error names the parameter at fault.
    pub fn parse(params: &[(String, String)]) -> Result<Params, String> {
        let mut p = Params::default();
        for (key, value) in params {
            p.common
                .set(key, value)
                .unwrap_or_else(|| Err(kit::unknown(key, KNOWN)))?;
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_kit::types::owned_pairs as kv;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(Params::parse(&[]).unwrap(), Params::default());
        // The common parameters, later entries winning, are guest-kit's (and
        // guest-rotate's tests cover them through the same `Common`).
        let p = Params::parse(&kv(&[("port", "4444"), ("port", "8443")])).unwrap();
        assert_eq!(p.common.port, 8443);
    }

    #[test]
    fn errors_name_the_parameter() {
        for (pairs, name) in [
            (kv(&[("prot", "1")]), "`prot`"),
            (kv(&[("port", "0")]), "`port`"),
            (kv(&[("port", "https")]), "`port`"),
            (kv(&[("read_timeout_secs", "-1")]), "`read_timeout_secs`"),
            (kv(&[("hash_field", " ")]), "`hash_field`"),
        ] {
            let e = Params::parse(&pairs).unwrap_err();
            assert!(e.contains(name), "{e}");
        }
    }
}
