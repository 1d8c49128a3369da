//! Faults injected into the simulated cluster: the rotation stops before it can do
//! harm, says where and why, and the oracle shows nothing was activated.

use cmk_sim::{Faults, SimConfig};
use cmk_tests::{Cluster, ROTATE_WASM, assert_no_restart_no_activate, assert_rotated_once, run};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

async fn rotate(faults: Faults) -> (Cluster, cmk_tests::Outcome) {
    let cluster = Cluster::start(SimConfig {
        faults,
        ..SimConfig::pods(3)
    })
    .await;
    let site = cluster.site().to_str().unwrap().to_string();
    let component = cluster.signed(ROTATE_WASM);
    let out = run(
        BIN,
        &["run", &component, "--site", &site, "--json", "--yes"],
    )
    .await;
    (cluster, out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_diverging_hash_stops_before_any_restart_and_names_the_pod() {
    let (cluster, out) = rotate(Faults {
        diverge_hash_on: Some("sdkms-2".into()),
        ..Faults::default()
    })
    .await;
    assert_eq!(out.code, 1, "{out}");
    let failure = &out.json()["failure"];
    assert_eq!(failure["step"], "verify-distributed", "{out}");
    assert!(
        failure["reason"].as_str().unwrap().contains("sdkms-2"),
        "{out}"
    );
    assert_eq!(failure["safe_to_resume"], true);
    // The report counts the pods the run saw, even though the procedure failed.
    assert_eq!(out.json()["pods"], 3, "{out}");
    assert_no_restart_no_activate(&cluster.oracle());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_fetch_stops_before_any_restart() {
    let (cluster, out) = rotate(Faults {
        fail_fetch_on: Some("sdkms-1".into()),
        ..Faults::default()
    })
    .await;
    assert_eq!(out.code, 1, "{out}");
    let failure = &out.json()["failure"];
    assert_eq!(failure["step"], "distribute", "{out}");
    assert!(
        failure["reason"].as_str().unwrap().contains("sdkms-1"),
        "{out}"
    );
    let oracle = cluster.oracle();
    assert_no_restart_no_activate(&oracle);
    // The failed fetch was not blindly retried.
    let on_failing: Vec<_> = oracle
        .calls
        .iter()
        .filter(|c| c.pod == "sdkms-1" && c.path.ends_with("/fetch"))
        .collect();
    assert_eq!(on_failing.len(), 1, "{on_failing:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_first_restart_stops_before_activate() {
    let (cluster, out) = rotate(Faults {
        fail_restart: Some(1),
        ..Faults::default()
    })
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(out.json()["failure"]["step"], "restart-load", "{out}");
    let oracle = cluster.oracle();
    assert_eq!(oracle.restarts.len(), 1);
    assert!(!oracle.restarts[0].ok);
    assert!(oracle.activates().is_empty(), "no activate");
    assert_eq!(oracle.version, 1);
    assert!(oracle.broken_pods().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_up_503s_after_every_restart_are_ridden_out() {
    let (cluster, out) = rotate(Faults {
        warmup_503: 3,
        ..Faults::default()
    })
    .await;
    assert_eq!(out.code, 0, "{out}");
    let oracle = cluster.oracle();
    assert!(
        oracle.calls.iter().any(|c| c.status == 503),
        "the fault fired: some reads saw 503"
    );
    assert_rotated_once(&oracle, 3);
}
