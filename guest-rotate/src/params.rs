//! The procedure's parameters: the site's `[params]` then the run's `--param K=V`,
//! later entries overriding earlier ones. Unknown names are rejected: a typo in a
//! field name must not silently fall back to a default.

use std::time::Duration;

/// The step name a parameter error is reported under.
pub const STEP: &str = "params";

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
    /// The pods' DSM port.
    pub port: u16,
    /// The status body's field holding the key version.
    pub version_field: String,
    /// The status body's field holding the fetched proposal's hash.
    pub hash_field: String,
    /// The total time one read may spend retrying.
    pub read_timeout: Duration,
    /// Rotate again although the journal records a completed rotation to the
    /// version the pods run (without it, a rerun reports "already rotated").
    pub new_rotation: bool,
    /// Stop at preflight unless exactly this many pods match (`[cluster] expect_pods`).
    pub expect_pods: Option<usize>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            port: 4444,
            version_field: "version".into(),
            hash_field: "fetched_proposal_hash".into(),
            read_timeout: Duration::from_secs(120),
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
            let v = value.trim();
            match key.as_str() {
                "port" => {
                    p.port = v
                        .parse()
                        .ok()
                        .filter(|port| *port != 0)
                        .ok_or_else(|| format!("parameter `port`: `{value}` is not a port number (1-65535)"))?
                }
                "version_field" => p.version_field = field_name(key, v)?,
                "hash_field" => p.hash_field = field_name(key, v)?,
                "read_timeout_secs" => {
                    p.read_timeout = v.parse().map(Duration::from_secs).map_err(|_| {
                        format!("parameter `read_timeout_secs`: `{value}` is not a whole number of seconds")
                    })?
                }
                "expect_pods" => {
                    p.expect_pods = Some(v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("parameter `expect_pods`: `{value}` is not a number of pods (1 or more)")
                    })?)
                }
                "new_rotation" => {
                    p.new_rotation = v.parse().map_err(|_| {
                        format!("parameter `new_rotation`: `{value}` is not true or false")
                    })?
                }
                _ => {
                    return Err(format!(
                        "unknown parameter `{key}` (known: {})",
                        KNOWN.join(", ")
                    ));
                }
            }
        }
        Ok(p)
    }
}

fn field_name(key: &str, value: &str) -> Result<String, String> {
    if value.is_empty() {
        Err(format!("parameter `{key}`: a field name cannot be empty"))
    } else {
        Ok(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        assert_eq!(Params::parse(&[]).unwrap(), Params::default());
        assert_eq!(Params::default().port, 4444);
        assert_eq!(Params::default().read_timeout, Duration::from_secs(120));
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
        assert_eq!(p.port, 8443);
        assert_eq!(p.hash_field, "proposal");
        assert_eq!(p.version_field, "key_version");
        assert_eq!(p.read_timeout, Duration::from_secs(5));
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
