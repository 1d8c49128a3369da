//! The `http` capability's policy, probed by a real component: requests to anything
//! but `https://<listed pod IP>:<site port><allowed path>` are denied with the typed
//! error, and a listener on the target sees no connection at all.

use cmk_tests::{Canary, Cluster, PROBE_WASM, run};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

/// Runs the probe with `requests` (`METHOD URL|...`) and returns each step's
/// (name, outcome, detail).
async fn probe(
    cluster: &Cluster,
    requests: &[String],
    batch: bool,
) -> Vec<(String, String, String)> {
    let site = cluster.site().to_str().unwrap().to_string();
    let probe = cluster.signed(PROBE_WASM);
    let requests = format!("requests={}", requests.join("|"));
    let batch = format!("batch={batch}");
    let out = run(
        BIN,
        &[
            "run",
            &probe,
            "--site",
            &site,
            "--param",
            "list_pods=true",
            "--param",
            &requests,
            "--param",
            &batch,
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    out.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["outcome"].as_str().unwrap().to_string(),
                s["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn denied_and_never_connected(batch: bool) {
    let cluster = Cluster::pods(1).await;
    let (_, pod_ip) = cluster.sim.pod_ips().remove(0);
    let elsewhere = Canary::listen("127.0.0.1:0").await;
    let other_port = Canary::listen(&format!("{pod_ip}:0")).await;

    let allowed = format!("GET https://{pod_ip}:4444/cluster/v1/key");
    let non_pod = format!("GET https://{}/cluster/v1/key", elsewhere.addr);
    let wrong_port = format!("POST https://{}/cluster/v1/key/propose", other_port.addr);
    let steps = probe(
        &cluster,
        &[allowed.clone(), non_pod.clone(), wrong_port.clone()],
        batch,
    )
    .await;

    let step = |name: &str| {
        steps
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no step {name}: {steps:#?}"))
            .clone()
    };
    // The control: the listed pod on the site port is reachable.
    assert_eq!(step(&allowed).1, "done", "{steps:#?}");
    assert_eq!(step(&allowed).2, "ok 200");

    let (_, outcome, detail) = step(&non_pod);
    assert_eq!(outcome, "failed");
    assert!(
        detail.starts_with("denied: ")
            && detail.contains("is not the IP of a pod in the latest pod list"),
        "{detail}"
    );
    let (_, outcome, detail) = step(&wrong_port);
    assert_eq!(outcome, "failed");
    assert!(
        detail.starts_with("denied: ") && detail.contains("only the site's pod port 4444"),
        "{detail}"
    );

    assert_eq!(
        elsewhere.connections(),
        0,
        "the non-pod address saw a connection"
    );
    assert_eq!(
        other_port.connections(),
        0,
        "the pod's other port saw a connection"
    );
    // The denied POST never reached a pod either.
    assert!(cluster.oracle().mutations().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_outside_the_pods_are_denied_one_by_one() {
    denied_and_never_connected(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_outside_the_pods_are_denied_in_a_batch() {
    denied_and_never_connected(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_reachable_before_the_pods_are_listed() {
    let cluster = Cluster::pods(1).await;
    let (_, pod_ip) = cluster.sim.pod_ips().remove(0);
    let site = cluster.site().to_str().unwrap().to_string();
    let probe = cluster.signed(PROBE_WASM);
    let request = format!("requests=GET https://{pod_ip}:4444/cluster/v1/key");
    let out = run(
        BIN,
        &[
            "run", &probe, "--site", &site, "--param", &request, "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let report = out.json();
    let detail = report["steps"][0]["detail"].as_str().unwrap();
    assert!(detail.starts_with("denied: "), "{detail}");
    assert_eq!(report["denials"][0]["capability"], "http");
    assert!(cluster.oracle().calls.is_empty(), "no pod was contacted");
}
