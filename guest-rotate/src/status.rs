//! A pod's key status, from the body of `GET /cluster/v1/key`: a JSON object with
//! the version and the fetched proposal's hash under the site's field names, and any
//! number of other fields.

use crate::params::Params;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub version: i64,
    /// The fetched proposal's hash; `None` for null or an empty string.
    pub hash: Option<String>,
}

/// Parses `body` from `pod`; errors name the pod and the field.
pub fn parse(pod: &str, body: &str, params: &Params) -> Result<KeyStatus, String> {
    let value: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| format!("{pod}: the key status is not JSON ({e})"))?;
    let object = value
        .as_object()
        .ok_or_else(|| format!("{pod}: the key status is not a JSON object"))?;

    let vf = &params.version_field;
    let version = match object.get(vf) {
        None => return Err(format!("{pod}: the key status has no `{vf}` field")),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| format!("{pod}: `{vf}` is {v}, not an integer"))?,
    };

    let hf = &params.hash_field;
    let hash = match object.get(hf) {
        None => return Err(format!("{pod}: the key status has no `{hf}` field")),
        Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(format!("{pod}: `{hf}` is {v}, not a string or null")),
    };
    Ok(KeyStatus { version, hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_documented_fields_and_ignores_others() {
        let p = Params::default();
        let s = parse(
            "sdkms-0",
            r#"{"version":1,"fetched_proposal_hash":"abc","x":[1]}"#,
            &p,
        )
        .unwrap();
        assert_eq!(
            s,
            KeyStatus {
                version: 1,
                hash: Some("abc".into())
            }
        );
        let s = parse(
            "sdkms-0",
            r#"{"version":2,"fetched_proposal_hash":null}"#,
            &p,
        )
        .unwrap();
        assert_eq!(s.hash, None);
        let s = parse("sdkms-0", r#"{"version":2,"fetched_proposal_hash":""}"#, &p).unwrap();
        assert_eq!(s.hash, None);
    }

    #[test]
    fn custom_field_names() {
        let p = Params {
            version_field: "key_version".into(),
            hash_field: "proposal".into(),
            ..Params::default()
        };
        let s = parse(
            "sdkms-1",
            r#"{"key_version":7,"proposal":"h","version":"x"}"#,
            &p,
        )
        .unwrap();
        assert_eq!(
            s,
            KeyStatus {
                version: 7,
                hash: Some("h".into())
            }
        );
        let e = parse(
            "sdkms-1",
            r#"{"version":7,"fetched_proposal_hash":"h"}"#,
            &p,
        )
        .unwrap_err();
        assert!(e.contains("sdkms-1") && e.contains("`key_version`"), "{e}");
    }

    #[test]
    fn errors_name_pod_and_field() {
        let p = Params::default();
        let e = parse(
            "sdkms-2",
            r#"{"version":"1","fetched_proposal_hash":null}"#,
            &p,
        )
        .unwrap_err();
        assert!(
            e.contains("sdkms-2") && e.contains("`version`") && e.contains("not an integer"),
            "{e}"
        );
        let e = parse(
            "sdkms-2",
            r#"{"version":1.5,"fetched_proposal_hash":null}"#,
            &p,
        )
        .unwrap_err();
        assert!(e.contains("not an integer"), "{e}");
        let e = parse("sdkms-2", r#"{"fetched_proposal_hash":null}"#, &p).unwrap_err();
        assert!(e.contains("no `version`"), "{e}");
        let e = parse("sdkms-2", r#"{"version":1}"#, &p).unwrap_err();
        assert!(
            e.contains("sdkms-2") && e.contains("`fetched_proposal_hash`"),
            "{e}"
        );
        let e = parse("sdkms-2", r#"{"version":1,"fetched_proposal_hash":3}"#, &p).unwrap_err();
        assert!(e.contains("not a string or null"), "{e}");
        let e = parse("sdkms-2", "<html>", &p).unwrap_err();
        assert!(e.contains("sdkms-2") && e.contains("not JSON"), "{e}");
    }
}
