//! `pods`: the cluster's pods, as the site's namespace and label selector define
//! them, read through the Kubernetes API with the `kube` client.
//!
//! The guest cannot choose the namespace or the selector: the site fixes both. Each
//! list becomes the run's [`PodAddresses`], the allow-list of `http`.

use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod as KubePod;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::PodAddresses;
use crate::runtime::bindings::cmk::procedure::pods::{Host, Pod, PodsError};
use crate::site::Site;

/// A client for the site's pods; cheap to clone.
#[derive(Clone)]
pub struct PodLister {
    api: Api<KubePod>,
    selector: String,
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
    pub async fn connect(site: &Site) -> Result<PodLister, ClientError> {
        let (config, origin) = match &site.cluster.kubeconfig {
            Some(path) => (from_file(path).await, format!("kubeconfig {}", path.display())),
            None => (
                Config::infer().await.map_err(|e| e.to_string()),
                "kubeconfig (KUBECONFIG, ~/.kube/config or in-cluster)".to_string(),
            ),
        };
        let config = config.map_err(|message| ClientError {
            source_of_config: origin.clone(),
            message,
        })?;
        let client = Client::try_from(config).map_err(|e| ClientError {
            source_of_config: origin,
            message: e.to_string(),
        })?;
        Ok(PodLister {
            api: Api::namespaced(client, &site.cluster.namespace),
            selector: site.cluster.selector.clone(),
        })
    }

    /// The pods now, sorted by name.
    pub async fn list(&self) -> Result<Vec<Pod>, String> {
        let list = self
            .api
            .list(&ListParams::default().labels(&self.selector))
            .await
            .map_err(|e| format!("listing pods ({}): {e}", self.selector))?;
        let mut pods: Vec<Pod> = list.items.into_iter().map(to_wit).collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(pods)
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

/// The `pods` capability of one run.
pub struct PodsCap {
    lister: PodLister,
    addresses: PodAddresses,
}

impl PodsCap {
    pub fn new(lister: PodLister, addresses: PodAddresses) -> Self {
        PodsCap { lister, addresses }
    }
}

impl Host for PodsCap {
    async fn list(&mut self) -> Result<Vec<Pod>, PodsError> {
        let pods = self.lister.list().await.map_err(PodsError::Unavailable)?;
        let ips = pods
            .iter()
            .filter_map(|p| p.ip.as_deref()?.parse::<IpAddr>().ok())
            .collect();
        self.addresses.replace(ips);
        tracing::debug!(pods = pods.len(), "listed pods");
        Ok(pods)
    }
}
