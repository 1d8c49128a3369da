//! `[restart] kind = "kubernetes"`: a rollout restart through the Kubernetes API.
//!
//! What `kubectl rollout restart` does: patch the pod template's annotation
//! `kubectl.kubernetes.io/restartedAt` (kube's `Api::restart`), so the workload's
//! controller replaces every pod. Then what `kubectl rollout status` does: watch the
//! workload until its controller has observed the new generation and reports every
//! replica updated and ready (StatefulSet: also the current revision caught up with
//! the update revision; Deployment: every replica updated and available, no old
//! ones left). Bounded by the site's timeout. The Role needs `get`, `patch` and
//! `watch` on that one workload, nothing else; without `watch`, the workload is read
//! every 200 ms instead.

use std::fmt;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{WatchEvent, WatchParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;

use crate::wit::cmk::procedure::restart::RestartError;

/// How often the workload is read while its rollout progresses, when it cannot be
/// watched (a Role without `watch`).
const ROLLOUT_POLL: Duration = Duration::from_millis(200);
/// The longest one watch request stays open before it is made again.
const WATCH_TIMEOUT_SECS: u32 = 290;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    StatefulSet,
    Deployment,
}

/// The workload whose pods are the cluster's, in the site's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
}

impl Workload {
    /// `statefulset/NAME` or `deployment/NAME` (also `sts/`, `deploy/`), as kubectl
    /// writes it.
    pub fn parse(text: &str) -> Result<Workload, String> {
        let (kind, name) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not KIND/NAME, e.g. \"statefulset/sdkms\""))?;
        let kind = match kind.to_ascii_lowercase().as_str() {
            "statefulset" | "statefulsets" | "sts" => WorkloadKind::StatefulSet,
            "deployment" | "deployments" | "deploy" => WorkloadKind::Deployment,
            other => {
                return Err(format!(
                    "{other:?} is not a workload kind this host restarts: statefulset or deployment"
                ));
            }
        };
        if !super::is_object_name(name) {
            return Err(format!("{name:?} is not a valid Kubernetes object name"));
        }
        Ok(Workload {
            kind,
            name: name.to_string(),
        })
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::Deployment => "deployment",
        };
        write!(f, "{kind}/{}", self.name)
    }
}

/// Where a rollout stands, from the workload's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Done,
    /// Still rolling: why, in `kubectl rollout status` words.
    Waiting(String),
}

/// Restarts `workload` and waits for its rollout to complete, by `deadline`.
pub async fn rollout_restart(
    client: &Client,
    namespace: &str,
    workload: &Workload,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), RestartError> {
    match workload.kind {
        WorkloadKind::StatefulSet => {
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
            restart_and_follow(&api, workload, deadline, timeout, statefulset_progress).await
        }
        WorkloadKind::Deployment => {
            let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
            restart_and_follow(&api, workload, deadline, timeout, deployment_progress).await
        }
    }
}

/// Patches the workload, then follows its status until `progress` says done.
async fn restart_and_follow<K>(
    api: &Api<K>,
    workload: &Workload,
    deadline: Instant,
    timeout: Duration,
    progress: fn(&K, i64) -> Progress,
) -> Result<(), RestartError>
where
    K: kube::Resource
        + kube::core::util::Restart
        + Clone
        + DeserializeOwned
        + fmt::Debug
        + Send
        + 'static,
{
    let patched = api
        .restart(&workload.name)
        .await
        .map_err(|e| patch_failed(workload, namespace_of(api), e))?;
    let generation = patched.meta().generation.unwrap_or(0);
    let mut follow = Follow {
        workload,
        last: String::from("no status read yet"),
        version: patched.meta().resource_version.clone(),
        watch: true,
    };
    loop {
        if let Some(version) = follow.version.clone().filter(|_| follow.watch) {
            match tokio::time::timeout_at(
                deadline.into(),
                follow.watch_until_done(api, &version, generation, progress),
            )
            .await
            {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(_) => return Err(follow.timed_out(timeout)),
            }
        }
        // No watch to follow (refused, or a gap in the history): read the workload.
        match tokio::time::timeout_at(deadline.into(), api.get(&workload.name)).await {
            Ok(Ok(object)) => {
                follow.version = object.meta().resource_version.clone();
                if follow.saw(progress(&object, generation)) {
                    return Ok(());
                }
            }
            // A read can fail transiently (API server restart): keep waiting.
            Ok(Err(e)) => follow.last = format!("reading {workload}: {e}"),
            Err(_) => {}
        }
        if Instant::now() + ROLLOUT_POLL > deadline {
            return Err(follow.timed_out(timeout));
        }
        // Also after a watch that ended or failed, so that an API server refusing
        // watches at once is not asked again in a tight loop; the next watch starts
        // from the version read, so no change is missed meanwhile.
        tokio::time::sleep(ROLLOUT_POLL).await;
    }
}

fn namespace_of<K: kube::Resource>(api: &Api<K>) -> &str {
    api.namespace().unwrap_or_default()
}

/// What `kubectl rollout status` keeps while it follows one rollout.
struct Follow<'a> {
    workload: &'a Workload,
    /// The last reason the rollout was not done yet (for the timeout's message).
    last: String,
    /// The resourceVersion to watch from.
    version: Option<String>,
    /// Watching works; after a refusal (a Role without `watch`) the workload is read
    /// every [`ROLLOUT_POLL`] instead.
    watch: bool,
}

impl Follow<'_> {
    /// Whether `now` is the end of the rollout; logs each new reason it is not.
    fn saw(&mut self, now: Progress) -> bool {
        match now {
            Progress::Done => {
                tracing::info!(workload = %self.workload, "rollout complete");
                true
            }
            Progress::Waiting(why) => {
                if why != self.last {
                    tracing::info!(workload = %self.workload, "{why}");
                }
                self.last = why;
                false
            }
        }
    }

    /// Watches the one workload from `version` until its rollout is done (true), or
    /// the watch ends or fails (false: read the workload, then watch again).
    async fn watch_until_done<K>(
        &mut self,
        api: &Api<K>,
        version: &str,
        generation: i64,
        progress: fn(&K, i64) -> Progress,
    ) -> bool
    where
        K: kube::Resource + Clone + DeserializeOwned + fmt::Debug + Send + 'static,
    {
        let params = WatchParams::default()
            .fields(&format!("metadata.name={}", self.workload.name))
            .timeout(WATCH_TIMEOUT_SECS);
        let stream = match api.watch(&params, version).await {
            Ok(stream) => stream,
            Err(e) => {
                if matches!(&e, kube::Error::Api(s) if s.code == 403) {
                    tracing::debug!(workload = %self.workload, "watch refused; reading the workload instead");
                    self.watch = false;
                }
                self.last = format!("watching {}: {e}", self.workload);
                return false;
            }
        };
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Added(object) | WatchEvent::Modified(object)) => {
                    self.version = object.meta().resource_version.clone();
                    if self.saw(progress(&object, generation)) {
                        return true;
                    }
                }
                Ok(WatchEvent::Bookmark(mark)) => {
                    self.version = Some(mark.metadata.resource_version);
                }
                Ok(WatchEvent::Deleted(_)) => {
                    self.last = format!("{} was deleted", self.workload);
                }
                // 410 Gone: the version is too old to watch from; read afresh.
                Ok(WatchEvent::Error(e)) => {
                    self.last = format!("watching {}: {}", self.workload, e.message);
                    return false;
                }
                Err(e) => {
                    self.last = format!("watching {}: {e}", self.workload);
                    return false;
                }
            }
        }
        false
    }

    fn timed_out(&self, timeout: Duration) -> RestartError {
        RestartError::Timeout(format!(
            "the rollout of {} did not complete within {}s ({})",
            self.workload,
            timeout.as_secs(),
            self.last
        ))
    }
}

fn patch_failed(workload: &Workload, namespace: &str, e: kube::Error) -> RestartError {
    RestartError::Failed(format!(
        "cannot restart {workload} in namespace {namespace}: {e}"
    ))
}

/// `kubectl rollout status` for a StatefulSet (RollingUpdate).
pub fn statefulset_progress(sts: &StatefulSet, generation: i64) -> Progress {
    let desired = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &sts.status else {
        return Progress::Waiting("waiting for the statefulset's status".into());
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Waiting("waiting for the statefulset spec update to be observed".into());
    }
    let ready = status.ready_replicas.unwrap_or(0);
    if ready < desired {
        return Progress::Waiting(format!("{ready} of {desired} pods ready"));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    if updated < desired {
        return Progress::Waiting(format!("{updated} of {desired} pods updated"));
    }
    if status.current_revision != status.update_revision {
        return Progress::Waiting(format!(
            "waiting for the rolling update to finish: revision {} -> {}",
            status.current_revision.as_deref().unwrap_or("?"),
            status.update_revision.as_deref().unwrap_or("?")
        ));
    }
    Progress::Done
}

/// `kubectl rollout status` for a Deployment.
pub fn deployment_progress(deploy: &Deployment, generation: i64) -> Progress {
    let desired = deploy.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &deploy.status else {
        return Progress::Waiting("waiting for the deployment's status".into());
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Waiting("waiting for the deployment spec update to be observed".into());
    }
    let updated = status.updated_replicas.unwrap_or(0);
    if updated < desired {
        return Progress::Waiting(format!("{updated} of {desired} new replicas updated"));
    }
    let replicas = status.replicas.unwrap_or(0);
    if replicas > updated {
        return Progress::Waiting(format!(
            "{} old replicas pending termination",
            replicas - updated
        ));
    }
    let available = status.available_replicas.unwrap_or(0);
    if available < updated {
        return Progress::Waiting(format!(
            "{available} of {updated} updated replicas available"
        ));
    }
    Progress::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStatus, StatefulSetSpec, StatefulSetStatus,
    };

    #[test]
    fn parses_kubectl_style_names() {
        assert_eq!(
            Workload::parse("statefulset/sdkms").unwrap(),
            Workload {
                kind: WorkloadKind::StatefulSet,
                name: "sdkms".into()
            }
        );
        assert_eq!(
            Workload::parse("deploy/dsm").unwrap().kind,
            WorkloadKind::Deployment
        );
        assert_eq!(
            Workload::parse("sts/sdkms").unwrap().to_string(),
            "statefulset/sdkms"
        );
        for bad in [
            "sdkms",
            "daemonset/x",
            "statefulset/",
            "statefulset/Bad_Name",
        ] {
            assert!(Workload::parse(bad).is_err(), "{bad}");
        }
    }

    fn sts(observed: i64, ready: i32, updated: i32, cur: &str, upd: &str) -> StatefulSet {
        StatefulSet {
            spec: Some(StatefulSetSpec {
                replicas: Some(3),
                ..StatefulSetSpec::default()
            }),
            status: Some(StatefulSetStatus {
                observed_generation: Some(observed),
                ready_replicas: Some(ready),
                updated_replicas: Some(updated),
                current_revision: Some(cur.into()),
                update_revision: Some(upd.into()),
                replicas: 3,
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        }
    }

    #[test]
    fn statefulset_rollout_is_done_only_when_every_condition_holds() {
        assert_eq!(
            statefulset_progress(&sts(2, 3, 3, "r2", "r2"), 2),
            Progress::Done
        );
        for (s, why) in [
            (sts(1, 3, 3, "r1", "r1"), "observed"),
            (sts(2, 2, 3, "r2", "r2"), "2 of 3 pods ready"),
            (sts(2, 3, 1, "r1", "r2"), "1 of 3 pods updated"),
            (sts(2, 3, 3, "r1", "r2"), "revision r1 -> r2"),
        ] {
            match statefulset_progress(&s, 2) {
                Progress::Waiting(w) => assert!(w.contains(why), "{w}"),
                Progress::Done => panic!("done too early: {why}"),
            }
        }
    }

    fn deploy(observed: i64, replicas: i32, updated: i32, available: i32) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(3),
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                replicas: Some(replicas),
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        }
    }

    #[test]
    fn deployment_rollout_is_done_only_when_every_condition_holds() {
        assert_eq!(deployment_progress(&deploy(2, 3, 3, 3), 2), Progress::Done);
        for (d, why) in [
            (deploy(1, 3, 3, 3), "observed"),
            (deploy(2, 3, 1, 3), "1 of 3 new replicas"),
            (deploy(2, 4, 3, 3), "1 old replicas"),
            (deploy(2, 3, 3, 2), "2 of 3 updated replicas available"),
        ] {
            match deployment_progress(&d, 2) {
                Progress::Waiting(w) => assert!(w.contains(why), "{w}"),
                Progress::Done => panic!("done too early: {why}"),
            }
        }
    }
}
