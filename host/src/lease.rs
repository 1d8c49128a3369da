//! One run per cluster: a `coordination.k8s.io/v1` Lease in the cluster's namespace,
//! taken before the procedure starts, renewed in the background while it runs, and
//! released at the end.
//!
//! The holder identity is `<hostname>/<pid>/<run id>`. A Lease held by someone else
//! and renewed within its duration stops the run at once (exit 1), naming the holder
//! and since when; an expired one (its holder died without releasing it) is taken
//! over, with a warning. Every write is a replace with the `resourceVersion` that
//! was read, so two runs racing for the Lease cannot both win.
//!
//! The Lease fences the run: once it could not be renewed within its duration
//! (another run may then take it over), the [`Fence`] refuses every further mutating
//! call at the gate, and the run stops, saying why.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::frame::{SiteError, SiteFile, is_dns_label};
use crate::stop::Stop;

/// `[lease]`: the Lease that makes runs against one cluster exclusive.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    /// A holder that has not renewed for this long is presumed dead.
    pub duration: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            name: "cmk-host-rotation".into(),
            duration: Duration::from_secs(60),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLease {
    name: Option<String>,
    duration_secs: Option<u64>,
}

impl RawLease {
    pub fn validate(self, file: &SiteFile<'_>) -> Result<LeaseConfig, SiteError> {
        let mut config = LeaseConfig::default();
        if let Some(name) = self.name {
            if !is_dns_label(&name) {
                return Err(file.error(
                    "[lease] name",
                    format!("{name:?} is not a valid name (lowercase letters, digits and '-')"),
                ));
            }
            config.name = name;
        }
        if let Some(secs) = self.duration_secs {
            if !(1..=3600).contains(&secs) {
                return Err(file.error("[lease] duration_secs", "must be 1..=3600"));
            }
            config.duration = Duration::from_secs(secs);
        }
        Ok(config)
    }
}

/// Why the Lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "another run holds the cluster: Lease {namespace}/{name} is held by {holder} since {since} \
         (last renewed {renewed}); wait for it to finish, or, if its host died, for the Lease to \
         expire ({duration}s after its last renewal)"
    )]
    Busy {
        namespace: String,
        name: String,
        holder: String,
        since: String,
        renewed: String,
        duration: i64,
    },
    #[error("cannot use Lease {namespace}/{name}: {message}")]
    Api {
        namespace: String,
        name: String,
        message: String,
    },
}

/// Until when this run may still change the cluster under its Lease. Empty (always
/// open) until a Lease is taken: plan mode holds none and changes nothing.
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<Mutex<Option<Held>>>);

#[derive(Debug)]
struct Held {
    lease: String,
    duration: Duration,
    /// When the last successful write of the Lease was started: the Lease is ours
    /// until `duration` after it, and no longer.
    renewed: Instant,
    last_error: Option<String>,
}

impl Fence {
    fn arm(&self, lease: String, duration: Duration, at: Instant) {
        *self.0.lock().expect("fence lock") = Some(Held {
            lease,
            duration,
            renewed: at,
            last_error: None,
        });
    }

    fn renewed(&self, at: Instant) {
        if let Some(held) = self.0.lock().expect("fence lock").as_mut() {
            held.renewed = at;
            held.last_error = None;
        }
    }

    fn failed(&self, error: String) {
        if let Some(held) = self.0.lock().expect("fence lock").as_mut() {
            held.last_error = Some(error);
        }
    }

    /// `Err` (why) once the Lease was not renewed within its duration.
    pub fn check(&self) -> Result<(), String> {
        let held = self.0.lock().expect("fence lock");
        let Some(held) = held.as_ref() else {
            return Ok(());
        };
        let age = held.renewed.elapsed();
        if age < held.duration {
            return Ok(());
        }
        Err(format!(
            "the Lease {} could not be renewed within its duration of {}s (last renewed {:.1}s ago{}); \
             another run may hold the cluster now, so this run makes no further change",
            held.lease,
            held.duration.as_secs(),
            age.as_secs_f64(),
            held.last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ))
    }
}

/// How long giving the Lease up may take before the run ends without it.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// A Lease this run holds. Call [`HeldLease::release`] at the end.
pub struct HeldLease {
    api: Api<Lease>,
    name: String,
    identity: String,
    stop_renewing: oneshot::Sender<()>,
    renewer: JoinHandle<()>,
}

/// `<hostname>/<pid>/<run id>`.
pub fn identity(run_id: &str) -> String {
    format!("{}/{}/{run_id}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// The pid of `holder` (an [`identity`]) when it names a process of this host that
/// no longer exists: a run of this host that died without releasing the Lease, whose
/// Lease need not be waited out.
fn dead_holder_on_this_host(holder: &str) -> Option<u32> {
    let mut parts = holder.splitn(3, '/');
    let (host, pid) = (parts.next()?, parts.next()?);
    parts.next()?;
    let pid: u32 = pid.parse().ok()?;
    if host != hostname() || host == "unknown-host" || pid == std::process::id() || pid == 0 {
        return None;
    }
    let pid_t = libc::pid_t::try_from(pid).ok()?;
    // Signal 0 checks existence only; ESRCH means no such process.
    // SAFETY: kill(2) with signal 0 sends nothing and touches no memory of ours.
    let gone = unsafe { libc::kill(pid_t, 0) } == -1
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    gone.then_some(pid)
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn show(t: Option<&MicroTime>) -> String {
    t.map_or("never".into(), |t| t.0.to_string())
}

/// Is `lease` held by a live holder (renewed within its duration)?
fn live_holder(lease: &Lease, now: Timestamp) -> Option<&str> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?;
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0)) * 1000;
    let age = now.as_millisecond() - renewed.0.as_millisecond();
    (age < duration).then_some(holder)
}

impl HeldLease {
    /// Takes the Lease `config.name` in `namespace` for `identity`, and renews it
    /// every third of its duration until released. If a renewal finds the Lease
    /// taken by someone else, `stop` is requested: the run stops changing anything.
    pub async fn acquire(
        client: kube::Client,
        namespace: &str,
        config: &LeaseConfig,
        identity: &str,
        stop: Stop,
        fence: Fence,
    ) -> Result<HeldLease, LeaseError> {
        let api: Api<Lease> = Api::namespaced(client, namespace);
        let name = config.name.clone();
        let api_err = |e: kube::Error| LeaseError::Api {
            namespace: namespace.to_string(),
            name: name.clone(),
            message: crate::chain::error_chain(&e),
        };
        let busy = |lease: &Lease| {
            let spec = lease.spec.clone().unwrap_or_default();
            LeaseError::Busy {
                namespace: namespace.to_string(),
                name: name.clone(),
                holder: spec.holder_identity.unwrap_or_default(),
                since: show(spec.acquire_time.as_ref()),
                renewed: show(spec.renew_time.as_ref()),
                duration: i64::from(spec.lease_duration_seconds.unwrap_or(0)),
            }
        };
        let duration = i32::try_from(config.duration.as_secs()).unwrap_or(i32::MAX);
        let attempt = Instant::now();
        let spec = LeaseSpec {
            holder_identity: Some(identity.to_string()),
            lease_duration_seconds: Some(duration),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            ..LeaseSpec::default()
        };
        match api.get_opt(&name).await.map_err(api_err)? {
            None => {
                let mut lease = Lease::default();
                lease.metadata.name = Some(name.clone());
                lease.spec = Some(LeaseSpec {
                    lease_transitions: Some(0),
                    ..spec
                });
                match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        // Another run created it between our read and our create.
                        let now_held = api.get(&name).await.map_err(api_err)?;
                        return Err(busy(&now_held));
                    }
                    Err(e) => return Err(api_err(e)),
                }
            }
            Some(current) => {
                let old = current.spec.clone().unwrap_or_default();
                if let Some(holder) = live_holder(&current, Timestamp::now()) {
                    let Some(pid) = dead_holder_on_this_host(holder) else {
                        return Err(busy(&current));
                    };
                    tracing::warn!(
                        lease = %format!("{namespace}/{name}"),
                        holder,
                        "taking over the Lease at once: its holder was process {pid} of this host, which no longer exists"
                    );
                } else if let Some(holder) =
                    old.holder_identity.as_deref().filter(|h| !h.is_empty())
                {
                    tracing::warn!(
                        lease = %format!("{namespace}/{name}"),
                        holder,
                        since = %show(old.acquire_time.as_ref()),
                        renewed = %show(old.renew_time.as_ref()),
                        "taking over an expired Lease: its holder stopped renewing it (did it die?)"
                    );
                }
                let mut lease = current.clone();
                lease.spec = Some(LeaseSpec {
                    lease_transitions: Some(old.lease_transitions.unwrap_or(0) + 1),
                    ..spec
                });
                match api.replace(&name, &PostParams::default(), &lease).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        let now_held = api.get(&name).await.map_err(api_err)?;
                        return Err(busy(&now_held));
                    }
                    Err(e) => return Err(api_err(e)),
                }
            }
        }
        tracing::info!(lease = %format!("{namespace}/{name}"), holder = identity, "Lease taken");
        fence.arm(format!("{namespace}/{name}"), config.duration, attempt);
        let (stop_renewing, stopped) = oneshot::channel();
        let renewer = tokio::spawn(renew(
            api.clone(),
            name.clone(),
            identity.to_string(),
            config.duration / 3,
            stopped,
            stop,
            fence,
        ));
        Ok(HeldLease {
            api,
            name,
            identity: identity.to_string(),
            stop_renewing,
            renewer,
        })
    }

    /// Stops renewing and gives the Lease up (clears the holder), if still ours.
    pub async fn release(self) {
        let _ = self.stop_renewing.send(());
        // A renewal the API server keeps waiting is of no use any more.
        self.renewer.abort();
        let _ = self.renewer.await;
        let result = tokio::time::timeout(RELEASE_TIMEOUT, async {
            let mut lease = self.api.get(&self.name).await?;
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.renew_time = None;
            spec.acquire_time = None;
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await?;
            Ok::<bool, kube::Error>(true)
        })
        .await
        .unwrap_or_else(|_| Err(kube::Error::Service("no answer in time".into())));
        match result {
            Ok(true) => tracing::info!(lease = %self.name, "Lease released"),
            Ok(false) => tracing::warn!(lease = %self.name, "the Lease was no longer ours"),
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "cannot release the Lease; it expires by itself")
            }
        }
    }
}

async fn renew(
    api: Api<Lease>,
    name: String,
    identity: String,
    every: Duration,
    mut stopped: oneshot::Receiver<()>,
    stop: Stop,
    fence: Fence,
) {
    let every = every.max(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(every) => {}
        }
        let attempt = Instant::now();
        // Bounded: a renewal still waiting after the Lease's duration has failed.
        let result = tokio::time::timeout(every * 3, async {
            let mut lease = api.get(&name).await?;
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(identity.as_str()) {
                return Ok(Some(spec.holder_identity.clone().unwrap_or_default()));
            }
            spec.renew_time = Some(now());
            api.replace(&name, &PostParams::default(), &lease).await?;
            Ok::<_, kube::Error>(None)
        })
        .await
        .unwrap_or_else(|_| Err(kube::Error::Service("no answer in time".into())));
        match result {
            Ok(None) => {
                fence.renewed(attempt);
                tracing::trace!(lease = %name, "Lease renewed");
            }
            Ok(Some(holder)) => {
                tracing::error!(lease = %name, holder = %holder, "lost the Lease: stopping before the next change");
                stop.request(format!("lost the Lease {name} to {holder:?}"));
                return;
            }
            // A failed renewal is retried; the Lease lasts three renewal periods.
            // Past its duration the fence refuses every change, and the run stops.
            Err(e) => {
                tracing::warn!(lease = %name, error = %e, "cannot renew the Lease");
                fence.failed(e.to_string());
                if let Err(why) = fence.check() {
                    tracing::error!(lease = %name, "{why}");
                    stop.request(why);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_gone_process_of_this_host_is_a_dead_holder() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let host = hostname();
        assert_eq!(
            dead_holder_on_this_host(&format!("{host}/{gone}/run")),
            Some(gone)
        );
        let me = std::process::id();
        assert_eq!(dead_holder_on_this_host(&format!("{host}/{me}/run")), None);
        assert_eq!(
            dead_holder_on_this_host(&format!("{host}/1/run")),
            None,
            "init lives"
        );
        assert_eq!(
            dead_holder_on_this_host(&format!("other-host-{host}/{gone}/run")),
            None,
            "another host's process is not ours to judge"
        );
        assert_eq!(dead_holder_on_this_host("garbage"), None);
    }

    fn lease(holder: Option<&str>, renewed_secs_ago: i64, duration: i32) -> Lease {
        let t = Timestamp::from_second(1_000_000 - renewed_secs_ago).unwrap();
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: Some(MicroTime(t)),
                lease_duration_seconds: Some(duration),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_holder_is_live_only_within_the_duration() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        assert_eq!(live_holder(&lease(Some("a"), 10, 60), now), Some("a"));
        assert_eq!(live_holder(&lease(Some("a"), 61, 60), now), None);
        assert_eq!(live_holder(&lease(None, 1, 60), now), None);
        assert_eq!(live_holder(&lease(Some(""), 1, 60), now), None);
    }

    #[test]
    fn the_fence_closes_once_the_lease_was_not_renewed_within_its_duration() {
        let fence = Fence::default();
        assert!(fence.check().is_ok(), "no Lease: open");
        let long_ago = Instant::now() - Duration::from_secs(5);
        fence.arm("ns/l".into(), Duration::from_secs(60), long_ago);
        assert!(fence.check().is_ok());
        fence.arm("ns/l".into(), Duration::from_secs(2), long_ago);
        fence.failed("503".into());
        let why = fence.check().unwrap_err();
        assert!(
            why.starts_with("the Lease ns/l could not be renewed within its duration of 2s"),
            "{why}"
        );
        assert!(why.contains(": 503)"), "{why}");
        fence.renewed(Instant::now());
        assert!(fence.check().is_ok());
    }

    #[test]
    fn identity_names_host_pid_and_run() {
        let id = identity("abc");
        assert!(
            id.ends_with(&format!("/{}/abc", std::process::id())),
            "{id}"
        );
    }
}
