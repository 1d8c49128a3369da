//! What `kubectl` needs of the API server beyond what the `kube` client uses:
//! discovery (`/api`, `/apis` and the resources of each group version, how kubectl
//! maps `pods` or `statefulset/sdkms` to a URL), server-side `Table` output (what
//! `kubectl get` prints, `-owide` included), and watches (`kubectl rollout status`
//! follows the StatefulSet's status through one).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::Shared;

/// The resources this server serves, per group version: (group version, resources).
/// Each resource: (plural, singular, kind, short names, verbs).
type Resource = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

const READ: &[&str] = &["get", "list", "watch"];
const WORKLOAD: &[&str] = &["get", "list", "watch", "patch"];
const LEASE: &[&str] = &["create", "delete", "get", "list", "update", "watch"];

const GROUP_VERSIONS: &[(&str, &[Resource])] = &[
    ("v1", &[("pods", "pod", "Pod", &["po"], READ)]),
    (
        "apps/v1",
        &[
            (
                "statefulsets",
                "statefulset",
                "StatefulSet",
                &["sts"],
                WORKLOAD,
            ),
            (
                "deployments",
                "deployment",
                "Deployment",
                &["deploy"],
                WORKLOAD,
            ),
        ],
    ),
    (
        "coordination.k8s.io/v1",
        &[("leases", "lease", "Lease", &[], LEASE)],
    ),
];

fn group_doc(group: &str) -> Value {
    let gv = format!("{group}/v1");
    json!({
        "name": group,
        "versions": [{ "groupVersion": gv, "version": "v1" }],
        "preferredVersion": { "groupVersion": gv, "version": "v1" },
    })
}

/// The discovery document at `segments` (`/api`, `/apis`, `/apis/GROUP`, and each
/// group version's resource list), or `None` when the path is not discovery.
/// Served as plain JSON: kubectl asks for aggregated discovery first and falls back
/// to these documents when the answer is not one.
pub(crate) fn discovery(segments: &[&str], server: &str) -> Option<Value> {
    let groups = || {
        GROUP_VERSIONS
            .iter()
            .filter_map(|(gv, _)| gv.split_once('/').map(|(g, _)| g))
    };
    match segments {
        ["api"] => Some(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server }],
        })),
        ["apis"] => Some(json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": groups().map(group_doc).collect::<Vec<_>>(),
        })),
        ["apis", group] if groups().any(|g| g == *group) => {
            let mut doc = group_doc(group);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            Some(doc)
        }
        ["api", version] => resource_list(version),
        ["apis", group, version] => resource_list(&format!("{group}/{version}")),
        _ => None,
    }
}

/// The `APIResourceList` of group version `gv`, if this server serves it.
fn resource_list(gv: &str) -> Option<Value> {
    let (_, resources) = GROUP_VERSIONS.iter().find(|(g, _)| *g == gv)?;
    let resources: Vec<Value> = resources
        .iter()
        .map(|(name, singular, kind, short, verbs)| {
            json!({
                "name": name,
                "singularName": singular,
                "namespaced": true,
                "kind": kind,
                "verbs": verbs,
                "shortNames": short,
            })
        })
        .collect();
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

/// Whether the client asks for a `meta.k8s.io/v1` `Table` (kubectl's `get`:
/// `Accept: application/json;as=Table;v=v1;g=meta.k8s.io, ..., application/json`).
/// A client that accepts only other Table versions gets the plain object, which
/// its `application/json` fallback accepts.
pub(crate) fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&"as=Table")
                && params.contains(&"v=v1")
                && params.contains(&"g=meta.k8s.io")
        })
}

/// `kubectl`'s age format: `42s`, `5m10s`, `17m`, `3h`, `2d`.
fn age(created: Option<&str>) -> String {
    let Some(ts) = created.and_then(|c| c.parse::<Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = crate::now().duration_since(ts).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn count(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The columns of each kind (name, priority: 1 only with `-owide`) and a row's cells.
fn columns_and_cells(kind: &str, object: &Value) -> (Vec<(&'static str, u8)>, Vec<Value>) {
    let name = json!(text(object, "/metadata/name").unwrap_or(""));
    let created = text(object, "/metadata/creationTimestamp");
    let none = || json!("<none>");
    match kind {
        "Pod" => {
            let ready = object
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
            (
                vec![
                    ("Name", 0),
                    ("Ready", 0),
                    ("Status", 0),
                    ("Restarts", 0),
                    ("Age", 0),
                    ("IP", 1),
                    ("Node", 1),
                    ("Nominated Node", 1),
                    ("Readiness Gates", 1),
                ],
                vec![
                    name,
                    json!(if ready { "1/1" } else { "0/1" }),
                    json!(text(object, "/status/phase").unwrap_or("Unknown")),
                    json!("0"),
                    json!(age(created)),
                    text(object, "/status/podIP").map_or_else(none, |ip| json!(ip)),
                    text(object, "/spec/nodeName").map_or_else(none, |n| json!(n)),
                    none(),
                    none(),
                ],
            )
        }
        "StatefulSet" => (
            vec![("Name", 0), ("Ready", 0), ("Age", 0)],
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    count(object, "/status/readyReplicas"),
                    count(object, "/spec/replicas")
                )),
                json!(age(created)),
            ],
        ),
        "Deployment" => (
            vec![
                ("Name", 0),
                ("Ready", 0),
                ("Up-to-date", 0),
                ("Available", 0),
                ("Age", 0),
            ],
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    count(object, "/status/readyReplicas"),
                    count(object, "/spec/replicas")
                )),
                json!(count(object, "/status/updatedReplicas")),
                json!(count(object, "/status/availableReplicas")),
                json!(age(created)),
            ],
        ),
        // Leases.
        _ => (
            vec![("Name", 0), ("Holder", 0), ("Age", 0)],
            vec![
                name,
                json!(text(object, "/spec/holderIdentity").unwrap_or("")),
                json!(age(created)),
            ],
        ),
    }
}

/// `objects` (of `kind`) as a `meta.k8s.io/v1` `Table`, each row carrying the object
/// as `includeObject` asks (`None`, `Metadata`, the default, or `Object`).
pub(crate) fn table(
    kind: &str,
    objects: &[Value],
    resource_version: u64,
    include_object: Option<&str>,
) -> Value {
    let (columns, _) = columns_and_cells(kind, &Value::Null);
    let column_definitions: Vec<Value> = columns
        .iter()
        .map(|(name, priority)| {
            json!({
                "name": name,
                "type": "string",
                "format": if *name == "Name" { "name" } else { "" },
                "description": "",
                "priority": priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let (_, cells) = columns_and_cells(kind, object);
            let mut row = json!({ "cells": cells });
            match include_object.unwrap_or("Metadata") {
                "None" => {}
                "Object" => row["object"] = object.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version.to_string() },
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

/// The longest a watch waits for a change notice before it looks anyway.
const WATCH_POLL: Duration = Duration::from_millis(500);
/// The longest a watch stays open (clients ask for less, then watch again).
const WATCH_MAX: Duration = Duration::from_secs(600);

/// What a watch request asks for (`?watch=true&...`).
pub(crate) struct WatchRequest {
    /// `resourceVersion`: changes after this one are sent.
    pub since: Option<u64>,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// `sendInitialEvents=true` (a streaming list, as newer kubectl sends): first
    /// an `ADDED` per object, then a `BOOKMARK` marking the end of them.
    pub initial_events: bool,
    /// The `kind` and `apiVersion` of the objects (for the bookmark).
    pub kind: &'static str,
    pub api_version: &'static str,
}

/// A watch: a stream of `{"type":"MODIFIED","object":...}` lines, one per object
/// whenever the cluster's resourceVersion moves past the last one sent, until the
/// timeout or the client hangs up. The objects are `list`ed afresh each time, so a
/// client following a rollout always ends on the latest state.
pub(crate) fn watch(
    shared: Arc<Shared>,
    request: WatchRequest,
    list: impl Fn(&Shared) -> (Vec<Value>, u64) + Send + Sync + 'static,
) -> Response {
    let deadline =
        tokio::time::Instant::now() + request.timeout.unwrap_or(WATCH_MAX).min(WATCH_MAX);
    let event = |kind: &str, object: &Value| {
        let mut line = json!({ "type": kind, "object": object }).to_string();
        line.push('\n');
        line
    };
    let mut first = String::new();
    let start = if request.initial_events {
        let (objects, rv) = list(&shared);
        for object in &objects {
            first.push_str(&event("ADDED", object));
        }
        let bookmark = json!({
            "kind": request.kind,
            "apiVersion": request.api_version,
            "metadata": {
                "resourceVersion": rv.to_string(),
                "annotations": { "k8s.io/initial-events-end": "true" },
            },
        });
        first.push_str(&event("BOOKMARK", &bookmark));
        rv
    } else {
        request
            .since
            .unwrap_or_else(|| shared.state().resource_version)
    };
    let stream = futures::stream::unfold(
        (shared, start, list, Some(first).filter(|f| !f.is_empty())),
        move |(shared, seen, list, first)| async move {
            if let Some(first) = first {
                let chunk: Result<Bytes, std::convert::Infallible> = Ok(Bytes::from(first));
                return Some((chunk, (shared, seen, list, None)));
            }
            let current = loop {
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                // Registered before the state is read, so no change is missed.
                let notified = shared.changed.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                let current = shared.state().resource_version;
                if current > seen {
                    break current;
                }
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep(WATCH_POLL) => {}
                }
            };
            let (objects, rv) = list(&shared);
            let lines: String = objects.iter().map(|o| event("MODIFIED", o)).collect();
            let chunk: Result<Bytes, std::convert::Infallible> = Ok(Bytes::from(lines));
            Some((chunk, (shared, rv.max(current), list, None)))
        },
    );
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_asked_for_by_kubectl_accept_header_only() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            ),
        );
        assert!(wants_table(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            ),
        );
        assert!(!wants_table(&h), "only v1 Tables are served");
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_table(&h));
    }

    #[test]
    fn discovery_lists_the_served_resources() {
        let api = discovery(&["api"], "127.0.0.1:1").unwrap();
        assert_eq!(api["versions"], json!(["v1"]));
        let groups = discovery(&["apis"], "x").unwrap();
        let names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["apps", "coordination.k8s.io"]);
        let apps = discovery(&["apis", "apps", "v1"], "x").unwrap();
        assert_eq!(apps["groupVersion"], "apps/v1");
        assert_eq!(apps["resources"][0]["shortNames"], json!(["sts"]));
        let core = discovery(&["api", "v1"], "x").unwrap();
        assert_eq!(core["resources"][0]["name"], "pods");
        assert!(discovery(&["apis", "batch", "v1"], "x").is_none());
        assert!(discovery(&["api", "v2"], "x").is_none());
    }

    #[test]
    fn pod_rows_show_the_ip_in_a_wide_column() {
        let pod = json!({
            "metadata": { "name": "sdkms-0", "creationTimestamp": crate::now().to_string() },
            "status": { "phase": "Running", "podIP": "127.1.2.3",
                        "conditions": [{ "type": "Ready", "status": "True" }] },
        });
        let t = table("Pod", &[pod], 7, None);
        let columns = t["columnDefinitions"].as_array().unwrap();
        let ip = columns.iter().position(|c| c["name"] == "IP").unwrap();
        assert_eq!(columns[ip]["priority"], 1);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "sdkms-0");
        assert_eq!(cells[1], "1/1");
        assert_eq!(cells[ip], "127.1.2.3");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
