//! The whole rotation, end to end: the real binary, the real component, the
//! simulated cluster; asserted on the simulator's oracle.

use cmk_tests::{Cluster, ROTATE_WASM, assert_rotated_once, run};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

async fn rotate_with_run(pods: usize) {
    let cluster = Cluster::pods(pods).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let out = run(
        BIN,
        &["run", ROTATE_WASM, "--site", &site, "--json", "--yes"],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let report = out.json();
    assert_eq!(report["outcome"], "succeeded", "{out}");
    assert_eq!(report["version_before"], 1);
    assert_eq!(report["version_after"], 2);
    assert_eq!(report["pods"], pods as u64);
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "preflight",
            "propose",
            "distribute",
            "verify-distributed",
            "restart-load",
            "verify-loaded",
            "activate",
            "restart-activate",
            "verify-activated"
        ]
    );
    assert_rotated_once(&cluster.oracle(), pods);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_rotates_a_three_pod_cluster() {
    rotate_with_run(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_rotates_a_single_pod_cluster() {
    rotate_with_run(1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_rotates_a_seven_pod_cluster() {
    rotate_with_run(7).await;
}

/// `cmk-host demo` runs its own simulator; `--json` carries that simulator's oracle.
async fn demo(pods: usize) {
    let n = pods.to_string();
    let out = run(BIN, &["demo", "--pods", &n, "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let json = out.json();
    assert_eq!(json["report"]["outcome"], "succeeded", "{out}");
    let oracle: cmk_sim::Oracle = serde_json::from_value(json["oracle"].clone()).expect("oracle");
    assert_rotated_once(&oracle, pods);
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_rotates_three_pods() {
    demo(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_rotates_one_pod() {
    demo(1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_rotates_seven_pods() {
    demo(7).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_summary_tells_what_happened() {
    let out = run(BIN, &["demo"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("version:  1 -> 2"), "{out}");
    assert!(out.stdout.contains("pods:     3"), "{out}");
    assert!(
        out.stdout
            .contains("simulator: 1 propose, 2 fetch, 1 activate, 2 rolling restarts; 3/3 pods on version 2; 0 broken"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("DR and cold-standby nodes must now rejoin"),
        "{out}"
    );
    // Progress: every step shown as it ends, on stderr.
    assert!(out.stderr.contains("✓ verify-activated done"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_reads_and_changes_nothing() {
    let cluster = Cluster::pods(3).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let out = run(
        BIN,
        &["run", ROTATE_WASM, "--site", &site, "--plan", "--json"],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let report = out.json();
    let planned: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "planned")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        planned.contains(&"propose") && planned.contains(&"activate"),
        "{out}"
    );
    let oracle = cluster.oracle();
    assert!(
        oracle.mutations().is_empty(),
        "no POST: {:#?}",
        oracle.mutations()
    );
    assert!(oracle.restarts.is_empty(), "no restart");
}
