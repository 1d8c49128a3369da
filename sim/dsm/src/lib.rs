//! `cmk-dsm`: the shared "database" of a DSM cluster and the rules of the cluster
//! master key (CMK) life cycle, the one model of them in this workspace.
//!
//! Pure: no sockets, no clocks, no randomness (hashes are passed in), so every rule
//! is unit-tested directly. The simulator (`cmk-sim`: its `pod.rs` HTTP layer and its
//! rolling restart) and the guests' in-memory test clusters only translate requests
//! and restarts into calls on [`Db`]; a rule changes here, for all of them.
//!
//! The rules, as the documented procedure implies them:
//! - `propose` creates a new proposal and *replaces* any existing one: pods that fetched
//!   the old proposal now hold a stale hash (the danger of proposing twice).
//! - `fetch` copies the proposal from a target pod that holds it.
//! - A pod loads the proposal from the database when it starts, if it has fetched it.
//! - `activate` makes the proposal the active key and bumps the version; it does not
//!   check that the pods are ready for it (that is how data is lost in real life).
//! - A pod that starts after an activation must have loaded the activated key at its
//!   previous start; otherwise it cannot unwrap the database and is broken for good.

use std::collections::BTreeMap;

/// Why a database operation was refused. Each maps to one HTTP status in `pod.rs`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    #[error("no proposal exists")]
    NoProposal,
    #[error("fetch target {0} is not a live pod holding the current proposal")]
    BadTarget(String),
    #[error("unknown pod {0}")]
    UnknownPod(String),
    #[error("cannot unwrap database: master key version {0} not loaded")]
    Broken(i64),
}

/// What one pod instance knows; reset on every restart (except `broken`, which is
/// sticky: a pod that lost the key never gets it back during the simulation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instance {
    /// Monotonic id of the instance, so that requests served by a replaced instance
    /// can be told apart from those of its successor.
    pub id: u64,
    /// The key version this instance loaded at start (it keeps the old key in memory
    /// until it is restarted, even after an activation).
    pub running_version: i64,
    /// The proposal this instance loaded at start (it had fetched it before).
    pub loaded_proposal: Option<String>,
}

/// Everything the database knows about one pod, by its (stable) name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRecord {
    /// Persisted across restarts: the proposal hash this pod fetched.
    pub fetched_hash: Option<String>,
    /// The current instance, `None` while the pod is stopped.
    pub instance: Option<Instance>,
    /// The last instance that ran (kept while stopped, to apply the start rules).
    pub last: Option<Instance>,
    /// Sticky: the pod could not unwrap the database at some start.
    pub broken: bool,
}

/// A pod's key status, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    pub version: i64,
    pub fetched_hash: Option<String>,
}

/// The shared database and the per-pod state.
#[derive(Debug, Clone)]
pub struct Db {
    version: i64,
    /// `keys[v - 1]` is the key (hash) of version `v`.
    keys: Vec<String>,
    proposal: Option<String>,
    pods: BTreeMap<String, PodRecord>,
    next_instance: u64,
}

impl Db {
    /// A fresh database at version 1 with `initial_key` as the active key.
    pub fn new(initial_key: String) -> Self {
        Db {
            version: 1,
            keys: vec![initial_key],
            proposal: None,
            pods: BTreeMap::new(),
            next_instance: 1,
        }
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    pub fn active_key(&self) -> &str {
        &self.keys[self.keys.len() - 1]
    }

    /// The key of a given version (for the informational `key_id` of the status).
    pub fn key_of(&self, version: i64) -> Option<&str> {
        usize::try_from(version - 1)
            .ok()
            .and_then(|i| self.keys.get(i))
            .map(String::as_str)
    }

    pub fn proposal(&self) -> Option<&str> {
        self.proposal.as_deref()
    }

    pub fn pod(&self, name: &str) -> Option<&PodRecord> {
        self.pods.get(name)
    }

    pub fn pods(&self) -> impl Iterator<Item = (&String, &PodRecord)> {
        self.pods.iter()
    }

    /// Is `instance` the live instance of `pod`? Requests that reach an instance that
    /// has been replaced (a race with a restart) must not change anything.
    pub fn is_current(&self, pod: &str, instance: u64) -> bool {
        self.pods
            .get(pod)
            .and_then(|p| p.instance.as_ref())
            .is_some_and(|i| i.id == instance)
    }

    /// Start a (new instance of a) pod and apply the start rules. Returns the new
    /// instance id. Starting a pod that is already running replaces its instance.
    pub fn start_pod(&mut self, name: &str) -> u64 {
        let id = self.next_instance;
        self.next_instance += 1;
        let version = self.version;
        let active = self.active_key().to_string();
        let proposal = self.proposal.clone();
        let rec = self.pods.entry(name.to_string()).or_default();
        if let Some(old) = rec.instance.take() {
            rec.last = Some(old);
        }
        let mut running_version = version;
        if let Some(prev) = &rec.last {
            running_version = prev.running_version;
            if version > prev.running_version {
                // An activation happened since this pod last started: it can only
                // unwrap the database if it loaded the activated key back then.
                if prev.loaded_proposal.as_deref() == Some(active.as_str()) && !rec.broken {
                    running_version = version;
                    // The proposal is now the active key: nothing left to fetch.
                    rec.fetched_hash = None;
                } else {
                    rec.broken = true;
                }
            }
        }
        let loaded_proposal = if rec.broken {
            None
        } else {
            match (&proposal, &rec.fetched_hash) {
                (Some(p), Some(f)) if p == f && *p != active => Some(p.clone()),
                _ => None,
            }
        };
        rec.instance = Some(Instance {
            id,
            running_version,
            loaded_proposal,
        });
        self.settle();
        id
    }

    /// Stop the live instance of a pod (its state is kept for the next start).
    pub fn stop_pod(&mut self, name: &str) {
        if let Some(rec) = self.pods.get_mut(name)
            && let Some(old) = rec.instance.take()
        {
            rec.last = Some(old);
        }
    }

    /// What `GET /cluster/v1/key` on `pod` reports: the version its instance runs and
    /// the proposal it fetched; the error for a pod that is stopped or broken.
    pub fn status(&self, pod: &str) -> Result<KeyState, DbError> {
        let running_version = self.check_usable(pod)?.running_version;
        Ok(KeyState {
            version: running_version,
            fetched_hash: self.pods.get(pod).and_then(|p| p.fetched_hash.clone()),
        })
    }

    /// The error every request to a broken pod gets.
    pub fn check_usable(&self, pod: &str) -> Result<&Instance, DbError> {
        let rec = self
            .pods
            .get(pod)
            .ok_or_else(|| DbError::UnknownPod(pod.to_string()))?;
        let inst = rec
            .instance
            .as_ref()
            .ok_or_else(|| DbError::UnknownPod(pod.to_string()))?;
        if rec.broken {
            return Err(DbError::Broken(self.version));
        }
        Ok(inst)
    }

    /// `POST /cluster/v1/key/propose` on `pod`: a new proposal `hash` replaces any
    /// existing one; the proposer holds it.
    pub fn propose(&mut self, pod: &str, hash: String) -> Result<(), DbError> {
        self.check_usable(pod)?;
        self.proposal = Some(hash.clone());
        if let Some(rec) = self.pods.get_mut(pod) {
            rec.fetched_hash = Some(hash);
        }
        Ok(())
    }

    /// `POST /cluster/v1/key/fetch` on `pod` from `target` (a pod name that the caller
    /// resolved from `ip:port`; `None` if no live pod has that address). With
    /// `diverge`, the pod stores that hash instead of the proposal (a fault).
    pub fn fetch(
        &mut self,
        pod: &str,
        target: Option<&str>,
        target_addr: &str,
        diverge: Option<String>,
    ) -> Result<(), DbError> {
        self.check_usable(pod)?;
        let proposal = self.proposal.clone().ok_or(DbError::NoProposal)?;
        let bad = || DbError::BadTarget(target_addr.to_string());
        let target = target.ok_or_else(bad)?;
        let trec = self.pods.get(target).ok_or_else(bad)?;
        if trec.instance.is_none() || trec.broken {
            return Err(bad());
        }
        if trec.fetched_hash.as_deref() != Some(proposal.as_str()) {
            return Err(bad());
        }
        if let Some(rec) = self.pods.get_mut(pod) {
            rec.fetched_hash = Some(diverge.unwrap_or(proposal));
        }
        Ok(())
    }

    /// `POST /cluster/v1/key/activate` on `pod`: the proposal becomes the active key and
    /// the version is bumped. Deliberately unchecked: activating before every pod has
    /// loaded the proposal is allowed, and breaks those pods at their next start.
    ///
    /// Returns `Ok(false)` when the proposal is already the active key (a repeated
    /// activate, e.g. a retry after a lost response): nothing changes.
    pub fn activate(&mut self, pod: &str) -> Result<bool, DbError> {
        self.check_usable(pod)?;
        let proposal = self.proposal.clone().ok_or(DbError::NoProposal)?;
        if proposal == self.active_key() {
            return Ok(false);
        }
        self.version += 1;
        self.keys.push(proposal);
        self.settle();
        Ok(true)
    }

    /// Once every pod runs the active version, the activated proposal is history:
    /// clear it so that the status is coherent (version 2, no proposal).
    fn settle(&mut self) {
        if self.proposal.as_deref() != Some(self.active_key()) {
            return;
        }
        let all_current = self.pods.values().all(|p| {
            !p.broken
                && p.instance
                    .as_ref()
                    .is_some_and(|i| i.running_version == self.version)
        });
        if all_current {
            self.proposal = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODS: [&str; 3] = ["sdkms-0", "sdkms-1", "sdkms-2"];

    fn cluster() -> Db {
        let mut db = Db::new("k1".into());
        for p in PODS {
            db.start_pod(p);
        }
        db
    }

    fn restart_all(db: &mut Db) {
        for p in PODS {
            db.stop_pod(p);
            db.start_pod(p);
        }
    }

    fn inst<'a>(db: &'a Db, p: &str) -> &'a Instance {
        db.pod(p).unwrap().instance.as_ref().unwrap()
    }

    fn any_broken(db: &Db) -> bool {
        db.pods().any(|(_, p)| p.broken)
    }

    #[test]
    fn fresh_cluster_is_version_1_without_proposal() {
        let db = cluster();
        assert_eq!(db.version(), 1);
        assert_eq!(db.proposal(), None);
        for p in PODS {
            assert_eq!(inst(&db, p).running_version, 1);
            assert_eq!(db.pod(p).unwrap().fetched_hash, None);
        }
    }

    #[test]
    fn correct_procedure_puts_everyone_on_version_2() {
        let mut db = cluster();
        db.propose("sdkms-0", "h".into()).unwrap();
        db.fetch("sdkms-1", Some("sdkms-0"), "a", None).unwrap();
        db.fetch("sdkms-2", Some("sdkms-0"), "a", None).unwrap();
        for p in PODS {
            assert_eq!(db.pod(p).unwrap().fetched_hash.as_deref(), Some("h"));
        }
        restart_all(&mut db);
        for p in PODS {
            assert_eq!(inst(&db, p).loaded_proposal.as_deref(), Some("h"));
            assert_eq!(inst(&db, p).running_version, 1);
        }
        assert!(db.activate("sdkms-1").unwrap());
        assert_eq!(db.version(), 2);
        assert_eq!(db.active_key(), "h");
        // Pods keep the old key in memory until restarted.
        for p in PODS {
            assert_eq!(inst(&db, p).running_version, 1);
        }
        restart_all(&mut db);
        assert!(!any_broken(&db));
        for p in PODS {
            assert_eq!(inst(&db, p).running_version, 2);
            assert_eq!(db.pod(p).unwrap().fetched_hash, None);
        }
        assert_eq!(db.proposal(), None, "settled once everyone runs version 2");
        assert_eq!(db.key_of(1), Some("k1"));
        assert_eq!(db.key_of(2), Some("h"));
    }

    #[test]
    fn propose_twice_replaces_and_leaves_stale_hashes() {
        let mut db = cluster();
        db.propose("sdkms-0", "h1".into()).unwrap();
        db.fetch("sdkms-1", Some("sdkms-0"), "a", None).unwrap();
        db.propose("sdkms-2", "h2".into()).unwrap();
        assert_eq!(db.proposal(), Some("h2"));
        assert_eq!(
            db.pod("sdkms-1").unwrap().fetched_hash.as_deref(),
            Some("h1")
        );
        // sdkms-0 no longer holds the proposal: it is not a valid target any more.
        assert_eq!(
            db.fetch("sdkms-1", Some("sdkms-0"), "a", None),
            Err(DbError::BadTarget("a".into()))
        );
        // A restart now loads nothing on the stale pods.
        restart_all(&mut db);
        assert_eq!(inst(&db, "sdkms-0").loaded_proposal, None);
        assert_eq!(inst(&db, "sdkms-1").loaded_proposal, None);
        assert_eq!(inst(&db, "sdkms-2").loaded_proposal.as_deref(), Some("h2"));
    }

    #[test]
    fn fetch_needs_a_live_holder_and_a_proposal() {
        let mut db = cluster();
        assert_eq!(
            db.fetch("sdkms-1", Some("sdkms-0"), "a", None),
            Err(DbError::NoProposal)
        );
        db.propose("sdkms-0", "h".into()).unwrap();
        // Target does not hold the proposal.
        assert!(matches!(
            db.fetch("sdkms-1", Some("sdkms-2"), "a", None),
            Err(DbError::BadTarget(_))
        ));
        // No pod at that address.
        assert!(matches!(
            db.fetch("sdkms-1", None, "a", None),
            Err(DbError::BadTarget(_))
        ));
        // Target stopped.
        db.stop_pod("sdkms-0");
        assert!(matches!(
            db.fetch("sdkms-1", Some("sdkms-0"), "a", None),
            Err(DbError::BadTarget(_))
        ));
        assert_eq!(db.pod("sdkms-1").unwrap().fetched_hash, None);
        // Once back, the proposer still holds it (fetched hash persists).
        db.start_pod("sdkms-0");
        db.fetch("sdkms-1", Some("sdkms-0"), "a", None).unwrap();
        // A pod that fetched can itself serve as a target.
        db.fetch("sdkms-2", Some("sdkms-1"), "a", None).unwrap();
        assert_eq!(
            db.pod("sdkms-2").unwrap().fetched_hash.as_deref(),
            Some("h")
        );
    }

    #[test]
    fn diverged_fetch_stores_another_hash() {
        let mut db = cluster();
        db.propose("sdkms-0", "h".into()).unwrap();
        db.fetch("sdkms-1", Some("sdkms-0"), "a", Some("bad".into()))
            .unwrap();
        assert_eq!(
            db.pod("sdkms-1").unwrap().fetched_hash.as_deref(),
            Some("bad")
        );
        // And it cannot serve as a target.
        assert!(db.fetch("sdkms-2", Some("sdkms-1"), "a", None).is_err());
    }

    #[test]
    fn activate_needs_a_proposal() {
        let mut db = cluster();
        assert_eq!(db.activate("sdkms-0"), Err(DbError::NoProposal));
        assert_eq!(db.version(), 1);
    }

    #[test]
    fn activate_twice_is_a_no_op() {
        let mut db = cluster();
        db.propose("sdkms-0", "h".into()).unwrap();
        assert!(db.activate("sdkms-0").unwrap());
        assert!(!db.activate("sdkms-0").unwrap());
        assert_eq!(db.version(), 2);
    }

    #[test]
    fn activate_before_restart_breaks_every_pod() {
        let mut db = cluster();
        db.propose("sdkms-0", "h".into()).unwrap();
        db.fetch("sdkms-1", Some("sdkms-0"), "a", None).unwrap();
        db.fetch("sdkms-2", Some("sdkms-0"), "a", None).unwrap();
        db.activate("sdkms-0").unwrap();
        restart_all(&mut db);
        for p in PODS {
            assert!(db.pod(p).unwrap().broken, "{p}");
            assert_eq!(db.check_usable(p), Err(DbError::Broken(2)));
        }
        // Broken is sticky: another restart does not heal it.
        restart_all(&mut db);
        assert!(db.pods().all(|(_, p)| p.broken));
        assert!(matches!(
            db.propose("sdkms-0", "x".into()),
            Err(DbError::Broken(2))
        ));
    }

    #[test]
    fn pod_that_missed_the_fetch_breaks_the_others_survive() {
        let mut db = cluster();
        db.propose("sdkms-0", "h".into()).unwrap();
        db.fetch("sdkms-1", Some("sdkms-0"), "a", None).unwrap();
        restart_all(&mut db);
        db.activate("sdkms-0").unwrap();
        restart_all(&mut db);
        assert!(!db.pod("sdkms-0").unwrap().broken);
        assert!(!db.pod("sdkms-1").unwrap().broken);
        assert!(db.pod("sdkms-2").unwrap().broken);
        assert_eq!(inst(&db, "sdkms-0").running_version, 2);
        assert_eq!(inst(&db, "sdkms-2").running_version, 1);
        // Not everybody is on version 2: the proposal is not settled.
        assert_eq!(db.proposal(), Some("h"));
    }

    #[test]
    fn fetch_after_activation_does_not_save_a_pod() {
        let mut db = cluster();
        db.propose("sdkms-0", "h".into()).unwrap();
        db.fetch("sdkms-1", Some("sdkms-0"), "a", None).unwrap();
        restart_all(&mut db);
        db.activate("sdkms-0").unwrap();
        // Too late: the fetched hash is loaded only at a start before the activation.
        db.fetch("sdkms-2", Some("sdkms-0"), "a", None).unwrap();
        restart_all(&mut db);
        assert!(db.pod("sdkms-2").unwrap().broken);
    }

    #[test]
    fn skipping_the_first_restart_breaks_everyone() {
        let mut db = cluster();
        db.propose("sdkms-0", "h".into()).unwrap();
        db.fetch("sdkms-1", Some("sdkms-0"), "a", None).unwrap();
        db.fetch("sdkms-2", Some("sdkms-0"), "a", None).unwrap();
        db.activate("sdkms-0").unwrap();
        restart_all(&mut db);
        assert!(db.pods().all(|(_, p)| p.broken));
    }

    #[test]
    fn replaced_instances_are_not_current() {
        let mut db = cluster();
        let old = inst(&db, "sdkms-0").id;
        assert!(db.is_current("sdkms-0", old));
        db.stop_pod("sdkms-0");
        assert!(!db.is_current("sdkms-0", old));
        let new = db.start_pod("sdkms-0");
        assert_ne!(old, new);
        assert!(db.is_current("sdkms-0", new));
        assert!(!db.is_current("sdkms-0", old));
    }

    #[test]
    fn status_reports_the_running_version_and_the_fetched_hash() {
        let mut db = cluster();
        db.propose("sdkms-0", "h".into()).unwrap();
        let s = db.status("sdkms-0").unwrap();
        assert_eq!((s.version, s.fetched_hash.as_deref()), (1, Some("h")));
        db.stop_pod("sdkms-1");
        assert_eq!(
            db.status("sdkms-1"),
            Err(DbError::UnknownPod("sdkms-1".into()))
        );
    }

    #[test]
    fn restart_without_activation_keeps_version() {
        let mut db = cluster();
        restart_all(&mut db);
        restart_all(&mut db);
        assert!(!any_broken(&db));
        assert!(PODS.iter().all(|p| inst(&db, p).running_version == 1));
    }
}
