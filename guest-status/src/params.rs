//! The procedure's parameters: the site's `[params]` then the run's `--param K=V`,
//! later entries overriding earlier ones. The names are the rotation's, so one site
//! file serves both procedures; unknown names are rejected, so that a typo in a field
//! name does not silently fall back to a default.

use std::time::Duration;

/// The step name a parameter error is reported under.
pub const STEP: &str = "params";

const KNOWN: &[&str] = &["port", "version_field", "hash_field", "read_timeout_secs"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// The pods' DSM port.
    pub port: u16,
    /// The status body's field holding the key version.
    pub version_field: String,
    /// The status body's field holding the fetched proposal's hash.
    pub hash_field: String,
    /// How long the reads may keep retrying pods that are warming up or unreachable.
    /// Shorter than the rotation's default: a status check should answer quickly.
    pub read_timeout: Duration,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            port: 4444,
            version_field: "version".into(),
            hash_field: "fetched_proposal_hash".into(),
            read_timeout: Duration::from_secs(10),
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
                    p.port = v.parse().ok().filter(|port| *port != 0).ok_or_else(|| {
                        format!("parameter `port`: `{value}` is not a port number (1-65535)")
                    })?
                }
                "version_field" => p.version_field = field_name(key, v)?,
                "hash_field" => p.hash_field = field_name(key, v)?,
                "read_timeout_secs" => {
                    p.read_timeout = v.parse().map(Duration::from_secs).map_err(|_| {
                        format!(
                            "parameter `read_timeout_secs`: `{value}` is not a whole number of seconds"
                        )
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
    fn defaults_and_overrides() {
        assert_eq!(Params::parse(&[]).unwrap(), Params::default());
        let p = Params::parse(&kv(&[
            ("port", "4444"),
            ("port", "8443"),
            ("hash_field", "proposal"),
            ("version_field", "key_version"),
            ("read_timeout_secs", "3"),
        ]))
        .unwrap();
        assert_eq!(p.port, 8443);
        assert_eq!(p.hash_field, "proposal");
        assert_eq!(p.version_field, "key_version");
        assert_eq!(p.read_timeout, Duration::from_secs(3));
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
