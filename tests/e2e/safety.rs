//! Safe rotation: the host killed at every step boundary and inside the fetch batch
//! and each restart, the point of no return, reruns. Asserted on the oracle: a
//! rerun completes the rotation with exactly one proposal distributed, exactly one
//! activation, and no pod broken.

use std::time::Duration;

use cmk_sim::{Oracle, SimConfig};
use cmk_tests::{
    Cluster, ROTATE_WASM, assert_completed_once, assert_rotated_once, interrupt_when, run, settle,
    spawn,
};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

/// Slow enough restarts that a kill can land inside one.
async fn cluster(pods: usize) -> Cluster {
    Cluster::start(SimConfig {
        restart_step_delay: Duration::from_millis(80),
        ..SimConfig::pods(pods)
    })
    .await
}

fn site(cluster: &Cluster) -> String {
    cluster.site().to_str().unwrap().to_string()
}

/// Starts a rotation, SIGKILLs the host when `moment` shows on the oracle, waits
/// for the cluster to settle, runs again, and asserts the rotation completed once.
async fn crash_then_rerun(pods: usize, moment: impl Fn(&Oracle) -> bool, must_land: bool) {
    let cluster = cluster(pods).await;
    let site = site(&cluster);
    let mut child = spawn(BIN, &["run", ROTATE_WASM, "--site", &site, "--yes"]);
    let (killed, code) = interrupt_when(&mut child, &cluster, "KILL", moment).await;
    if must_land {
        assert!(killed, "the run ended (exit {code:?}) before the moment");
    }
    settle(&cluster).await;
    let out = run(
        BIN,
        &["run", ROTATE_WASM, "--site", &site, "--yes", "--json"],
    )
    .await;
    assert_eq!(out.code, 0, "the rerun completes: {out}");
    assert_completed_once(&cluster.oracle(), pods);
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_right_after_propose() {
    crash_then_rerun(3, |o| !o.proposes().is_empty(), true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_in_the_middle_of_the_fetch_batch() {
    crash_then_rerun(6, |o| !o.fetches().is_empty(), true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_in_the_middle_of_the_first_restart() {
    crash_then_rerun(
        3,
        |o| o.restart_in_progress() && o.restarts_started == 1,
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_right_after_the_first_restart() {
    crash_then_rerun(3, |o| o.restarts.len() == 1, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_right_after_activate() {
    crash_then_rerun(3, |o| !o.activates().is_empty(), true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_in_the_middle_of_the_second_restart() {
    crash_then_rerun(
        3,
        |o| o.restart_in_progress() && o.restarts_started == 2,
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_right_after_the_second_restart() {
    // The run may finish its last verification before the kill lands: either way
    // the rerun must end with one rotation.
    crash_then_rerun(3, |o| o.restarts.len() == 2, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_terminal_or_yes_it_stops_before_activate_and_yes_resumes() {
    let cluster = Cluster::pods(3).await;
    let site = site(&cluster);
    let out = run(BIN, &["run", ROTATE_WASM, "--site", &site]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout.contains("run the same command again with --yes"),
        "says how to resume: {out}"
    );
    let o = cluster.oracle();
    assert!(o.activates().is_empty(), "nothing activated: {o:#?}");
    assert_eq!(o.restarts.len(), 1, "stopped after the first restart");
    assert!(o.broken_pods().is_empty());

    let out = run(
        BIN,
        &["run", ROTATE_WASM, "--site", &site, "--yes", "--json"],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let steps: Vec<(String, String)> = out.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(steps[4], ("restart-load".into(), "skipped".into()));
    assert_eq!(steps[6], ("activate".into(), "done".into()));
    // One restart after distribution, one after activation: the journal said the
    // first one had completed.
    assert_rotated_once(&cluster.oracle(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_after_success_does_not_rotate_again() {
    let cluster = Cluster::pods(2).await;
    let site = site(&cluster);
    let out = run(BIN, &["run", ROTATE_WASM, "--site", &site, "--yes"]).await;
    assert_eq!(out.code, 0, "{out}");
    let mutations = cluster.oracle().mutations().len();

    let out = run(
        BIN,
        &["run", ROTATE_WASM, "--site", &site, "--yes", "--json"],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stderr.contains("already rotated to version 2"), "{out}");
    let o = cluster.oracle();
    assert_eq!(o.mutations().len(), mutations, "nothing sent: {o:#?}");
    assert_eq!(o.restarts.len(), 2);
    assert_rotated_once(&o, 2);

    let out = run(
        BIN,
        &[
            "run",
            ROTATE_WASM,
            "--site",
            &site,
            "--yes",
            "--param",
            "new_rotation=true",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(cluster.oracle().version, 3, "rotated again when asked");
}
