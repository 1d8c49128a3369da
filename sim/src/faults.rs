//! Fault injection: the ways a real cluster misbehaves that the host must survive
//! (or refuse to proceed through). Set in the config at start and changeable at
//! runtime through `Sim::set_faults`.

use serde::{Deserialize, Serialize};

/// Faults to inject. The default injects none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// After each (re)start, every new pod instance answers 503 `{"error":"warming up"}`
    /// to its first N requests, while already shown Ready in the pod list (the
    /// realistic race between readiness and the application).
    pub warmup_503: u32,
    /// `POST /cluster/v1/key/fetch` on this pod answers 500 and changes nothing.
    pub fail_fetch_on: Option<String>,
    /// `POST /cluster/v1/key/fetch` on this pod answers 204 but stores a different
    /// hash, so only the verification step can catch it.
    pub diverge_hash_on: Option<String>,
    /// The Nth rolling restart (1-based) fails after replacing the first pod.
    pub fail_restart: Option<u32>,
    /// This pod's `GET /cluster/v1/key` returns valid JSON padded to at least this
    /// many bytes (for response-size-limit tests).
    pub oversized_status_on: Option<(String, usize)>,
    /// This pod's `GET /cluster/v1/key` answers only after this many milliseconds
    /// (for time-limit and concurrency-limit tests).
    pub slow_status_on: Option<(String, u64)>,
    /// Requests to this path are applied at once, but answered only after this
    /// many milliseconds (a lost answer: the client times out, the change landed).
    pub slow_answer: Option<(String, u64)>,
    /// Every write of a Lease (create or replace) answers 500: the host cannot renew
    /// the Lease it holds, and must stop changing the cluster once it expires.
    pub fail_lease_writes: bool,
    /// Every watch (`?watch=true`) answers 403 Forbidden, as for a Role without the
    /// `watch` verb: clients must read the objects instead.
    pub refuse_watch: bool,
    /// Every watch answers 500 Internal Server Error, as a failing API server
    /// would: clients read the objects meanwhile, and try the watch again later,
    /// not at once.
    pub fail_watch: bool,
}

impl Faults {
    pub fn fails_fetch(&self, pod: &str) -> bool {
        self.fail_fetch_on.as_deref() == Some(pod)
    }

    pub fn diverges_hash(&self, pod: &str) -> bool {
        self.diverge_hash_on.as_deref() == Some(pod)
    }

    /// Does the rolling restart number `n` (1-based) fail?
    pub fn fails_restart(&self, n: u32) -> bool {
        self.fail_restart == Some(n)
    }

    /// How long this pod's status read is held, if it is to be slow.
    pub fn slow_status(&self, pod: &str) -> Option<std::time::Duration> {
        match &self.slow_status_on {
            Some((p, ms)) if p == pod => Some(std::time::Duration::from_millis(*ms)),
            _ => None,
        }
    }

    /// How long to hold the answer to a request to `path`.
    pub fn answer_delay(&self, path: &str) -> Option<std::time::Duration> {
        match &self.slow_answer {
            Some((p, ms)) if p == path => Some(std::time::Duration::from_millis(*ms)),
            _ => None,
        }
    }

    /// The padded size of this pod's status body, if it is to be oversized.
    pub fn oversized_status(&self, pod: &str) -> Option<usize> {
        match &self.oversized_status_on {
            Some((p, size)) if p == pod => Some(*size),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_injects_nothing() {
        let f = Faults::default();
        assert!(!f.fails_fetch("sdkms-0"));
        assert!(!f.diverges_hash("sdkms-0"));
        assert!(!f.fails_restart(1));
        assert_eq!(f.oversized_status("sdkms-0"), None);
        assert_eq!(f.slow_status("sdkms-0"), None);
    }

    #[test]
    fn targets_only_the_named_pod() {
        let f = Faults {
            fail_fetch_on: Some("sdkms-1".into()),
            oversized_status_on: Some(("sdkms-2".into(), 100)),
            fail_restart: Some(2),
            ..Faults::default()
        };
        assert!(f.fails_fetch("sdkms-1"));
        assert!(!f.fails_fetch("sdkms-0"));
        assert_eq!(f.oversized_status("sdkms-2"), Some(100));
        assert!(!f.fails_restart(1));
        assert!(f.fails_restart(2));
    }

    #[test]
    fn deserializes_partial_json() {
        let f: Faults = serde_json::from_str(r#"{"warmup_503": 2}"#).unwrap();
        assert_eq!(f.warmup_503, 2);
        assert_eq!(f.fail_fetch_on, None);
    }
}
