//! The workload `sdkms` (a StatefulSet, or a Deployment: `SimConfig::workload`) that owns the pods, so that a rolling restart can also be
//! requested the Kubernetes way (`kubectl rollout restart`, kube's `Api::restart`):
//! a patch of the pod template's annotations bumps the generation and the update
//! revision, the simulator replaces the pods one by one (the same rolling restart as
//! the control endpoint), and the status reports the rollout's progress as a real
//! StatefulSet controller does (`updatedReplicas`, `readyReplicas`, revisions).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, StatefulSet, StatefulSetSpec, StatefulSetStatus,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use serde_json::Value;

/// The workload's name (and the pods' name prefix).
pub(crate) const NAME: &str = "sdkms";

#[derive(Debug, Clone)]
pub(crate) struct Workload {
    pub generation: i64,
    pub uid: String,
    /// The pod template's annotations (where `restartedAt` goes).
    pub annotations: BTreeMap<String, String>,
    /// The revision of the pods before the rollout in progress, if any.
    pub current_revision: String,
    /// The revision new pods are created with.
    pub update_revision: String,
    /// When the workload was created (its age in `kubectl get`).
    pub created: k8s_openapi::jiff::Timestamp,
}

/// The counts the status needs, from the pod slots.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub replicas: usize,
    pub ready: usize,
    pub current: usize,
    pub updated: usize,
}

impl Workload {
    pub fn new(uid: String) -> Self {
        Workload {
            generation: 1,
            uid,
            annotations: BTreeMap::new(),
            current_revision: revision(1),
            update_revision: revision(1),
            created: crate::now(),
        }
    }

    /// Apply a JSON merge / strategic merge patch (an object) or a JSON patch (an
    /// array) to the pod template's annotations. Other fields are ignored (the
    /// simulator's template is fixed). Returns whether the template changed, in
    /// which case a rollout is due.
    pub fn apply_patch(&mut self, patch: &Value) -> Result<bool, String> {
        let before = self.annotations.clone();
        match patch {
            Value::Object(_) => {
                if let Some(ann) = patch.pointer("/spec/template/metadata/annotations") {
                    let Value::Object(ann) = ann else {
                        return Err("spec.template.metadata.annotations must be an object".into());
                    };
                    for (k, v) in ann {
                        match v {
                            Value::Null => {
                                self.annotations.remove(k);
                            }
                            Value::String(s) => {
                                self.annotations.insert(k.clone(), s.clone());
                            }
                            _ => return Err(format!("annotation {k} must be a string")),
                        }
                    }
                }
            }
            Value::Array(ops) => {
                for op in ops {
                    self.apply_json_patch_op(op)?;
                }
            }
            _ => return Err("a patch must be a JSON object or array".into()),
        }
        if self.annotations == before {
            return Ok(false);
        }
        self.generation += 1;
        self.update_revision = revision(self.generation);
        Ok(true)
    }

    fn apply_json_patch_op(&mut self, op: &Value) -> Result<(), String> {
        const PREFIX: &str = "/spec/template/metadata/annotations";
        let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
        let Some(rest) = path.strip_prefix(PREFIX) else {
            // Only the annotations are patchable; "test" and others elsewhere pass.
            return Ok(());
        };
        let value = op.get("value");
        match (kind, rest) {
            ("add" | "replace", "") => {
                let Some(Value::Object(map)) = value else {
                    return Err("annotations must be an object".into());
                };
                self.annotations.clear();
                for (k, v) in map {
                    let s = v
                        .as_str()
                        .ok_or(format!("annotation {k} must be a string"))?;
                    self.annotations.insert(k.clone(), s.to_string());
                }
            }
            ("add" | "replace", key) => {
                // JSON pointer escaping: `~1` is `/`, `~0` is `~`.
                let key = key[1..].replace("~1", "/").replace("~0", "~");
                let s = value
                    .and_then(Value::as_str)
                    .ok_or(format!("annotation {key} must be a string"))?;
                self.annotations.insert(key, s.to_string());
            }
            ("remove", "") => self.annotations.clear(),
            ("remove", key) => {
                let key = key[1..].replace("~1", "/").replace("~0", "~");
                self.annotations.remove(&key);
            }
            _ => return Err(format!("unsupported JSON patch op {kind:?} on {path}")),
        }
        Ok(())
    }

    /// Called when a rolling restart completed: every pod runs the update revision.
    pub fn rollout_done(&mut self) {
        self.current_revision = self.update_revision.clone();
    }

    pub fn to_object(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        pods: usize,
        counts: Counts,
        resource_version: u64,
    ) -> StatefulSet {
        let n = |x: usize| i32::try_from(x).unwrap_or(i32::MAX);
        StatefulSet {
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                namespace: Some(namespace.into()),
                labels: Some(labels.clone()),
                uid: Some(self.uid.clone()),
                generation: Some(self.generation),
                resource_version: Some(resource_version.to_string()),
                creation_timestamp: Some(Time(self.created)),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                // What `kubectl rollout status` requires of a StatefulSet.
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: None,
                }),
                replicas: Some(n(pods)),
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..LabelSelector::default()
                },
                service_name: Some(NAME.into()),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels.clone()),
                        annotations: (!self.annotations.is_empty())
                            .then(|| self.annotations.clone()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec::default()),
                },
                ..StatefulSetSpec::default()
            }),
            status: Some(StatefulSetStatus {
                replicas: n(counts.replicas),
                ready_replicas: Some(n(counts.ready)),
                available_replicas: Some(n(counts.ready)),
                current_replicas: Some(n(counts.current)),
                updated_replicas: Some(n(counts.updated)),
                observed_generation: Some(self.generation),
                current_revision: Some(self.current_revision.clone()),
                update_revision: Some(self.update_revision.clone()),
                ..StatefulSetStatus::default()
            }),
        }
    }
}

impl Workload {
    /// The same workload as a Deployment: the status a Deployment controller reports
    /// (`updatedReplicas`, `readyReplicas`, `availableReplicas`; no revisions).
    pub fn to_deployment(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        pods: usize,
        counts: Counts,
        resource_version: u64,
    ) -> Deployment {
        let n = |x: usize| i32::try_from(x).unwrap_or(i32::MAX);
        let sts = self.to_object(namespace, labels, pods, counts, resource_version);
        let spec = sts.spec.unwrap_or_default();
        Deployment {
            metadata: sts.metadata,
            spec: Some(DeploymentSpec {
                replicas: spec.replicas,
                selector: spec.selector,
                template: spec.template,
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus {
                replicas: Some(n(counts.replicas)),
                updated_replicas: Some(n(counts.updated)),
                ready_replicas: Some(n(counts.ready)),
                available_replicas: Some(n(counts.ready)),
                unavailable_replicas: Some(n(pods.saturating_sub(counts.ready))),
                observed_generation: Some(self.generation),
                ..DeploymentStatus::default()
            }),
        }
    }
}

fn revision(generation: i64) -> String {
    format!("{NAME}-rev{generation}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn restart_patch_bumps_generation_and_revision() {
        let mut w = Workload::new("u".into());
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}});
        assert!(w.apply_patch(&patch).unwrap());
        assert_eq!(w.generation, 2);
        assert_ne!(w.current_revision, w.update_revision);
        // The same patch again changes nothing: no rollout.
        assert!(!w.apply_patch(&patch).unwrap());
        assert_eq!(w.generation, 2);
        w.rollout_done();
        assert_eq!(w.current_revision, w.update_revision);
    }

    #[test]
    fn json_patch_and_removal() {
        let mut w = Workload::new("u".into());
        let ops = json!([{"op": "add",
            "path": "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt",
            "value": "now"}]);
        assert!(w.apply_patch(&ops).unwrap());
        assert_eq!(w.annotations["kubectl.kubernetes.io/restartedAt"], "now");
        let remove = json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": null}}}}});
        assert!(w.apply_patch(&remove).unwrap());
        assert!(w.annotations.is_empty());
        assert_eq!(w.generation, 3);
    }

    #[test]
    fn other_fields_are_ignored_and_garbage_refused() {
        let mut w = Workload::new("u".into());
        assert!(
            !w.apply_patch(&json!({"metadata": {"labels": {"a": "b"}}}))
                .unwrap()
        );
        assert!(w.apply_patch(&json!("nope")).is_err());
        assert!(
            w.apply_patch(&json!({"spec": {"template": {"metadata": {"annotations": 1}}}}))
                .is_err()
        );
    }
}
