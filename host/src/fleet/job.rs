//! `cmk-host fleet job`: the manifests of a Kubernetes Indexed Job whose pods each
//! run one shard of a fleet (`cmk-host fleet --shard $(JOB_COMPLETION_INDEX)/N`).
//!
//! Each site file travels in a Secret of its own together with the files it names
//! (kubeconfig, CA, signer keys, hooks), its paths rewritten to where the Secret is
//! mounted; the journal and the audit trail go to one state volume shared by the
//! shards. Built from `k8s-openapi` types, printed as one JSON `List` that
//! `kubectl apply -f -` accepts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, Secret,
    SecretVolumeSource, SecurityContext, ServiceAccount, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::caps::restart::{Mechanism, WorkloadKind};
use crate::launch::Failure;
use crate::site::Site;

/// What the Job is made of (from `cli`).
#[derive(Debug, Clone)]
pub struct JobOptions {
    pub image: String,
    pub shards: usize,
    /// The Job's name, and the prefix of everything it creates.
    pub name: String,
    /// Where the Job, its Secrets and its state volume live.
    pub namespace: String,
    /// The signed component: the pods read it from the ConfigMap `component_configmap`
    /// under its file name.
    pub component: PathBuf,
    pub component_configmap: String,
    /// Where the pods see the component and the sites (`/etc/cmk`).
    pub mount_root: PathBuf,
    /// Where the pods keep journals, audit trails and the precompile cache.
    pub state_dir: PathBuf,
    /// The PersistentVolumeClaim mounted there; the same for a prepare and an
    /// activate Job, so that the second finds the journals of the first.
    pub state_claim: String,
    /// Retries of one index (`backoffLimitPerIndex`): a rerun resumes from the journal.
    pub backoff_per_index: i32,
    /// `fleet` flags passed on to every shard (`--max-parallel 8`, `--yes`, ...).
    pub fleet_args: Vec<String>,
    pub sites: Vec<PathBuf>,
}

/// The label every object carries.
const APP: &str = "cmk-host-fleet";

/// The manifests, as one `v1` `List`.
pub fn manifests(options: &JobOptions) -> Result<serde_json::Value, Failure> {
    if options.shards == 0 {
        return Err(Failure::Usage(
            "fleet job: --shards must be at least 1".into(),
        ));
    }
    let mut sites = Vec::new();
    for path in &options.sites {
        sites.push(Site::load(path)?);
    }
    if sites.is_empty() {
        return Err(Failure::Usage("fleet job: no site file given".into()));
    }
    let mut items: Vec<serde_json::Value> = Vec::new();
    let account = format!("{}-runner", options.name);
    let in_cluster = sites.iter().any(|s| s.cluster.kubeconfig.is_none());
    items.push(value(&ServiceAccount {
        metadata: meta(&account, &options.namespace),
        // Only a site without a kubeconfig talks to this cluster's API server.
        automount_service_account_token: Some(in_cluster),
        ..Default::default()
    })?);
    let mut site_args = Vec::new();
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        let dir = options.mount_root.join("sites").join(i.to_string());
        let secret = format!("{}-site-{i}", options.name);
        items.push(value(&site_secret(site, &secret, &dir, options)?)?);
        site_args.push(dir.join("site.toml").display().to_string());
        volumes.push(Volume {
            name: format!("site-{i}"),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: format!("site-{i}"),
            mount_path: dir.display().to_string(),
            read_only: Some(true),
            ..Default::default()
        });
        if site.cluster.kubeconfig.is_none() {
            let (role, binding) = in_cluster_rbac(site, i, &account, options);
            items.push(value(&role)?);
            items.push(value(&binding)?);
        }
    }
    let claim = options.state_claim.clone();
    items.push(value(&state_claim(&claim, &options.namespace))?);
    items.push(value(&job(
        options, &sites, &account, &claim, site_args, mounts, volumes,
    )?)?);
    Ok(serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items }))
}

fn value(object: &impl Serialize) -> Result<serde_json::Value, Failure> {
    serde_json::to_value(object).map_err(|e| Failure::Failed(format!("cannot render: {e}")))
}

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/name".to_string(),
            APP.to_string(),
        )])),
        ..Default::default()
    }
}

fn read(site: &Site, what: &str, path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| {
        Failure::InvalidSite(format!(
            "site file {}: {what}: cannot read {}: {e}",
            site.path.display(),
            path.display()
        ))
    })
}

/// One site's Secret: `site.toml` with its paths pointing into `dir`, and every
/// file it names.
fn site_secret(
    site: &Site,
    name: &str,
    dir: &Path,
    options: &JobOptions,
) -> Result<Secret, Failure> {
    let text = std::fs::read_to_string(&site.path).map_err(|e| {
        Failure::InvalidSite(format!(
            "site file {}: cannot read: {e}",
            site.path.display()
        ))
    })?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|e| Failure::InvalidSite(format!("site file {}: {e}", site.path.display())))?;
    let mut data = BTreeMap::new();
    let at = |file: &str| toml::Value::String(dir.join(file).display().to_string());
    if let Some(kubeconfig) = &site.cluster.kubeconfig {
        data.insert(
            "kubeconfig".to_string(),
            read(site, "[cluster] kubeconfig", kubeconfig)?,
        );
        set(&mut table, &["cluster", "kubeconfig"], at("kubeconfig"));
    }
    if let crate::caps::http::tls::Tls::Ca { pem, .. } = &site.tls {
        data.insert("ca.pem".to_string(), pem.clone());
        set(&mut table, &["tls", "ca"], at("ca.pem"));
    }
    for (j, signer) in site.trust.signers.iter().enumerate() {
        let file = format!("signer-{j}.pub");
        data.insert(
            file.clone(),
            read(site, "[[trust.signer]] key", &signer.key_file)?,
        );
        if let Some(entry) = table
            .get_mut("trust")
            .and_then(|t| t.get_mut("signer"))
            .and_then(|s| s.as_array_mut())
            .and_then(|a| a.get_mut(j))
            .and_then(|e| e.as_table_mut())
        {
            entry.insert("key".into(), at(&file));
        }
    }
    for (j, hook) in site.hooks.iter().enumerate() {
        let file = format!("hook-{j}.wasm");
        data.insert(file.clone(), read(site, "[[hooks]] path", &hook.path)?);
        if let Some(entry) = table
            .get_mut("hooks")
            .and_then(|h| h.as_array_mut())
            .and_then(|a| a.get_mut(j))
            .and_then(|e| e.as_table_mut())
        {
            entry.insert("path".into(), at(&file));
        }
    }
    // The journal and the audit trail on the state volume, named by the cluster.
    set(
        &mut table,
        &["state", "dir"],
        toml::Value::String(options.state_dir.display().to_string()),
    );
    if let Some(audit) = table.get_mut("audit").and_then(|a| a.as_table_mut()) {
        audit.remove("path");
    }
    let rewritten = toml::to_string(&table)
        .map_err(|e| Failure::Failed(format!("cannot render {}: {e}", site.path.display())))?;
    data.insert("site.toml".to_string(), rewritten.into_bytes());
    Ok(Secret {
        metadata: meta(name, &options.namespace),
        type_: Some("Opaque".into()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Default::default()
    })
}

fn set(table: &mut toml::Table, keys: &[&str], value: toml::Value) {
    let (last, parents) = keys.split_last().expect("a key");
    let mut at = table;
    for key in parents {
        at = match at
            .entry(key.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
        {
            Some(t) => t,
            None => return,
        };
    }
    at.insert(last.to_string(), value);
}

/// For a site without a kubeconfig (the cluster the Job runs in): what `deploy/role.yaml`
/// grants, in the site's namespace, to the Job's service account.
fn in_cluster_rbac(
    site: &Site,
    i: usize,
    account: &str,
    options: &JobOptions,
) -> (Role, RoleBinding) {
    let name = format!("{}-site-{i}", options.name);
    let namespace = &site.cluster.namespace;
    let rule =
        |group: &str, resource: &str, names: Option<Vec<String>>, verbs: &[&str]| PolicyRule {
            api_groups: Some(vec![group.to_string()]),
            resources: Some(vec![resource.to_string()]),
            resource_names: names,
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        };
    let mut rules = vec![
        rule("", "pods", None, &["list"]),
        rule("coordination.k8s.io", "leases", None, &["create"]),
        rule(
            "coordination.k8s.io",
            "leases",
            Some(vec![site.lease.name.clone()]),
            &["get", "update"],
        ),
    ];
    if let Some(restart) = &site.restart
        && let Mechanism::Kubernetes(workload) = &restart.mechanism
    {
        let resource = match workload.kind {
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::Deployment => "deployments",
        };
        rules.push(rule(
            "apps",
            resource,
            Some(vec![workload.name.clone()]),
            &["get", "patch", "watch"],
        ));
    }
    let role = Role {
        metadata: meta(&name, namespace),
        rules: Some(rules),
    };
    let binding = RoleBinding {
        metadata: meta(&name, namespace),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account.to_string(),
            namespace: Some(options.namespace.clone()),
            ..Default::default()
        }]),
    };
    (role, binding)
}

/// The journals, audit trails and cache of every shard: one volume, mounted by
/// every index (ReadWriteMany; journal files are per cluster).
fn state_claim(name: &str, namespace: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(name, namespace),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteMany".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity("1Gi".into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Job's command line for one index, `$(JOB_COMPLETION_INDEX)` expanded by the
/// kubelet from the container's environment.
pub fn args(options: &JobOptions, site_args: Vec<String>) -> Vec<String> {
    let file = options
        .component
        .file_name()
        .map_or("component.wasm".into(), |f| {
            f.to_string_lossy().into_owned()
        });
    let mut args = vec![
        "fleet".to_string(),
        "--component".into(),
        options
            .mount_root
            .join("component")
            .join(file)
            .display()
            .to_string(),
        "--shard".into(),
        format!("$(JOB_COMPLETION_INDEX)/{}", options.shards),
        "--json".into(),
        "--cache-dir".into(),
        options.state_dir.join("cache").display().to_string(),
    ];
    args.extend(options.fleet_args.iter().cloned());
    args.push("--".into());
    args.extend(site_args);
    args
}

fn job(
    options: &JobOptions,
    sites: &[Site],
    account: &str,
    claim: &str,
    site_args: Vec<String>,
    mut mounts: Vec<VolumeMount>,
    mut volumes: Vec<Volume>,
) -> Result<Job, Failure> {
    let shards = i32::try_from(options.shards)
        .map_err(|_| Failure::Usage("fleet job: --shards is too large".into()))?;
    // Above the longest shard's worth of wall-clock limits, so that the host, not
    // Kubernetes, stops a run and reports where it stopped.
    let per_shard = sites.len().div_ceil(options.shards) as u64;
    let longest = sites
        .iter()
        .map(|s| s.limits.wall_clock.as_secs())
        .max()
        .unwrap_or(0);
    let deadline = longest * per_shard + 600;
    mounts.push(VolumeMount {
        name: "component".into(),
        mount_path: options.mount_root.join("component").display().to_string(),
        read_only: Some(true),
        ..Default::default()
    });
    mounts.push(VolumeMount {
        name: "state".into(),
        mount_path: options.state_dir.display().to_string(),
        ..Default::default()
    });
    volumes.push(Volume {
        name: "component".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: options.component_configmap.clone(),
            ..Default::default()
        }),
        ..Default::default()
    });
    volumes.push(Volume {
        name: "state".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.to_string(),
            read_only: None,
        }),
        ..Default::default()
    });
    let container = Container {
        name: "cmk-host".into(),
        image: Some(options.image.clone()),
        args: Some(args(options, site_args)),
        env: Some(vec![EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                        .into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("250m".into())),
                ("memory".to_string(), Quantity("256Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("1Gi".into()),
            )])),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let labels = BTreeMap::from([("app.kubernetes.io/name".to_string(), APP.to_string())]);
    Ok(Job {
        metadata: meta(&options.name, &options.namespace),
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".into()),
            completions: Some(shards),
            parallelism: Some(shards),
            backoff_limit_per_index: Some(options.backoff_per_index),
            active_deadline_seconds: Some(deadline as i64),
            ttl_seconds_after_finished: Some(604_800),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(account.to_string()),
                    automount_service_account_token: Some(
                        sites.iter().any(|s| s.cluster.kubeconfig.is_none()),
                    ),
                    // backoffLimitPerIndex needs Never.
                    restart_policy: Some("Never".into()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        fs_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}
