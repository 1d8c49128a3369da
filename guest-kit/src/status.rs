//! A pod's key status, from the body of `GET /cluster/v1/key`: a JSON object with
//! the version and the fetched proposal's hash under the site's field names, and any
//! number of other fields.

/// The documented status endpoint.
pub const STATUS_PATH: &str = "/cluster/v1/key";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub version: i64,
    /// The fetched proposal's hash; `None` for null or an empty string.
    pub hash: Option<String>,
}

/// The body's field names (the site's `version_field` and `hash_field`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields<'a> {
    pub version: &'a str,
    pub hash: &'a str,
}

/// Parses a status body; errors name the field (the caller names the pod).
pub fn parse(body: &str, fields: Fields<'_>) -> Result<KeyStatus, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("the key status is not JSON ({e})"))?;
    let object = value
        .as_object()
        .ok_or("the key status is not a JSON object")?;
    let vf = fields.version;
    let version = match object.get(vf) {
        None => return Err(format!("the key status has no `{vf}` field")),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| format!("`{vf}` is {v}, not an integer"))?,
    };
    let hf = fields.hash;
    let hash = match object.get(hf) {
        None => return Err(format!("the key status has no `{hf}` field")),
        Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(format!("`{hf}` is {v}, not a string or null")),
    };
    Ok(KeyStatus { version, hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENTED: Fields<'static> = Fields {
        version: "version",
        hash: "fetched_proposal_hash",
    };

    #[test]
    fn reads_documented_fields_and_ignores_others() {
        let s = parse(
            r#"{"version":1,"fetched_proposal_hash":"abc","x":[1]}"#,
            DOCUMENTED,
        )
        .unwrap();
        assert_eq!(
            s,
            KeyStatus {
                version: 1,
                hash: Some("abc".into())
            }
        );
        let s = parse(r#"{"version":2,"fetched_proposal_hash":null}"#, DOCUMENTED).unwrap();
        assert_eq!(s.hash, None);
        let s = parse(r#"{"version":2,"fetched_proposal_hash":""}"#, DOCUMENTED).unwrap();
        assert_eq!(s.hash, None);
    }

    #[test]
    fn custom_field_names() {
        let renamed = Fields {
            version: "key_version",
            hash: "proposal",
        };
        let s = parse(r#"{"key_version":7,"proposal":"h","version":"x"}"#, renamed).unwrap();
        assert_eq!(
            s,
            KeyStatus {
                version: 7,
                hash: Some("h".into())
            }
        );
        let s = parse(r#"{"key_version":7,"proposal":null}"#, renamed).unwrap();
        assert_eq!(s.hash, None);
        let e = parse(r#"{"version":7,"fetched_proposal_hash":"h"}"#, renamed).unwrap_err();
        assert!(e.contains("`key_version`"), "{e}");
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        for (body, expected) in [
            ("<html>", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"fetched_proposal_hash":null}"#, "no `version`"),
            (
                r#"{"version":"1","fetched_proposal_hash":null}"#,
                "`version` is \"1\", not an integer",
            ),
            (
                r#"{"version":1.5,"fetched_proposal_hash":null}"#,
                "not an integer",
            ),
            (r#"{"version":1}"#, "no `fetched_proposal_hash`"),
            (
                r#"{"version":1,"fetched_proposal_hash":3}"#,
                "not a string or null",
            ),
        ] {
            let e = parse(body, DOCUMENTED).unwrap_err();
            assert!(e.contains(expected), "{body}: {e}");
        }
    }
}
