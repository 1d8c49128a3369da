//! A Kubernetes-API-compatible HTTPS server on 127.0.0.1, enough for the real `kube`
//! client to list the simulated pods through a generated kubeconfig, plus the
//! simulator's control endpoints.
//!
//! - `GET /api/v1/namespaces/{ns}/pods?labelSelector=...` -> `v1.PodList`
//! - `GET /api/v1/pods?labelSelector=...`                  -> `v1.PodList` (all namespaces)
//! - `GET /api/v1/namespaces/{ns}/pods/{name}`             -> `v1.Pod` or 404 `Status`
//! - `GET /apis/apps/v1/namespaces/{ns}/statefulsets[/sdkms]` -> the StatefulSet
//! - `PATCH /apis/apps/v1/namespaces/{ns}/statefulsets/sdkms` -> a template change
//!   (`kubectl rollout restart`) starts a rolling restart in the background
//! - the same two under `deployments` when `SimConfig::workload` is a Deployment
//!   (then `statefulsets` has none, and the other way round)
//! - `GET|POST /apis/coordination.k8s.io/v1/namespaces/{ns}/leases` and
//!   `GET|PUT|DELETE .../leases/{name}` -> Leases (see `lease`)
//! - `GET /version`                                        -> version info
//! - discovery (`/api`, `/apis`, each group version's resources), `Table` answers to
//!   `kubectl get` and `?watch=true` on the lists: what real `kubectl` needs (`kubectl`)
//! - `POST /sim/v1/rolling-restart` -> 200 when every pod is Ready again, 500 on failure
//! - `GET /sim/v1/oracle`           -> the oracle JSON
//! - `GET|PUT /sim/v1/faults`       -> read or replace the injected faults
//!
//! Every request needs the bearer token (401 `Status` otherwise); anything else is a
//! 404 `Status`, as a real API server answers.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodCondition, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, Time};
use serde_json::json;

use crate::kubectl;
use crate::pki::CertNames;
use crate::selector::Selector;
use crate::serve::{self, ServerHandle};
use crate::workload::{self, Counts};
use crate::{Faults, Phase, Shared, WorkloadKind};

/// Start the API server on 127.0.0.1 (a random port).
pub(crate) async fn start(shared: Arc<Shared>) -> anyhow::Result<ServerHandle> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let listener = tokio::net::TcpListener::bind((ip, 0))
        .await
        .context("binding the API server")?;
    let tls = shared
        .pki
        .server_config(CertNames::Ip(ip, Some("localhost")))?;
    let router = Router::new().fallback(handle).with_state(shared);
    Ok(serve::serve(listener, tls, router, "kube-api".into())?)
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A Kubernetes `Status` object, the body of every API error.
fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.into(),
        "reason": reason,
        "code": code.as_u16(),
    });
    json_response(code, body.to_string())
}

fn ok_json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(s) => json_response(StatusCode::OK, s),
        Err(e) => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        ),
    }
}

async fn handle(
    AxState(shared): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let expected = format!("Bearer {}", shared.token);
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected);
    if !authorized {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let path = uri.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    tracing::debug!(%method, path, accept = ?headers.get(header::ACCEPT), query = ?query, "api request");
    if method == Method::GET {
        let server = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        if let Some(doc) = kubectl::discovery(&segments, server) {
            return ok_json(&doc);
        }
    }
    let name_field = match field_selector(&query) {
        Ok(name) => name,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e),
    };
    let table = kubectl::wants_table(&headers);
    if is_watch(&query) {
        let mut st = shared.state();
        st.watch_requests += 1;
        if st.faults.refuse_watch {
            return status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("injected fault: the Role has no watch verb ({path})"),
            );
        }
        if st.faults.fail_watch {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("injected fault: the watch failed ({path})"),
            );
        }
    }
    let route = match segments.as_slice() {
        ["api", "v1", "namespaces", ns, "pods"] => Route::ListPods(Some(ns)),
        ["api", "v1", "pods"] => Route::ListPods(None),
        ["api", "v1", "namespaces", ns, "pods", name] => Route::GetPod(ns, name),
        ["apis", "apps", "v1", "namespaces", ns, "statefulsets"] => Route::ListWorkloads(ns),
        ["apis", "apps", "v1", "namespaces", ns, "statefulsets", name] => Route::Workload(ns, name),
        ["apis", "apps", "v1", "namespaces", ns, "deployments"] => Route::ListDeployments(ns),
        ["apis", "apps", "v1", "namespaces", ns, "deployments", name] => {
            Route::Deployment(ns, name)
        }
        [
            "apis",
            "coordination.k8s.io",
            "v1",
            "namespaces",
            ns,
            "leases",
        ] => Route::Leases(ns),
        [
            "apis",
            "coordination.k8s.io",
            "v1",
            "namespaces",
            ns,
            "leases",
            name,
        ] => Route::Lease(ns, name),
        ["version"] => Route::Version,
        ["sim", "v1", "rolling-restart"] => Route::Restart,
        ["sim", "v1", "oracle"] => Route::Oracle,
        ["sim", "v1", "faults"] => Route::Faults,
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            );
        }
    };
    let allowed: &[Method] = match route {
        Route::Restart => &[Method::POST],
        Route::Faults => &[Method::GET, Method::PUT],
        Route::Workload(..) | Route::Deployment(..) => &[Method::GET, Method::PATCH],
        Route::Leases(..) => &[Method::GET, Method::POST],
        Route::Lease(..) => &[Method::GET, Method::PUT, Method::DELETE],
        _ => &[Method::GET],
    };
    if !allowed.contains(&method) {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({path})"),
        );
    }
    if method == Method::GET && matches!(route, Route::Workload(..) | Route::Deployment(..)) {
        shared.state().workload_reads += 1;
    }
    match route {
        Route::ListPods(ns) => {
            let selector = match Selector::parse(query.get("labelSelector").map_or("", |s| s)) {
                Ok(s) => s,
                Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
            };
            let ns = ns.map(str::to_string);
            answer_list(&shared, table, &query, move |s| {
                let list = list_pods(s, ns.as_deref(), &selector);
                let rv = list
                    .metadata
                    .resource_version
                    .as_deref()
                    .and_then(|v| v.parse().ok());
                (named(list.items, name_field.as_deref()), rv.unwrap_or(0))
            })
        }
        Route::GetPod(ns, name) => match get_pod(&shared, ns, name) {
            Some(pod) => answer_one(&pod, table, &query),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("pods \"{name}\" not found"),
            ),
        },
        Route::ListDeployments(ns) => {
            let ns = ns.to_string();
            answer_list(&shared, table, &query, move |s| {
                let items = deployment(s, &ns).into_iter().collect();
                (
                    named(items, name_field.as_deref()),
                    s.state().resource_version,
                )
            })
        }
        Route::Deployment(ns, name) => {
            if name != workload::NAME
                || ns != shared.config.namespace
                || shared.config.workload != WorkloadKind::Deployment
            {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("deployments.apps \"{name}\" not found"),
                );
            }
            if method == Method::PATCH
                && let Some(resp) = patch_workload(&shared, &body)
            {
                return resp;
            }
            match deployment(&shared, ns) {
                Some(d) => answer_one(&d, table, &query),
                None => status(StatusCode::NOT_FOUND, "NotFound", "deployment not found"),
            }
        }
        Route::ListWorkloads(ns) => {
            let ns = ns.to_string();
            answer_list(&shared, table, &query, move |s| {
                let items = workload(s, &ns).into_iter().collect();
                (
                    named(items, name_field.as_deref()),
                    s.state().resource_version,
                )
            })
        }
        Route::Workload(ns, name) => {
            if name != workload::NAME
                || ns != shared.config.namespace
                || shared.config.workload != WorkloadKind::StatefulSet
            {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("statefulsets.apps \"{name}\" not found"),
                );
            }
            if method == Method::PATCH
                && let Some(resp) = patch_workload(&shared, &body)
            {
                return resp;
            }
            match workload(&shared, ns) {
                Some(w) => answer_one(&w, table, &query),
                None => status(StatusCode::NOT_FOUND, "NotFound", "statefulset not found"),
            }
        }
        Route::Leases(ns) if method == Method::GET => {
            let ns = ns.to_string();
            answer_list(&shared, table, &query, move |s| {
                let items = s.state().leases.list(&ns);
                (
                    named(items, name_field.as_deref()),
                    s.state().resource_version,
                )
            })
        }
        Route::Leases(_) | Route::Lease(..)
            if method != Method::GET
                && method != Method::DELETE
                && shared.state().faults.fail_lease_writes =>
        {
            // 500, not 503: the client does not retry it, so every renewal fails fast.
            status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "injected fault: Lease writes fail",
            )
        }
        Route::Leases(ns) => lease_answer(
            serde_json::from_slice(&body)
                .map_err(|e| (400, "BadRequest", e.to_string()))
                .and_then(|l| shared.state().leases.create(ns, l)),
            StatusCode::CREATED,
        ),
        Route::Lease(ns, name) => {
            let mut st = shared.state();
            if method == Method::GET
                && table
                && let Ok(lease) = st.leases.get(ns, name)
            {
                drop(st);
                return answer_one(&lease, true, &query);
            }
            let result = match method {
                Method::GET => st.leases.get(ns, name),
                Method::DELETE => st.leases.delete(ns, name),
                _ => serde_json::from_slice(&body)
                    .map_err(|e| (400, "BadRequest", e.to_string()))
                    .and_then(|l| st.leases.replace(ns, name, l)),
            };
            drop(st);
            lease_answer(result, StatusCode::OK)
        }
        Route::Version => ok_json(&json!({
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.0-cmk-sim",
            "platform": "linux/amd64",
        })),
        Route::Oracle => ok_json(&shared.oracle()),
        Route::Faults if method == Method::GET => ok_json(&shared.state().faults),
        Route::Faults => match serde_json::from_slice::<Faults>(&body) {
            Ok(f) => {
                shared.set_faults(f.clone());
                ok_json(&f)
            }
            Err(e) => status(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
        },
        Route::Restart => {
            // Spawned: if the client hangs up, the restart still completes rather
            // than leaving a pod stopped half-way.
            let s = shared.clone();
            let result = tokio::spawn(async move { s.rolling_restart().await }).await;
            match result {
                Ok(Ok(())) => ok_json(&json!({ "ok": true, "pods": shared.pod_ips().len() })),
                Ok(Err(e)) => json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "error": format!("{e:#}") }).to_string(),
                ),
                Err(e) => json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "error": format!("rolling restart task: {e}") }).to_string(),
                ),
            }
        }
    }
}

/// `fieldSelector=metadata.name=NAME` (how `kubectl rollout status` lists the one
/// workload it watches): the name, or `None` without a field selector.
fn field_selector(query: &BTreeMap<String, String>) -> Result<Option<String>, String> {
    let Some(selector) = query.get("fieldSelector").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let name = selector
        .strip_prefix("metadata.name==")
        .or_else(|| selector.strip_prefix("metadata.name="))
        .filter(|n| !n.contains(','))
        .ok_or_else(|| {
            format!("field selector {selector:?}: only metadata.name=NAME is supported")
        })?;
    Ok(Some(name.to_string()))
}

/// `items` whose name is `name`, or all of them.
fn named<T: k8s_openapi::Metadata<Ty = ObjectMeta>>(items: Vec<T>, name: Option<&str>) -> Vec<T> {
    items
        .into_iter()
        .filter(|i| name.is_none_or(|n| i.metadata().name.as_deref() == Some(n)))
        .collect()
}

fn to_values<T: serde::Serialize>(items: &[T]) -> Vec<serde_json::Value> {
    items
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect()
}

/// `?watch=true`.
fn is_watch(query: &BTreeMap<String, String>) -> bool {
    query.get("watch").is_some_and(|w| w == "true" || w == "1")
}

/// A list endpoint's answer: a watch of the list (`?watch=true`), a `Table` of it
/// (`kubectl get`), or the list itself. `list` reads the current items.
fn answer_list<T, F>(
    shared: &Arc<Shared>,
    table: bool,
    query: &BTreeMap<String, String>,
    list: F,
) -> Response
where
    T: k8s_openapi::ListableResource + serde::Serialize,
    F: Fn(&Shared) -> (Vec<T>, u64) + Send + Sync + 'static,
{
    if is_watch(query) {
        let request = kubectl::WatchRequest {
            since: query.get("resourceVersion").and_then(|v| v.parse().ok()),
            timeout: query
                .get("timeoutSeconds")
                .and_then(|v| v.parse().ok())
                .map(std::time::Duration::from_secs),
            initial_events: query.get("sendInitialEvents").is_some_and(|v| v == "true"),
            kind: T::KIND,
            api_version: T::API_VERSION,
        };
        return kubectl::watch(shared.clone(), request, move |s| {
            let (items, rv) = list(s);
            (to_values(&items), rv)
        });
    }
    let (items, rv) = list(shared);
    if table {
        let include = query.get("includeObject").map(String::as_str);
        return ok_json(&kubectl::table(T::KIND, &to_values(&items), rv, include));
    }
    ok_json(&list_of(items, rv))
}

/// One object, or a one-row `Table` of it (`kubectl get pod sdkms-0`).
fn answer_one<T: k8s_openapi::Resource + serde::Serialize>(
    object: &T,
    table: bool,
    query: &BTreeMap<String, String>,
) -> Response {
    if !table {
        return ok_json(object);
    }
    let include = query.get("includeObject").map(String::as_str);
    let values = to_values(std::slice::from_ref(object));
    ok_json(&kubectl::table(T::KIND, &values, 0, include))
}

fn lease_answer(
    result: Result<k8s_openapi::api::coordination::v1::Lease, crate::lease::Refusal>,
    ok: StatusCode,
) -> Response {
    match result {
        Ok(lease) => match serde_json::to_string(&lease) {
            Ok(s) => json_response(ok, s),
            Err(e) => status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            ),
        },
        Err((code, reason, message)) => status(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            reason,
            message,
        ),
    }
}

enum Route<'a> {
    Leases(&'a str),
    Lease(&'a str, &'a str),
    ListPods(Option<&'a str>),
    ListWorkloads(&'a str),
    Workload(&'a str, &'a str),
    ListDeployments(&'a str),
    Deployment(&'a str, &'a str),
    GetPod(&'a str, &'a str),
    Version,
    Restart,
    Oracle,
    Faults,
}

/// The Kubernetes view of the pods: stopped pods are absent, starting pods are
/// Pending without an IP, running pods are Running and Ready with their IP.
fn pods(shared: &Shared) -> (Vec<Pod>, u64) {
    let st = shared.state();
    let c = &shared.config;
    let pods = st
        .slots
        .iter()
        .filter(|(_, s)| s.phase != Phase::Absent)
        .map(|(name, slot)| {
            let running = slot.phase == Phase::Running;
            let ip = slot.ip.filter(|_| running).map(|ip| ip.to_string());
            let mut labels = c.labels.clone();
            labels.insert("statefulset.kubernetes.io/pod-name".into(), name.clone());
            labels.insert("controller-revision-hash".into(), slot.revision.clone());
            let ready = if running { "True" } else { "False" };
            Pod {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(c.namespace.clone()),
                    labels: Some(labels),
                    uid: Some(slot.uid.clone()),
                    resource_version: Some(st.resource_version.to_string()),
                    creation_timestamp: Some(Time(slot.created)),
                    ..ObjectMeta::default()
                },
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "sdkms".into(),
                        image: Some("fortanix/sdkms:cmk-sim".into()),
                        ports: Some(vec![ContainerPort {
                            container_port: i32::from(c.port),
                            name: Some("https".into()),
                            protocol: Some("TCP".into()),
                            ..ContainerPort::default()
                        }]),
                        ..Container::default()
                    }],
                    hostname: Some(name.clone()),
                    ..PodSpec::default()
                }),
                status: Some(PodStatus {
                    phase: Some(if running { "Running" } else { "Pending" }.into()),
                    pod_ip: ip.clone(),
                    pod_ips: ip.map(|ip| vec![PodIP { ip }]),
                    host_ip: Some("127.0.0.1".into()),
                    conditions: Some(
                        ["Ready", "ContainersReady"]
                            .into_iter()
                            .map(|t| PodCondition {
                                type_: t.into(),
                                status: ready.into(),
                                ..PodCondition::default()
                            })
                            .collect(),
                    ),
                    ..PodStatus::default()
                }),
            }
        })
        .collect();
    (pods, st.resource_version)
}

fn list_pods(shared: &Shared, ns: Option<&str>, selector: &Selector) -> k8s_openapi::List<Pod> {
    let (all, rv) = pods(shared);
    let in_ns = ns.is_none_or(|ns| ns == shared.config.namespace);
    let items = all
        .into_iter()
        .filter(|_| in_ns)
        .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
        .collect();
    list_of(items, rv)
}

/// A Kubernetes list of `items` at `resource_version`, as every list endpoint answers.
fn list_of<T: k8s_openapi::ListableResource>(
    items: Vec<T>,
    resource_version: u64,
) -> k8s_openapi::List<T> {
    k8s_openapi::List {
        items,
        metadata: ListMeta {
            resource_version: Some(resource_version.to_string()),
            ..ListMeta::default()
        },
    }
}

fn get_pod(shared: &Shared, ns: &str, name: &str) -> Option<Pod> {
    if ns != shared.config.namespace {
        return None;
    }
    pods(shared)
        .0
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
}

/// The status counts of the workload, from the pod slots.
fn counts(st: &crate::State) -> Counts {
    let w = &st.workload;
    let mut counts = Counts::default();
    for slot in st.slots.values().filter(|s| s.phase != Phase::Absent) {
        counts.replicas += 1;
        counts.ready += usize::from(slot.phase == Phase::Running);
        counts.updated += usize::from(slot.revision == w.update_revision);
        counts.current += usize::from(slot.revision == w.current_revision);
    }
    counts
}

/// The Deployment, with its status counted from the pods (when the workload is one).
fn deployment(shared: &Shared, ns: &str) -> Option<k8s_openapi::api::apps::v1::Deployment> {
    if ns != shared.config.namespace || shared.config.workload != WorkloadKind::Deployment {
        return None;
    }
    let st = shared.state();
    Some(st.workload.to_deployment(
        &shared.config.namespace,
        &shared.config.labels,
        shared.config.pods,
        counts(&st),
        st.resource_version,
    ))
}

/// The StatefulSet, with its status counted from the pods.
fn workload(shared: &Shared, ns: &str) -> Option<k8s_openapi::api::apps::v1::StatefulSet> {
    if ns != shared.config.namespace || shared.config.workload != WorkloadKind::StatefulSet {
        return None;
    }
    let st = shared.state();
    let counts = counts(&st);
    Some(st.workload.to_object(
        &shared.config.namespace,
        &shared.config.labels,
        shared.config.pods,
        counts,
        st.resource_version,
    ))
}

/// Apply a patch; a template change starts a rolling restart in the background, as
/// the StatefulSet controller would (the client watches the status for progress).
/// Returns the error response, if the patch is refused.
fn patch_workload(shared: &Arc<Shared>, body: &[u8]) -> Option<Response> {
    let patch: serde_json::Value = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return Some(status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!("the patch must be JSON: {e}"),
            ));
        }
    };
    let changed = {
        let mut st = shared.state();
        match st.workload.apply_patch(&patch) {
            Ok(changed) => {
                st.resource_version += u64::from(changed);
                changed
            }
            Err(e) => return Some(status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e)),
        }
    };
    if changed {
        tracing::info!("statefulset template patched: rollout restart");
        let s = shared.clone();
        tokio::spawn(async move {
            // The outcome is recorded in the oracle; the client watches the status.
            let _ = s.rolling_restart().await;
        });
    }
    None
}
