//! The parameters both procedures accept ([`Common`]: `port`, `version_field`,
//! `hash_field`, `read_timeout_secs`), with errors that name the parameter. Which
//! other parameters a procedure knows, its read timeout and the order of the names
//! it lists stay with the procedure.

use std::time::Duration;

use crate::status::Fields;

/// How to read a pod's key status: the parameters both procedures take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// The pods' DSM port.
    pub port: u16,
    /// The status body's field holding the key version.
    pub version_field: String,
    /// The status body's field holding the fetched proposal's hash.
    pub hash_field: String,
    /// The total time one read may spend retrying.
    pub read_timeout: Duration,
}

impl Common {
    /// The documented port and field names, with the procedure's own read timeout.
    pub fn new(read_timeout: Duration) -> Common {
        Common {
            port: 4444,
            version_field: "version".into(),
            hash_field: "fetched_proposal_hash".into(),
            read_timeout,
        }
    }

    /// Sets `key` to `value` when `key` is one of these parameters; `None` when it
    /// is not, so the procedure can try its own.
    pub fn set(&mut self, key: &str, value: &str) -> Option<Result<(), String>> {
        let set = match key {
            "port" => port(value).map(|v| self.port = v),
            "version_field" => field_name(key, value).map(|v| self.version_field = v),
            "hash_field" => field_name(key, value).map(|v| self.hash_field = v),
            "read_timeout_secs" => read_timeout(value).map(|v| self.read_timeout = v),
            _ => return None,
        };
        Some(set)
    }

    /// The status body's field names.
    pub fn fields(&self) -> Fields<'_> {
        Fields {
            version: &self.version_field,
            hash: &self.hash_field,
        }
    }
}

/// The step name a parameter error is reported under.
pub const STEP: &str = "params";

/// `port`: 1-65535. `value` is the raw value, shown in the error; `v` trimmed.
pub fn port(value: &str) -> Result<u16, String> {
    value
        .trim()
        .parse()
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("parameter `port`: `{value}` is not a port number (1-65535)"))
}

/// A status body's field name (`version_field`, `hash_field`): not empty.
pub fn field_name(key: &str, value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        Err(format!("parameter `{key}`: a field name cannot be empty"))
    } else {
        Ok(value.to_string())
    }
}

/// `read_timeout_secs`: a whole number of seconds.
pub fn read_timeout(value: &str) -> Result<Duration, String> {
    value.trim().parse().map(Duration::from_secs).map_err(|_| {
        format!("parameter `read_timeout_secs`: `{value}` is not a whole number of seconds")
    })
}

/// The error for a parameter the procedure does not know, listing those it does.
pub fn unknown(key: &str, known: &[&str]) -> String {
    format!("unknown parameter `{key}` (known: {})", known.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_sets_only_its_own_names() {
        let mut c = Common::new(Duration::from_secs(10));
        assert_eq!(c.port, 4444);
        assert_eq!(c.fields().version, "version");
        assert_eq!(c.fields().hash, "fetched_proposal_hash");
        assert_eq!(c.set("port", "8443"), Some(Ok(())));
        assert_eq!(c.set("hash_field", "proposal"), Some(Ok(())));
        assert_eq!(c.set("version_field", "key_version"), Some(Ok(())));
        assert_eq!(c.set("read_timeout_secs", "3"), Some(Ok(())));
        assert_eq!(c.set("expect_pods", "3"), None);
        assert!(c.set("port", "0").unwrap().is_err());
        assert_eq!(
            c,
            Common {
                port: 8443,
                version_field: "key_version".into(),
                hash_field: "proposal".into(),
                read_timeout: Duration::from_secs(3),
            }
        );
    }

    #[test]
    fn parses_and_trims() {
        assert_eq!(port(" 8443 "), Ok(8443));
        assert_eq!(
            field_name("hash_field", " proposal "),
            Ok("proposal".into())
        );
        assert_eq!(read_timeout("5"), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn errors_name_the_parameter() {
        for (e, name) in [
            (port("0").unwrap_err(), "`port`"),
            (port("https").unwrap_err(), "`port`"),
            (read_timeout("-1").unwrap_err(), "`read_timeout_secs`"),
            (field_name("hash_field", " ").unwrap_err(), "`hash_field`"),
            (unknown("prot", &["port"]), "`prot`"),
        ] {
            assert!(e.contains(name), "{e}");
        }
        assert!(port("http").unwrap_err().contains("http"));
        assert_eq!(
            unknown("prot", &["port", "hash_field"]),
            "unknown parameter `prot` (known: port, hash_field)"
        );
    }
}
