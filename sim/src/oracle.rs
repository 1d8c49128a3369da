//! The oracle: what really happened to the cluster, for tests to assert on (rather
//! than on what the host printed). Every request to a pod is recorded (all methods,
//! including GET and the ones refused), and so is every rolling restart; one `seq`
//! counter orders both, so a test can say "no activate before restart #1 completed".

use serde::{Deserialize, Serialize};

/// One request that reached a pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub seq: u64,
    pub pod: String,
    pub ip: String,
    pub method: String,
    pub path: String,
    /// The request body parsed as JSON; a non-JSON body is kept as a JSON string.
    pub body: Option<serde_json::Value>,
    pub status: u16,
}

impl Call {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn is_post_to(&self, path: &str) -> bool {
        self.method == "POST" && self.path == path && self.ok()
    }
}

/// One rolling restart, recorded when it ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartRecord {
    pub seq: u64,
    pub ok: bool,
    pub detail: String,
}

/// The state of one pod at the time of the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodState {
    pub name: String,
    /// The IP of the live instance (also while Pending, when the pod list does not
    /// show it yet); `None` while stopped.
    pub ip: Option<String>,
    pub ready: bool,
    pub running_version: i64,
    pub fetched_hash: Option<String>,
    pub loaded_proposal: Option<String>,
    pub broken: bool,
}

/// A snapshot of everything the simulator knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Oracle {
    pub calls: Vec<Call>,
    pub restarts: Vec<RestartRecord>,
    pub pods: Vec<PodState>,
    /// The database's key version (1 until an activation).
    pub version: i64,
    pub proposal: Option<String>,
    /// Rolling restarts started so far; more than `restarts.len()` while one runs.
    #[serde(default)]
    pub restarts_started: u32,
    /// GETs of the workload by name (a client following a rollout by reading it
    /// rather than watching it).
    #[serde(default)]
    pub workload_reads: u32,
    /// Watch requests, answered or refused (a client that retries a failing watch
    /// at once shows here).
    #[serde(default)]
    pub watch_requests: u32,
}

pub const PROPOSE: &str = "/cluster/v1/key/propose";
pub const FETCH: &str = "/cluster/v1/key/fetch";
pub const ACTIVATE: &str = "/cluster/v1/key/activate";
pub const STATUS: &str = "/cluster/v1/key";

impl Oracle {
    /// Every POST that reached a pod, whatever its outcome.
    pub fn mutations(&self) -> Vec<&Call> {
        self.calls.iter().filter(|c| c.method == "POST").collect()
    }

    /// Successful proposes.
    pub fn proposes(&self) -> Vec<&Call> {
        self.calls
            .iter()
            .filter(|c| c.is_post_to(PROPOSE))
            .collect()
    }

    /// Successful fetches.
    pub fn fetches(&self) -> Vec<&Call> {
        self.calls.iter().filter(|c| c.is_post_to(FETCH)).collect()
    }

    /// Successful activates.
    pub fn activates(&self) -> Vec<&Call> {
        self.calls
            .iter()
            .filter(|c| c.is_post_to(ACTIVATE))
            .collect()
    }

    /// Is a rolling restart running now?
    pub fn restart_in_progress(&self) -> bool {
        self.restarts_started as usize > self.restarts.len()
    }

    /// Pods that cannot unwrap the database: data lost.
    pub fn broken_pods(&self) -> Vec<&PodState> {
        self.pods.iter().filter(|p| p.broken).collect()
    }
}

/// The recording side: calls and restarts, under the simulator's lock.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    next_seq: u64,
    pub(crate) calls: Vec<Call>,
    pub(crate) restarts: Vec<RestartRecord>,
}

impl Recorder {
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    pub(crate) fn call(&mut self, mut call: Call) {
        call.seq = self.next_seq();
        self.calls.push(call);
    }

    pub(crate) fn restart(&mut self, ok: bool, detail: String) {
        let seq = self.next_seq();
        self.restarts.push(RestartRecord { seq, ok, detail });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, path: &str, status: u16) -> Call {
        Call {
            seq: 0,
            pod: "sdkms-0".into(),
            ip: "127.0.0.1".into(),
            method: method.into(),
            path: path.into(),
            body: None,
            status,
        }
    }

    #[test]
    fn filters_and_orders() {
        let mut r = Recorder::default();
        r.call(call("GET", STATUS, 200));
        r.call(call("POST", PROPOSE, 204));
        r.call(call("POST", FETCH, 502));
        r.call(call("POST", FETCH, 204));
        r.restart(true, "done".into());
        r.call(call("POST", ACTIVATE, 204));
        let o = Oracle {
            calls: r.calls,
            restarts: r.restarts,
            pods: vec![],
            version: 2,
            proposal: None,
            restarts_started: 1,
            workload_reads: 0,
            watch_requests: 0,
        };
        assert_eq!(o.mutations().len(), 4);
        assert_eq!(o.proposes().len(), 1);
        assert_eq!(o.fetches().len(), 1);
        assert_eq!(o.fetches()[0].seq, 4);
        assert_eq!(o.restarts[0].seq, 5);
        assert_eq!(o.activates()[0].seq, 6);
        assert!(o.broken_pods().is_empty());
    }
}
