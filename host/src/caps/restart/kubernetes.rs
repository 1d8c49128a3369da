//! `[restart] kind = "kubernetes"`: a rollout restart through the Kubernetes API.
//!
//! What `kubectl rollout restart` does: patch the pod template's annotation
//! `kubectl.kubernetes.io/restartedAt` (kube's `Api::restart`), so the workload's
//! controller replaces every pod. Then what `kubectl rollout status` does: read the
//! workload until its controller has observed the new generation and reports every
//! replica updated and ready (StatefulSet: also the current revision caught up with
//! the update revision; Deployment: every replica updated and available, no old
//! ones left). Bounded by the site's timeout. The Role needs `get` and `patch` on
//! that one workload, nothing else.

use std::fmt;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::{Api, Client};

use crate::wit::cmk::procedure::restart::RestartError;

/// How often the workload is read while its rollout progresses.
const ROLLOUT_POLL: Duration = Duration::from_millis(200);

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
            let patched = api
                .restart(&workload.name)
                .await
                .map_err(|e| patch_failed(workload, namespace, e))?;
            let generation = patched.metadata.generation.unwrap_or(0);
            wait(workload, deadline, timeout, || async {
                let sts = api.get(&workload.name).await?;
                Ok(statefulset_progress(&sts, generation))
            })
            .await
        }
        WorkloadKind::Deployment => {
            let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
            let patched = api
                .restart(&workload.name)
                .await
                .map_err(|e| patch_failed(workload, namespace, e))?;
            let generation = patched.metadata.generation.unwrap_or(0);
            wait(workload, deadline, timeout, || async {
                let deploy = api.get(&workload.name).await?;
                Ok(deployment_progress(&deploy, generation))
            })
            .await
        }
    }
}

fn patch_failed(workload: &Workload, namespace: &str, e: kube::Error) -> RestartError {
    RestartError::Failed(format!(
        "cannot restart {workload} in namespace {namespace}: {e}"
    ))
}

/// Polls `read` until the rollout is done or the deadline passes.
async fn wait<F, Fut>(
    workload: &Workload,
    deadline: Instant,
    timeout: Duration,
    read: F,
) -> Result<(), RestartError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Progress, kube::Error>>,
{
    let mut last = String::from("no status read yet");
    loop {
        match tokio::time::timeout_at(deadline.into(), read()).await {
            Ok(Ok(Progress::Done)) => {
                tracing::info!(%workload, "rollout complete");
                return Ok(());
            }
            Ok(Ok(Progress::Waiting(why))) => {
                if why != last {
                    tracing::info!(%workload, "{why}");
                }
                last = why;
            }
            // A read can fail transiently (API server restart): keep waiting.
            Ok(Err(e)) => last = format!("reading {workload}: {e}"),
            Err(_) => {}
        }
        if Instant::now() + ROLLOUT_POLL > deadline {
            return Err(RestartError::Timeout(format!(
                "the rollout of {workload} did not complete within {}s ({last})",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(ROLLOUT_POLL).await;
    }
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
