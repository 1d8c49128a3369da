//! `[restart] kind = "kubernetes"`: the rotation's rolling restarts as rollouts
//! through the simulator's Kubernetes API server (a patch of the pod template, then
//! the wait on the workload's status), passing the same oracle checks as the
//! restart by command.

use cmk_sim::{Faults, Oracle, SimConfig, WorkloadKind};
use cmk_tests::{Cluster, ROTATE_WASM, assert_rotated_once, run};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

/// The generated site with its `[restart]` replaced by a rollout of `workload`.
fn rollout_site(cluster: &Cluster, workload: &str) -> String {
    let path = cluster.site_with("rollout.toml", |s| {
        cmk_tests::replace_restart(
            &s,
            &format!("[restart]\nkind = \"kubernetes\"\nworkload = \"{workload}\"\ntimeout_secs = 120\n\n"),
        )
    });
    path.to_str().unwrap().to_string()
}

async fn rotate_by_rollout(kind: WorkloadKind, workload: &str) {
    rotate_by_rollout_with(kind, workload, Faults::default()).await;
}

/// Rotates by rollouts of `workload`; returns the oracle.
async fn rotate_by_rollout_with(kind: WorkloadKind, workload: &str, faults: Faults) -> Oracle {
    let cluster = Cluster::start(SimConfig {
        workload: kind,
        faults,
        ..SimConfig::pods(3)
    })
    .await;
    let site = rollout_site(&cluster, workload);
    let before: Vec<_> = cluster.sim.pod_ips();
    let component = cluster.signed(ROTATE_WASM);
    let out = run(
        BIN,
        &["run", &component, "--site", &site, "--json", "--yes"],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stderr.contains("rollout restart started"), "{out}");
    assert!(out.stderr.contains("rollout complete"), "{out}");
    assert_rotated_once(&cluster.oracle(), 3);
    // The rollouts replaced every pod with a new IP, as the script does.
    let after = cluster.sim.pod_ips();
    for ((name, old), (_, new)) in before.iter().zip(&after) {
        assert_ne!(old, new, "{name} kept its IP");
    }
    cluster.oracle()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_is_followed_by_a_watch_not_by_reading_the_workload() {
    let oracle = rotate_by_rollout_with(
        WorkloadKind::StatefulSet,
        "statefulset/sdkms",
        Faults::default(),
    )
    .await;
    assert_eq!(oracle.workload_reads, 0, "the status came by watch");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_without_watch_still_rotates_by_reading_the_workload() {
    let faults = Faults {
        refuse_watch: true,
        ..Faults::default()
    };
    let oracle = rotate_by_rollout_with(WorkloadKind::Deployment, "deployment/sdkms", faults).await;
    assert!(
        oracle.workload_reads >= 2,
        "read each rollout's status: {oracle:?}"
    );
}

/// An API server whose watches fail (500): each rollout is followed by reading the
/// workload, and the watch is tried again only after a pause, never in a tight
/// loop. Two rollouts of a few hundred ms each leave room for a handful of tries;
/// a client that retried at once would make thousands.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_watch_is_retried_after_a_pause_and_the_rollout_still_followed() {
    let faults = Faults {
        fail_watch: true,
        ..Faults::default()
    };
    let oracle =
        rotate_by_rollout_with(WorkloadKind::StatefulSet, "statefulset/sdkms", faults).await;
    assert!(
        oracle.workload_reads >= 2,
        "read each rollout's status: {oracle:?}"
    );
    assert!(
        (2..=20).contains(&oracle.watch_requests),
        "watched again only after a pause: {} watch requests",
        oracle.watch_requests
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_restarts_a_statefulset_by_rollout() {
    rotate_by_rollout(WorkloadKind::StatefulSet, "statefulset/sdkms").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_restarts_a_deployment_by_rollout() {
    rotate_by_rollout(WorkloadKind::Deployment, "deployment/sdkms").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_of_a_missing_workload_fails_before_activation() {
    let cluster = Cluster::pods(2).await;
    let site = rollout_site(&cluster, "deployment/sdkms");
    let component = cluster.signed(ROTATE_WASM);
    let out = run(
        BIN,
        &["run", &component, "--site", &site, "--json", "--yes"],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    let failure = &out.json()["failure"];
    assert_eq!(failure["step"], "restart-load", "{out}");
    assert!(
        failure["reason"]
            .as_str()
            .unwrap()
            .contains("cannot restart deployment/sdkms"),
        "{out}"
    );
    let oracle = cluster.oracle();
    assert!(oracle.restarts.is_empty(), "no restart ran");
    assert!(oracle.activates().is_empty(), "nothing activated");
    assert_eq!(oracle.version, 1);
}
