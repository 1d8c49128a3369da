//! `cmk-sim`: a faithful simulated Fortanix DSM cluster on loopback, for the demo, the
//! tests and the benchmarks of `cmk-host`.
//!
//! Real TLS, real sockets, no mocks: every pod is an HTTPS server on its own loopback
//! IP (`127.A.B.C`), a Kubernetes-API-compatible HTTPS server lists them for the real
//! `kube` client, a rolling restart replaces them one by one with new IPs, and one
//! shared database applies the cluster-master-key rules (see [`db`]). The [`Oracle`]
//! records what really happened, so tests assert on the cluster, not on the output.
//!
//! Rooms: [`pki`] (CA and certificates), [`db`] (the rules, pure), `pod` (a pod's
//! HTTPS API), `kube_api` (the API server), [`selector`] (label selectors),
//! [`oracle`] (the record), [`faults`] (fault injection), `files` (kubeconfig,
//! site file, restart script), `serve` (the TLS accept loop), `kubectl` (discovery,
//! tables and watches for the real `kubectl`), `workload` (the
//! StatefulSet, for restarts by rollout). This file ties them
//! together: the [`Sim`] handle, pod life cycle and the rolling restart.

/// The rules, pure, in their own crate so that the guests' unit tests follow them too.
pub use cmk_dsm as db;
pub mod faults;
mod files;
mod kube_api;
mod kubectl;
pub mod lease;
pub mod oracle;
pub mod pki;
mod pod;
pub mod selector;
mod serve;
mod workload;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, bail};
use rand::Rng;

pub use faults::Faults;
pub use files::SimFiles;
pub use oracle::{Call, Oracle, PodState, RestartRecord};

use db::Db;
use oracle::Recorder;
use pki::{CertNames, Pki};
use serve::ServerHandle;

/// How to build a simulated cluster.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of pods, named `sdkms-0` .. `sdkms-{N-1}`.
    pub pods: usize,
    /// The port every pod listens on (each on its own IP).
    pub port: u16,
    pub namespace: String,
    /// The labels every pod carries (plus `statefulset.kubernetes.io/pod-name`).
    pub labels: BTreeMap<String, String>,
    /// The pause between the steps of a pod replacement in a rolling restart.
    pub restart_step_delay: Duration,
    pub faults: Faults,
    /// The kind of the workload `sdkms` that owns the pods (for restarts by rollout).
    pub workload: WorkloadKind,
    /// The key state the cluster starts in.
    pub start: Start,
    /// What the pods' certificates name.
    pub pod_certs: PodCerts,
}

/// The names on the pods' certificates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PodCerts {
    /// Each pod's IP and its name: verifiable by the IP the client connects to.
    #[default]
    IpAndName,
    /// Only this DNS name on every pod, as an appliance's certificates name the
    /// cluster rather than each pod: verifiable only against that name
    /// (`[tls] server_name`, kubeconfig's `tls-server-name`, `curl --connect-to`).
    DnsOnly(String),
}

/// What owns the simulated pods, as the API server shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WorkloadKind {
    /// `apps/v1` StatefulSet `sdkms` (DSM's usual deployment).
    #[default]
    StatefulSet,
    /// `apps/v1` Deployment `sdkms`.
    Deployment,
}

/// The key state a simulated cluster starts in. Set up directly in the database,
/// not through the pods' API: the oracle records no call for it, so a test's
/// assertions see only what the component under test did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// Version 1, nothing proposed: a cluster before its first rotation.
    #[default]
    Fresh,
    /// As after step 3 of the procedure: a proposal made on `sdkms-0` and fetched by
    /// every other pod. A pod named by [`Faults::diverge_hash_on`] holds a different
    /// hash, as if its fetch had gone wrong: pods that disagree, for read-only checks.
    Distributed,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            pods: 3,
            port: 4444,
            namespace: "sdkms".into(),
            labels: BTreeMap::from([("app".to_string(), "sdkms".to_string())]),
            restart_step_delay: Duration::from_millis(30),
            faults: Faults::default(),
            workload: WorkloadKind::default(),
            start: Start::Fresh,
            pod_certs: PodCerts::default(),
        }
    }
}

impl SimConfig {
    /// The default configuration with `n` pods.
    pub fn pods(n: usize) -> Self {
        SimConfig {
            pods: n,
            ..SimConfig::default()
        }
    }
}

/// How a pod appears in the pod list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Stopped: not in the list (a StatefulSet pod between deletion and re-creation).
    Absent,
    /// Created, not running yet: listed without an IP, not Ready.
    Pending,
    /// Running and Ready, with its IP.
    Running,
}

/// The Kubernetes-visible side of a pod, and the network side of its instance.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub phase: Phase,
    /// The IP the current instance is bound to (also while Pending, though the pod
    /// list only shows it once Running).
    pub ip: Option<Ipv4Addr>,
    /// A new uid per instance, as a re-created StatefulSet pod gets.
    pub uid: String,
    /// Requests the current instance still answers with 503 (warm-up fault).
    pub warmup_left: u32,
    /// The StatefulSet revision the instance was created from.
    pub revision: String,
    /// When the instance was created (the pod's `creationTimestamp`, its age).
    pub created: k8s_openapi::jiff::Timestamp,
}

/// Mutable state, under one lock (never held across an await).
#[derive(Debug)]
pub(crate) struct State {
    pub db: Db,
    pub recorder: Recorder,
    pub faults: Faults,
    pub slots: BTreeMap<String, Slot>,
    /// The StatefulSet that owns the pods (for restarts by rollout).
    pub workload: workload::Workload,
    /// Rolling restarts started so far (for the `fail_restart` fault).
    pub restarts_started: u32,
    /// GETs of the workload (StatefulSet or Deployment) by name, watches aside.
    pub workload_reads: u32,
    /// Watch requests (`?watch=true`) of any kind, answered or refused.
    pub watch_requests: u32,
    /// Bumped on every change of the pod list (the list's resourceVersion).
    pub resource_version: u64,
    /// `coordination.k8s.io/v1` Leases.
    pub leases: lease::Leases,
}

/// Allocates pod IPs: `127.A.B.C`, A and B random per simulator so that parallel
/// test processes rarely collide (and retry when they do), C incremented per instance
/// so that a restarted pod always gets a new IP.
#[derive(Debug)]
struct IpAlloc {
    a: u8,
    b: u8,
    c: u8,
}

impl IpAlloc {
    fn random() -> Self {
        let mut rng = rand::rng();
        IpAlloc {
            a: rng.random_range(16..=250),
            b: rng.random(),
            c: 0,
        }
    }

    fn next(&mut self) -> Ipv4Addr {
        if self.c >= 254 {
            self.c = 0;
            self.b = self.b.wrapping_add(1);
        }
        self.c += 1;
        Ipv4Addr::new(127, self.a, self.b, self.c)
    }
}

/// Everything the servers share. Handlers hold an `Arc` of it.
pub(crate) struct Shared {
    pub config: SimConfig,
    pub pki: Pki,
    pub token: String,
    pub state: Mutex<State>,
    servers: Mutex<BTreeMap<String, ServerHandle>>,
    ips: Mutex<IpAlloc>,
    /// One rolling restart at a time, as with a real StatefulSet.
    restart_lock: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    /// Woken whenever the state's resourceVersion moves (for watches).
    pub changed: tokio::sync::Notify,
}

/// The locked state; when it is let go with a new resourceVersion, every watch
/// waiting on [`Shared::changed`] wakes, as a real API server pushes the change.
pub(crate) struct StateGuard<'a> {
    guard: MutexGuard<'a, State>,
    seen: u64,
    changed: &'a tokio::sync::Notify,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if self.guard.resource_version != self.seen {
            self.changed.notify_waiters();
        }
    }
}

/// Lock a mutex, ignoring poisoning: a panicking handler must not take the whole
/// simulator down with it (the state is updated in single steps).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

impl Shared {
    pub fn state(&self) -> StateGuard<'_> {
        let guard = lock(&self.state);
        StateGuard {
            seen: guard.resource_version,
            guard,
            changed: &self.changed,
        }
    }

    fn pod_names(&self) -> Vec<String> {
        (0..self.config.pods)
            .map(|i| format!("sdkms-{i}"))
            .collect()
    }

    /// Start a new instance of pod `name` on a new IP. It is listening when this
    /// returns; its phase is `phase` (Pending during a rolling restart).
    async fn start_pod(
        self: &Arc<Self>,
        name: &str,
        phase: Phase,
        warmup: bool,
    ) -> anyhow::Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            bail!("simulator is shut down");
        }
        let port = self.config.port;
        let mut last_err = None;
        let mut bound = None;
        for _ in 0..64 {
            let ip = lock(&self.ips).next();
            match tokio::net::TcpListener::bind((ip, port)).await {
                Ok(l) => {
                    bound = Some((ip, l));
                    break;
                }
                Err(e) => {
                    // Address in use (another simulator), or not bindable: next one.
                    tracing::debug!(pod = name, %ip, error = %e, "bind failed, trying another IP");
                    last_err = Some(e);
                }
            }
        }
        let Some((ip, listener)) = bound else {
            return Err(last_err.map_or_else(|| anyhow::anyhow!("no address"), Into::into))
                .with_context(|| format!("binding a loopback address for pod {name}"));
        };
        let names = match &self.config.pod_certs {
            PodCerts::IpAndName => CertNames::Ip(IpAddr::V4(ip), Some(name)),
            PodCerts::DnsOnly(dns) => CertNames::DnsOnly(dns),
        };
        let tls = self.pki.server_config(names)?;
        let instance = {
            let mut st = self.state();
            let instance = st.db.start_pod(name);
            let warmup_left = if warmup { st.faults.warmup_503 } else { 0 };
            let revision = st.workload.update_revision.clone();
            st.slots.insert(
                name.to_string(),
                Slot {
                    phase,
                    ip: Some(ip),
                    uid: uuid_like(),
                    warmup_left,
                    revision,
                    created: crate::now(),
                },
            );
            st.resource_version += 1;
            instance
        };
        let router = pod::router(pod::PodCtx {
            shared: self.clone(),
            name: name.to_string(),
            ip,
            instance,
        });
        let handle = serve::serve(listener, tls, router, name.to_string())?;
        tracing::debug!(pod = name, %ip, port, instance, "pod started");
        let old = lock(&self.servers).insert(name.to_string(), handle);
        if let Some(old) = old {
            old.stop().await;
        }
        if self.closed.load(Ordering::SeqCst) {
            self.stop_all();
        }
        Ok(())
    }

    /// Applies [`Start::Distributed`]: propose on the first pod, fetch on the others
    /// (honouring `diverge_hash_on`), straight on the database.
    fn distribute_proposal(&self) -> anyhow::Result<()> {
        let names = self.pod_names();
        let (proposer, others) = names.split_first().context("no pods")?;
        let mut st = self.state();
        st.db.propose(proposer, random_hex(32))?;
        for name in others {
            let diverge = st.faults.diverges_hash(name).then(|| random_hex(32));
            st.db
                .fetch(name, Some(proposer), "start: distributed", diverge)?;
        }
        Ok(())
    }

    fn set_phase(&self, name: &str, phase: Phase) {
        let mut st = self.state();
        if let Some(slot) = st.slots.get_mut(name) {
            slot.phase = phase;
        }
        st.resource_version += 1;
    }

    /// Stop pod `name`: it leaves the list, its listener closes, its connections end.
    async fn stop_pod(&self, name: &str) {
        {
            let mut st = self.state();
            st.db.stop_pod(name);
            if let Some(slot) = st.slots.get_mut(name) {
                slot.phase = Phase::Absent;
                slot.ip = None;
            }
            st.resource_version += 1;
        }
        let handle = lock(&self.servers).remove(name);
        if let Some(h) = handle {
            h.stop().await;
        }
        tracing::debug!(pod = name, "pod stopped");
    }

    /// One rolling restart, pods one by one (sdkms-0 first), recorded when it ends.
    pub async fn rolling_restart(self: &Arc<Self>) -> anyhow::Result<()> {
        let _one_at_a_time = self.restart_lock.lock().await;
        let (n, fail) = {
            let mut st = self.state();
            st.restarts_started += 1;
            let n = st.restarts_started;
            (n, st.faults.fails_restart(n))
        };
        tracing::info!(restart = n, "rolling restart started");
        let result = self.replace_pods(n, fail).await;
        let mut st = self.state();
        match &result {
            Ok((detail, last)) => {
                // The last pod turns Ready in the same step as the restart is
                // recorded and the rollout completes: whoever sees the rollout done
                // (a Deployment's counts, a StatefulSet's revisions) also finds it
                // in the oracle.
                if let Some(slot) = st.slots.get_mut(last) {
                    slot.phase = Phase::Running;
                }
                st.recorder.restart(true, detail.clone());
                st.workload.rollout_done();
                st.resource_version += 1;
            }
            Err(e) => st.recorder.restart(false, format!("{e:#}")),
        }
        drop(st);
        match &result {
            Ok(_) => tracing::info!(restart = n, "rolling restart done"),
            Err(e) => {
                tracing::warn!(restart = n, error = %format!("{e:#}"), "rolling restart failed")
            }
        }
        result.map(|_| ())
    }

    /// Replaces the pods one by one. Every pod but the last is Running when this
    /// returns; the last is left Pending for the caller to finish (with the record).
    /// Returns the record's detail and the last pod's name.
    async fn replace_pods(
        self: &Arc<Self>,
        n: u32,
        fail: bool,
    ) -> anyhow::Result<(String, String)> {
        let delay = self.config.restart_step_delay;
        let mut replaced = Vec::new();
        let names = self.pod_names();
        let last = names.last().cloned().unwrap_or_default();
        for (i, name) in names.into_iter().enumerate() {
            if self.closed.load(Ordering::SeqCst) {
                bail!("rolling restart #{n} aborted: simulator shut down");
            }
            let old_ip = self.state().slots.get(&name).and_then(|s| s.ip);
            self.stop_pod(&name).await;
            tokio::time::sleep(delay).await;
            self.start_pod(&name, Phase::Pending, true).await?;
            tokio::time::sleep(delay).await;
            if name != last || fail {
                self.set_phase(&name, Phase::Running);
            }
            let new_ip = self.state().slots.get(&name).and_then(|s| s.ip);
            replaced.push(format!(
                "{name} {} -> {}",
                old_ip.map_or("-".into(), |ip| ip.to_string()),
                new_ip.map_or("-".into(), |ip| ip.to_string())
            ));
            if fail && i == 0 {
                bail!(
                    "rolling restart #{n} failed after replacing {name} (injected fault fail_restart)"
                );
            }
        }
        Ok((
            format!("rolling restart #{n}: {}", replaced.join(", ")),
            last,
        ))
    }

    /// Stop every pod server at once (synchronously: usable from `Drop`).
    fn stop_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let servers = std::mem::take(&mut *lock(&self.servers));
        drop(servers);
    }

    pub fn oracle(&self) -> Oracle {
        let st = self.state();
        let pods = self
            .pod_names()
            .into_iter()
            .map(|name| {
                let slot = st.slots.get(&name);
                let rec = st.db.pod(&name).cloned().unwrap_or_default();
                let inst = rec.instance.as_ref().or(rec.last.as_ref());
                PodState {
                    ip: slot
                        .filter(|s| s.phase != Phase::Absent)
                        .and_then(|s| s.ip)
                        .map(|ip| ip.to_string()),
                    ready: slot.is_some_and(|s| s.phase == Phase::Running),
                    running_version: inst.map_or(0, |i| i.running_version),
                    fetched_hash: rec.fetched_hash.clone(),
                    loaded_proposal: inst.and_then(|i| i.loaded_proposal.clone()),
                    broken: rec.broken,
                    name,
                }
            })
            .collect();
        Oracle {
            calls: st.recorder.calls.clone(),
            restarts: st.recorder.restarts.clone(),
            pods,
            version: st.db.version(),
            proposal: st.db.proposal().map(str::to_string),
            restarts_started: st.restarts_started,
            workload_reads: st.workload_reads,
            watch_requests: st.watch_requests,
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        tracing::info!(?faults, "faults set");
        self.state().faults = faults;
    }

    /// In StatefulSet order (`sdkms-2` before `sdkms-10`).
    pub fn pod_ips(&self) -> Vec<(String, String)> {
        let st = self.state();
        self.pod_names()
            .into_iter()
            .filter_map(|n| {
                let slot = st.slots.get(&n).filter(|s| s.phase == Phase::Running)?;
                let ip = slot.ip?.to_string();
                Some((n, ip))
            })
            .collect()
    }
}

/// The time now, to the microsecond (jiff's own `now` needs a feature this crate
/// does not otherwise need).
pub(crate) fn now() -> k8s_openapi::jiff::Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    k8s_openapi::jiff::Timestamp::from_microsecond(since.as_micros() as i64).unwrap_or_default()
}

/// A random RFC 4122-shaped id, for pod uids.
fn uuid_like() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A running simulated cluster. Cheap to share by reference; `Send + Sync`.
/// Dropping it stops every server (use [`Sim::shutdown`] to wait for that).
pub struct Sim {
    shared: Arc<Shared>,
    api: Option<ServerHandle>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("api_url", &self.api_url())
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Start the CA, the pods and the API server; everything is listening when this
    /// returns.
    pub async fn start(config: SimConfig) -> anyhow::Result<Sim> {
        if config.pods == 0 {
            bail!("a simulated cluster needs at least one pod");
        }
        if config.port == 0 {
            // Every pod must listen on the same, known port: the site file says which.
            bail!("the pod port must not be 0");
        }
        let pki = Pki::new()?;
        let shared = Arc::new(Shared {
            pki,
            token: random_hex(24),
            state: Mutex::new(State {
                db: Db::new(random_hex(32)),
                recorder: Recorder::default(),
                faults: config.faults.clone(),
                slots: BTreeMap::new(),
                workload: workload::Workload::new(uuid_like()),
                restarts_started: 0,
                workload_reads: 0,
                watch_requests: 0,
                resource_version: 1,
                leases: lease::Leases::default(),
            }),
            servers: Mutex::new(BTreeMap::new()),
            ips: Mutex::new(IpAlloc::random()),
            restart_lock: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
            config,
        });
        for name in shared.pod_names() {
            shared.start_pod(&name, Phase::Running, false).await?;
        }
        match shared.config.start {
            Start::Fresh => {}
            Start::Distributed => shared
                .distribute_proposal()
                .context("starting with a distributed proposal")?,
        }
        let api = kube_api::start(shared.clone()).await?;
        tracing::info!(api = %api.addr(), pods = shared.config.pods, "simulated cluster started");
        Ok(Sim {
            shared,
            api: Some(api),
        })
    }

    /// Write `kubeconfig`, `ca.pem`, `restart.sh` and `site.toml` into `dir`.
    pub fn write_files(&self, dir: &Path) -> anyhow::Result<SimFiles> {
        let c = &self.shared.config;
        files::write(
            dir,
            &files::Params {
                api_url: &self.api_url(),
                ca_pem: self.shared.pki.ca_pem(),
                token: &self.shared.token,
                namespace: &c.namespace,
                selector: &c
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                port: c.port,
                server_name: match &c.pod_certs {
                    PodCerts::IpAndName => None,
                    PodCerts::DnsOnly(name) => Some(name),
                },
            },
        )
    }

    /// A snapshot of what happened so far and of the state now.
    pub fn oracle(&self) -> Oracle {
        self.shared.oracle()
    }

    /// Another client takes the Lease `namespace/name` (as if it had expired and been
    /// taken over): sets its holder, keeping the rest. `false` when there is none.
    pub fn take_lease(&self, namespace: &str, name: &str, holder: &str) -> bool {
        let mut st = self.shared.state();
        let Ok(mut lease) = st.leases.get(namespace, name) else {
            return false;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some(holder.to_string());
        st.leases.replace(namespace, name, lease).is_ok()
    }

    /// Every Lease in `namespace`, as the API server keeps it.
    pub fn leases(&self, namespace: &str) -> Vec<k8s_openapi::api::coordination::v1::Lease> {
        self.shared.state().leases.list(namespace)
    }

    /// Another client holds the Lease `namespace/name` from now on, renewed now, for
    /// `duration_secs` (created if there is none): a run that is going on elsewhere.
    pub fn hold_lease(&self, namespace: &str, name: &str, holder: &str, duration_secs: i32) {
        use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let spec = LeaseSpec {
            holder_identity: Some(holder.to_string()),
            lease_duration_seconds: Some(duration_secs),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..LeaseSpec::default()
        };
        let mut st = self.shared.state();
        match st.leases.get(namespace, name) {
            Ok(mut lease) => {
                lease.spec = Some(spec);
                st.leases
                    .replace(namespace, name, lease)
                    .expect("replace the Lease");
            }
            Err(_) => {
                let mut lease = Lease::default();
                lease.metadata.name = Some(name.to_string());
                lease.spec = Some(spec);
                st.leases
                    .create(namespace, lease)
                    .expect("create the Lease");
            }
        }
    }

    /// Replace the injected faults (from now on).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// `https://127.0.0.1:PORT`, the API server.
    pub fn api_url(&self) -> String {
        let port = self.api.as_ref().map_or(0, |a| a.addr().port());
        format!("https://127.0.0.1:{port}")
    }

    /// The simulator's CA certificate (PEM): pods and API server certificates chain to it.
    pub fn ca_pem(&self) -> String {
        self.shared.pki.ca_pem().to_string()
    }

    /// The bearer token the API server requires.
    pub fn token(&self) -> String {
        self.shared.token.clone()
    }

    /// The port every pod listens on.
    pub fn port(&self) -> u16 {
        self.shared.config.port
    }

    /// `(name, ip)` of the live, ready pods, by name.
    pub fn pod_ips(&self) -> Vec<(String, String)> {
        self.shared.pod_ips()
    }

    /// One rolling restart (the same as `POST /sim/v1/rolling-restart`): returns when
    /// every pod is back Ready, or with the error of an injected failure.
    pub async fn rolling_restart(&self) -> anyhow::Result<()> {
        // Spawned, so that a caller that gives up half-way does not leave a pod down.
        let shared = self.shared.clone();
        tokio::spawn(async move { shared.rolling_restart().await })
            .await
            .context("rolling restart task")?
    }

    /// Stop every server and wait until their listeners are closed.
    pub async fn shutdown(mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        // Wait for a rolling restart in progress to notice, so that it starts no pod.
        let _restart = self.shared.restart_lock.lock().await;
        let servers = std::mem::take(&mut *lock(&self.shared.servers));
        for (_, s) in servers {
            s.stop().await;
        }
        if let Some(api) = self.api.take() {
            api.stop().await;
        }
        tracing::info!("simulated cluster shut down");
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // The servers' handlers hold the shared state: break the cycle explicitly.
        self.shared.stop_all();
        self.api.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_alloc_never_repeats_within_a_long_run() {
        let mut a = IpAlloc::random();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let ip = a.next();
            assert_eq!(ip.octets()[0], 127);
            assert!((16..=250).contains(&ip.octets()[1]));
            assert_ne!(ip.octets()[3], 0);
            assert_ne!(ip.octets()[3], 255);
            assert!(seen.insert(ip));
        }
    }

    #[test]
    fn sim_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Sim>();
    }
}
