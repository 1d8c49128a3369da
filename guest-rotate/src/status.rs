//! A pod's key status, from the body of `GET /cluster/v1/key`, read by
//! [`guest_kit::status`] under the site's field names; errors name the pod.

use guest_kit::status;
pub use guest_kit::status::KeyStatus;

use crate::params::Params;

/// Parses `body` from `pod`; errors name the pod and the field.
pub fn parse(pod: &str, body: &str, params: &Params) -> Result<KeyStatus, String> {
    status::parse(body, params.common.fields()).map_err(|e| format!("{pod}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_site_fields_and_errors_name_the_pod() {
        let mut p = Params::default();
        p.common.version_field = "key_version".into();
        p.common.hash_field = "proposal".into();
        let s = parse("sdkms-1", r#"{"key_version":7,"proposal":"h"}"#, &p).unwrap();
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
        assert!(
            e.starts_with("sdkms-1: ") && e.contains("`key_version`"),
            "{e}"
        );
        let e = parse("sdkms-2", "<html>", &Params::default()).unwrap_err();
        assert!(e.starts_with("sdkms-2: ") && e.contains("not JSON"), "{e}");
    }
}
