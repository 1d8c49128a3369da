//! `pods`: the cluster's pods, as the site's namespace and label selector define
//! them, read through the Kubernetes API with the `kube` client.
//!
//! The guest cannot choose the namespace or the selector: the site fixes both. Each
//! list becomes the run's [`PodAddresses`], the allow-list of `http`, and the
//! procedure's latest list in [`PodView`]: what the host's guards see, and what
//! `[cluster] expect_pods` is checked against before every mutating call.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod as KubePod;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use serde::Deserialize;

use super::gate::{Call, Gate};
use super::{LatestPods, PodAddresses};
use crate::frame::{SiteError, SiteFile, is_dns_label};
use crate::wit::cmk::procedure::pods::{Host, Pod, PodsError};

/// `[cluster]`: which pods are the cluster's. Fixed by the site; the guest cannot widen it.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    /// `None`: `KUBECONFIG`, then `~/.kube/config`, then the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    pub selector: String,
    /// The port every pod serves the DSM cluster API on (used by `http`).
    pub port: u16,
    /// How many pods the cluster must have: while the latest pod list has another
    /// number, the host refuses every mutating call ([`PodView::check_expected`]).
    pub expect_pods: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    name: String,
    kubeconfig: Option<PathBuf>,
    namespace: String,
    selector: String,
    #[serde(default = "default_port")]
    port: u16,
    expect_pods: Option<u32>,
}

fn default_port() -> u16 {
    4444
}

impl RawCluster {
    pub fn validate(self, file: &SiteFile<'_>) -> Result<Cluster, SiteError> {
        if self.name.trim().is_empty() {
            return Err(file.error("[cluster] name", "must not be empty"));
        }
        if !is_dns_label(&self.namespace) {
            return Err(file.error(
                "[cluster] namespace",
                format!(
                    "{:?} is not a valid namespace (lowercase letters, digits and '-', at most 63)",
                    self.namespace
                ),
            ));
        }
        if let Err(e) = validate_selector(&self.selector) {
            return Err(file.error(
                "[cluster] selector",
                format!("invalid label selector {:?}: {e}", self.selector),
            ));
        }
        if self.port == 0 {
            return Err(file.error("[cluster] port", "must be 1..=65535"));
        }
        if self.expect_pods == Some(0) {
            return Err(file.error("[cluster] expect_pods", "must be at least 1"));
        }
        let kubeconfig = self.kubeconfig.map(|k| file.resolve(&k));
        if let Some(k) = &kubeconfig
            && let Err(e) = std::fs::metadata(k)
        {
            return Err(file.error(
                "[cluster] kubeconfig",
                format!("cannot read {}: {e}", k.display()),
            ));
        }
        Ok(Cluster {
            name: self.name,
            kubeconfig,
            namespace: self.namespace,
            selector: self.selector,
            port: self.port,
            expect_pods: self.expect_pods,
        })
    }
}

/// A client for the site's pods; cheap to clone.
#[derive(Clone)]
pub struct PodLister {
    api: Api<KubePod>,
    selector: String,
    namespace: String,
    /// Where the API server is and which configuration named it, for errors that
    /// say where to look.
    server: String,
    origin: String,
}

/// Why a Kubernetes client could not be made from the site's configuration.
#[derive(Debug, thiserror::Error)]
#[error("{source_of_config}: {message}")]
pub struct ClientError {
    pub source_of_config: String,
    pub message: String,
}

impl PodLister {
    /// Connects as the site says: `[cluster] kubeconfig`, else `KUBECONFIG`,
    /// `~/.kube/config`, or the in-cluster service account.
    pub async fn connect(cluster: &Cluster) -> Result<PodLister, ClientError> {
        let (config, origin) = match &cluster.kubeconfig {
            Some(path) => (
                from_file(path).await,
                format!("kubeconfig {}", path.display()),
            ),
            None => (
                Config::infer().await.map_err(|e| e.to_string()),
                "kubeconfig (KUBECONFIG, ~/.kube/config or in-cluster)".to_string(),
            ),
        };
        let config = config.map_err(|message| ClientError {
            source_of_config: origin.clone(),
            message,
        })?;
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|e| ClientError {
            source_of_config: origin.clone(),
            message: e.to_string(),
        })?;
        Ok(PodLister {
            api: Api::namespaced(client, &cluster.namespace),
            selector: cluster.selector.clone(),
            namespace: cluster.namespace.clone(),
            server,
            origin,
        })
    }

    /// The Kubernetes client this lister uses, with the site's credentials (for
    /// `restart`'s rollouts and the run's Lease).
    pub fn client(&self) -> Client {
        self.api.clone().into_client()
    }

    /// The site's namespace: the only one any capability touches.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The pods now, sorted by name. An error names the API server, the
    /// kubeconfig it came from, and the kubectl command that checks the same.
    pub async fn list(&self) -> Result<Vec<Pod>, String> {
        let list = self
            .api
            .list(&ListParams::default().labels(&self.selector))
            .await
            .map_err(|e| {
                format!(
                    "cannot list the pods of namespace {:?} with selector {:?} from the Kubernetes API {}: {}; check with: {}",
                    self.namespace,
                    self.selector,
                    self.describe(),
                    crate::chain::error_chain(&e),
                    self.kubectl()
                )
            })?;
        let mut pods: Vec<Pod> = list.items.into_iter().map(to_wit).collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        if pods.is_empty() {
            tracing::warn!(
                "no pod matches selector {:?} in namespace {:?} (Kubernetes API at {}); check [cluster] namespace and selector with: {}",
                self.selector,
                self.namespace,
                self.server,
                self.kubectl()
            );
        }
        Ok(pods)
    }

    /// Where the API server is and which configuration named it.
    pub fn describe(&self) -> String {
        format!("at {} ({})", self.server, self.origin)
    }

    /// The kubectl command that lists what [`PodLister::list`] lists.
    fn kubectl(&self) -> String {
        format!(
            "kubectl get pods -n {} -l {} -o wide",
            self.namespace, self.selector
        )
    }
}

async fn from_file(path: &Path) -> Result<Config, String> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| e.to_string())
}

fn to_wit(pod: KubePod) -> Pod {
    let status = pod.status.unwrap_or_default();
    let ready = status
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    Pod {
        name: pod.metadata.name.unwrap_or_default(),
        ip: status.pod_ip.filter(|ip| !ip.is_empty()),
        ready,
        phase: status.phase.unwrap_or_else(|| "Unknown".into()),
    }
}

/// The procedure's latest pod list, as the host keeps it for its guards, and the
/// count the site expects (`[cluster] expect_pods`). Written by the procedure's
/// `pods.list` (a hook's lists do not count); cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PodView {
    latest: LatestPods,
    expect: Option<u32>,
}

impl PodView {
    pub fn new(expect: Option<u32>) -> PodView {
        PodView {
            latest: LatestPods::default(),
            expect,
        }
    }

    fn record(&self, pods: &[Pod]) {
        self.latest.observe(pods.to_vec());
    }

    /// The record the view reads: shared with the gate and the confirmations (a
    /// restart's final list is recorded there too).
    pub fn latest_pods(&self) -> LatestPods {
        self.latest.clone()
    }

    /// `[cluster] expect_pods`.
    pub fn expect(&self) -> Option<u32> {
        self.expect
    }

    /// The latest list; `None` before the procedure's first.
    pub fn latest(&self) -> Option<Vec<Pod>> {
        (self.latest.generation() > 0).then(|| self.latest.pods())
    }

    /// `Err`, with both counts and the pods listed, when `pods` is not the number
    /// the site expects: no mutating call goes out to a cluster other than the one
    /// the site describes.
    pub fn check_expected(&self, pods: &[Pod]) -> Result<(), String> {
        match self.expect {
            Some(n) if pods.len() != n as usize => {
                let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
                Err(format!(
                    "expected {n} pods ([cluster] expect_pods), the selector matches {}{}{}",
                    pods.len(),
                    if names.is_empty() { "" } else { ": " },
                    names.join(", ")
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The `pods` capability of one run.
pub struct PodsCap {
    lister: PodLister,
    addresses: PodAddresses,
    /// The grant.
    gate: Gate,
    /// The procedure's lists are the guards' view; a hook's `PodsCap` has none.
    view: Option<PodView>,
    audit: crate::audit::Audit,
    /// Pods in the latest successful list: the report's count when a procedure
    /// fails before it can report one.
    last_count: Option<u32>,
}

impl PodsCap {
    pub fn last_count(&self) -> Option<u32> {
        self.last_count
    }

    /// Every successful list becomes `view`'s latest (the procedure's pods only).
    pub fn with_view(mut self, view: PodView) -> Self {
        self.view = Some(view);
        self
    }

    /// Every list is recorded in `audit`.
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = audit;
        self
    }

    pub fn new(lister: PodLister, addresses: PodAddresses, gate: Gate) -> Self {
        PodsCap {
            lister,
            addresses,
            gate,
            view: None,
            audit: crate::audit::Audit::default(),
            last_count: None,
        }
    }
}

impl Host for PodsCap {
    async fn list(&mut self) -> Result<Vec<Pod>, PodsError> {
        let started = std::time::Instant::now();
        let result = self.list_unaudited().await;
        if let Ok(pods) = &result {
            self.last_count = Some(pods.len() as u32);
        }
        let outcome = match &result {
            Ok(pods) => format!("ok: {} pods", pods.len()),
            Err(PodsError::Denied(_)) => "denied".into(),
            Err(PodsError::Unavailable(_)) => "unavailable".into(),
        };
        let target = format!("{}/{}", self.lister.namespace(), self.lister.selector);
        self.audit.record(crate::audit::Entry::call(
            "pods",
            &target,
            &outcome,
            started.elapsed().as_millis() as u64,
        ));
        result
    }
}

impl PodsCap {
    async fn list_unaudited(&mut self) -> Result<Vec<Pod>, PodsError> {
        if let Err(refusal) = self.gate.decide(Call::ListPods).await {
            return Err(PodsError::Denied(refusal.into_message()));
        }
        let pods = self.lister.list().await.map_err(PodsError::Unavailable)?;
        let ips = pods
            .iter()
            .filter_map(|p| p.ip.as_deref()?.parse::<IpAddr>().ok())
            .collect();
        self.addresses.replace(ips);
        if let Some(view) = &self.view {
            view.record(&pods);
        }
        tracing::debug!(pods = pods.len(), "listed pods");
        Ok(pods)
    }
}

/// Checks a Kubernetes label selector: comma-separated requirements, each
/// `key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (a,b)` or
/// `key notin (a,b)`. The API server would reject anything else at run time;
/// we reject it before anything runs.
pub fn validate_selector(selector: &str) -> Result<(), String> {
    if selector.trim().is_empty() {
        return Err("empty: it would select every pod in the namespace".into());
    }
    for requirement in split_requirements(selector)? {
        let r = requirement.trim();
        if let Some(key) = r.strip_prefix('!') {
            check_key(key.trim())?;
        } else if let Some((key, rest)) = split_set_op(r) {
            check_key(key)?;
            let values = rest
                .trim()
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(|| format!("{r:?}: expected a value list in parentheses"))?;
            for v in values.split(',') {
                check_value(v.trim())?;
            }
        } else if let Some((key, value)) = r
            .split_once("!=")
            .or_else(|| r.split_once("=="))
            .or_else(|| r.split_once('='))
        {
            check_key(key.trim())?;
            check_value(value.trim())?;
        } else {
            check_key(r)?;
        }
    }
    Ok(())
}

/// Splits on commas that are not inside a `( … )` value list.
fn split_requirements(selector: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced parentheses".into());
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    parts.push(&selector[start..]);
    Ok(parts)
}

fn split_set_op(r: &str) -> Option<(&str, &str)> {
    for op in [" notin ", " in "] {
        if let Some((k, rest)) = r.split_once(op) {
            return Some((k.trim(), rest));
        }
    }
    None
}

fn check_key(key: &str) -> Result<(), String> {
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty()
                || prefix.len() > 253
                || !prefix.split('.').all(crate::frame::is_dns_label)
            {
                return Err(format!("key {key:?}: invalid prefix {prefix:?}"));
            }
            name
        }
        None => key,
    };
    if name.is_empty() || name.len() > 63 || !is_label_chars(name) {
        return Err(format!(
            "key {key:?}: must be 1-63 characters of [A-Za-z0-9._-], starting and ending alphanumeric"
        ));
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), String> {
    if value.len() > 63 || !(value.is_empty() || is_label_chars(value)) {
        return Err(format!(
            "value {value:?}: must be at most 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric"
        ));
    }
    Ok(())
}

fn is_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Pod {
        Pod {
            name: name.into(),
            ip: Some("10.0.0.1".into()),
            ready: true,
            phase: "Running".into(),
        }
    }

    #[test]
    fn expect_pods_is_checked_with_both_counts() {
        let pods = [pod("sdkms-0"), pod("sdkms-1"), pod("sdkms-2")];
        assert_eq!(PodView::new(None).check_expected(&pods), Ok(()));
        assert_eq!(PodView::new(Some(3)).check_expected(&pods), Ok(()));
        assert_eq!(
            PodView::new(Some(4)).check_expected(&pods).unwrap_err(),
            "expected 4 pods ([cluster] expect_pods), the selector matches 3: sdkms-0, sdkms-1, sdkms-2"
        );
        assert_eq!(
            PodView::new(Some(2)).check_expected(&[]).unwrap_err(),
            "expected 2 pods ([cluster] expect_pods), the selector matches 0"
        );
    }

    #[test]
    fn selectors() {
        for good in [
            "app=sdkms",
            "app==sdkms,tier!=x",
            "app in (a,b),!legacy",
            "k8s.io/app",
            "a notin (x)",
        ] {
            assert_eq!(validate_selector(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "app=",
            "=x",
            "app in a",
            "app in (a",
            "-app=x",
            "app=sd kms",
            "a,,b",
        ] {
            let ok = validate_selector(bad).is_ok();
            // `app=` selects an empty value, which Kubernetes accepts.
            assert_eq!(ok, bad == "app=", "{bad}");
        }
    }
}
