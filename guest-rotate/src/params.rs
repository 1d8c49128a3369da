//! The procedure's parameters: the site's `[params]` then the run's `--param K=V`,
//! later entries overriding earlier ones. Unknown names are rejected: a typo in a
//! field name must not silently fall back to a default.

use std::time::Duration;

pub use guest_kit::params::STEP;
use guest_kit::params::{self as kit, Common};

const KNOWN: &[&str] = &[
    "port",
    "version_field",
    "hash_field",
    "read_timeout_secs",
    "new_rotation",
    "expect_pods",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// `port`, `version_field`, `hash_field`, `read_timeout_secs`: how to read a pod.
    pub common: Common,
    /// Rotate again although the journal records a completed rotation to the
    /// version the pods run (without it, a rerun reports "already rotated").
    pub new_rotation: bool,
    /// Stop at preflight unless exactly this many pods match: a courtesy, when the
    /// site passes `expect_pods` in `[params]`. The host itself enforces
    /// `[cluster] expect_pods` at every mutating call, and no longer passes it here.
    pub expect_pods: Option<usize>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            common: Common::new(Duration::from_secs(120)),
            new_rotation: false,
            expect_pods: None,
        }
    }
}

impl Params {
    /// Parses `params`; the error names the parameter at fault.
    pub fn parse(params: &[(String, String)]) -> Result<Params, String> {
        let mut p = Params::default();
        for (key, value) in params {
            if let Some(set) = p.common.set(key, value) {
                set?;
                continue;
            }
            let v = value.trim();
            match key.as_str() {
                "expect_pods" => {
                    p.expect_pods = Some(v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!(
                            "parameter `expect_pods`: `{value}` is not a number of pods (1 or more)"
                        )
                    })?)
                }
                "new_rotation" => {
                    p.new_rotation = v.parse().map_err(|_| {
                        format!("parameter `new_rotation`: `{value}` is not true or false")
                    })?
                }
                _ => return Err(kit::unknown(key, KNOWN)),
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_kit::types::owned_pairs as kv;

    #[test]
    fn defaults() {
        assert_eq!(Params::parse(&[]).unwrap(), Params::default());
        assert_eq!(Params::default().common.port, 4444);
        assert_eq!(
            Params::default().common.read_timeout,
            Duration::from_secs(120)
        );
    }

    #[test]
    fn later_entries_override_earlier() {
        let p = Params::parse(&kv(&[
            ("port", "4444"),
            ("hash_field", "proposal"),
            ("port", "8443"),
            ("version_field", "key_version"),
            ("read_timeout_secs", "5"),
        ]))
        .unwrap();
        assert_eq!(p.common.port, 8443);
        assert_eq!(p.common.hash_field, "proposal");
        assert_eq!(p.common.version_field, "key_version");
        assert_eq!(p.common.read_timeout, Duration::from_secs(5));
    }

    #[test]
    fn rejects_unknown_and_unparsable_naming_the_parameter() {
        let e = Params::parse(&kv(&[("prot", "4444")])).unwrap_err();
        assert!(e.contains("`prot`"), "{e}");
        let e = Params::parse(&kv(&[("port", "http")])).unwrap_err();
        assert!(e.contains("`port`") && e.contains("http"), "{e}");
        let e = Params::parse(&kv(&[("port", "0")])).unwrap_err();
        assert!(e.contains("`port`"), "{e}");
        let e = Params::parse(&kv(&[("read_timeout_secs", "-1")])).unwrap_err();
        assert!(e.contains("`read_timeout_secs`"), "{e}");
        let e = Params::parse(&kv(&[("hash_field", " ")])).unwrap_err();
        assert!(e.contains("`hash_field`"), "{e}");
    }
}
