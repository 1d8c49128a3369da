//! Safe rotation: the host killed at every step boundary and inside the fetch batch
//! and each restart, the point of no return, reruns. Asserted on the oracle: a
//! rerun completes the rotation with exactly one proposal distributed, exactly one
//! activation, and no pod broken.

use std::time::Duration;

use cmk_sim::{Oracle, SimConfig};
use cmk_tests::{
    Cluster, ROTATE_WASM, assert_completed_once, assert_no_restart_no_activate,
    assert_rotated_once, interrupt_when, run, run_on_a_terminal, settle, spawn,
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

/// The request limit (`[http] timeout_secs`) of the lost-answer tests: short, so
/// that they do not wait out the default 30 s.
const HTTP_TIMEOUT_SECS: u64 = 2;
/// How long the simulator holds a lost answer: past [`HTTP_TIMEOUT_SECS`], so the
/// host gives up on a change that has landed.
const LOST_ANSWER_MS: u64 = 2 * HTTP_TIMEOUT_SECS * 1000;

/// A site variant whose requests time out after [`HTTP_TIMEOUT_SECS`].
fn short_http_timeout_site(cluster: &Cluster) -> String {
    let site = cluster.site_with("http-timeout.toml", |t| {
        format!("{t}\n[http]\ntimeout_secs = {HTTP_TIMEOUT_SECS}\n")
    });
    site.to_str().unwrap().to_string()
}

/// Starts a rotation, SIGKILLs the host when `moment` shows on the oracle, waits
/// for the cluster to settle, runs again, and asserts the rotation completed once.
async fn crash_then_rerun(pods: usize, moment: impl Fn(&Oracle) -> bool, must_land: bool) {
    let cluster = cluster(pods).await;
    let site = cluster.site_with("short-lease.toml", |t| {
        format!("{t}\n[lease]\nduration_secs = {LEASE_SECS}\n")
    });
    let site = site.to_str().unwrap();
    let mut child = spawn(
        BIN,
        &["run", &cluster.signed(ROTATE_WASM), "--site", site, "--yes"],
    );
    let (killed, code) = interrupt_when(&mut child, &cluster, "KILL", moment).await;
    if must_land {
        assert!(killed, "the run ended (exit {code:?}) before the moment");
    }
    settle(&cluster).await;
    // The killed run was a process of this host that no longer exists: the rerun
    // takes its Lease over at once (or, when settling took longer than the Lease,
    // as an expired one), saying so.
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            site,
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "the rerun completes: {out}");
    if must_land {
        assert!(
            out.stderr
                .contains("an earlier rotation was interrupted: this run resumes it"),
            "preflight reports the interrupted rotation: {out}"
        );
    }
    if killed {
        assert!(
            (out.stderr.contains("taking over the Lease at once")
                && out.stderr.contains("no longer exists"))
                || out.stderr.contains("taking over an expired Lease"),
            "the rerun takes the dead run's Lease over, saying so: {out}"
        );
    }
    assert_completed_once(&cluster.oracle(), pods);
}

/// A killed host cannot release its Lease; a short one bounds what a rerun from
/// another host would wait.
const LEASE_SECS: u64 = 2;

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
    let out = run(BIN, &["run", &cluster.signed(ROTATE_WASM), "--site", &site]).await;
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
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            &site,
            "--yes",
            "--json",
        ],
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
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            &site,
            "--yes",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let mutations = cluster.oracle().mutations().len();

    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            &site,
            "--yes",
            "--json",
        ],
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
            &cluster.signed(ROTATE_WASM),
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

#[tokio::test(flavor = "multi_thread")]
async fn two_runs_at_once_one_proceeds_the_other_names_the_holder() {
    let cluster = Cluster::pods(3).await;
    let site = site(&cluster);
    let args = [
        "run",
        &cluster.signed(ROTATE_WASM),
        "--site",
        &site,
        "--yes",
    ];
    let a = spawn(BIN, &args);
    let b = spawn(BIN, &args);
    let pids = [a.id().unwrap(), b.id().unwrap()];
    let (a, b) = tokio::join!(a.wait_with_output(), b.wait_with_output());
    let outs = [a.unwrap(), b.unwrap()];
    let codes: Vec<i32> = outs.iter().map(|o| o.status.code().unwrap_or(-1)).collect();
    let winner = codes
        .iter()
        .position(|c| *c == 0)
        .expect("one run succeeds");
    let loser = 1 - winner;
    assert_eq!(codes[loser], 1, "the other exits 1");
    let stderr = String::from_utf8_lossy(&outs[loser].stderr);
    assert!(
        stderr.contains("another run holds the cluster")
            && stderr.contains(&format!("/{}/", pids[winner]))
            && stderr.contains(" since "),
        "names the holder (host/pid/run) and since when: {stderr}"
    );
    assert_rotated_once(&cluster.oracle(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_at_a_safe_point_releases_the_lease_and_a_rerun_completes() {
    let cluster = cluster(3).await;
    let site = site(&cluster);
    let mut child = spawn(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            &site,
            "--yes",
        ],
    );
    let (sent, code) = interrupt_when(&mut child, &cluster, "INT", |o| {
        o.restart_in_progress() && o.restarts_started == 1
    })
    .await;
    assert!(sent, "interrupted during the first restart");
    assert_eq!(code, Some(1), "exit 1");
    let o = cluster.oracle();
    assert_eq!(o.restarts.len(), 1, "the restart under way completed");
    assert!(o.restarts[0].ok);
    assert!(
        o.activates().is_empty(),
        "no activate after the interrupt: {o:#?}"
    );
    assert!(o.broken_pods().is_empty());

    // The Lease (60 s by default) was released: a rerun starts at once.
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            &site,
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.stderr.contains("expired Lease"), "{out}");
    assert_rotated_once(&cluster.oracle(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_is_enforced_by_the_host_even_for_a_component_that_ignores_it() {
    use cmk_tests::PROBE_WASM;
    let cluster = Cluster::pods(2).await;
    let site = site(&cluster);
    let (_, ip) = cluster.sim.pod_ips().remove(0);
    let requests = format!(
        "requests=GET https://{ip}:4444/cluster/v1/key|POST https://{ip}:4444/cluster/v1/key/propose"
    );
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(PROBE_WASM),
            "--site",
            &site,
            "--plan",
            "--json",
            "--param",
            "list_pods=true",
            "--param",
            &requests,
            "--param",
            "restart=true",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let o = cluster.oracle();
    assert!(o.mutations().is_empty(), "no POST reached a pod: {o:#?}");
    assert!(
        o.restarts.is_empty() && o.restarts_started == 0,
        "no restart"
    );
    assert_eq!(o.calls.len(), 1, "the GET was executed");
    let planned: Vec<String> = out.json()["planned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        planned,
        [
            format!("POST https://{ip}:4444/cluster/v1/key/propose"),
            "rolling-restart".to_string()
        ]
    );
}

/// `[cluster] expect_pods` is the host's check (the gate refuses every mutating call
/// while the latest pod list has another count), no longer a parameter injected into
/// the procedure: the rotation reads the pods at preflight, and its first change is
/// refused, with both counts.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_with_another_number_of_pods_than_expect_pods_is_not_changed() {
    let cluster = Cluster::pods(3).await;
    let site = cluster.site_with("expect-4.toml", |t| {
        t.replace("port = 4444\n", "port = 4444\nexpect_pods = 4\n")
    });
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            site.to_str().unwrap(),
            "--yes",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("expected 4 pods ([cluster] expect_pods), the selector matches 3"),
        "{out}"
    );
    let oracle = cluster.oracle();
    assert!(oracle.mutations().is_empty(), "no POST: {oracle:#?}");
    assert_no_restart_no_activate(&oracle);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_loses_its_lease_stops_before_its_next_change() {
    let cluster = Cluster::start(SimConfig {
        restart_step_delay: Duration::from_millis(200),
        ..SimConfig::pods(3)
    })
    .await;
    let site = cluster.site_with("lease-1s.toml", |t| {
        format!("{t}\n[lease]\nduration_secs = 1\n")
    });
    let child = spawn(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            site.to_str().unwrap(),
            "--yes",
            "--json",
        ],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !(cluster.oracle().restart_in_progress()) {
        assert!(tokio::time::Instant::now() < deadline, "no restart started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        cluster
            .sim
            .take_lease("sdkms", "cmk-host-rotation", "someone-else/1/x")
    );
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        report["stopped"]
            .as_str()
            .unwrap()
            .contains("lost the Lease cmk-host-rotation to \"someone-else/1/x\""),
        "{report:#}"
    );
    let o = cluster.oracle();
    assert!(
        o.activates().is_empty(),
        "no activate after losing the Lease: {o:#?}"
    );
    assert!(o.broken_pods().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_terminal_the_operator_confirms_activate_after_seeing_what_it_does() {
    let cluster = Cluster::pods(2).await;
    let site = site(&cluster);
    let (code, screen) = run_on_a_terminal(
        BIN,
        &["run", &cluster.signed(ROTATE_WASM), "--site", &site],
        "yes\n",
    )
    .await;
    assert_eq!(code, 0, "{screen}");
    for shown in [
        "About to activate the new cluster master key",
        "cluster: sim",
        "proposal hash: ",
        "versions: version 1 -> 2",
        "sdkms-0 (",
    ] {
        assert!(screen.contains(shown), "shows {shown:?}: {screen}");
    }
    assert_rotated_once(&cluster.oracle(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_terminal_any_answer_but_yes_stops_before_activate() {
    let cluster = Cluster::pods(2).await;
    let site = site(&cluster);
    let (code, screen) = run_on_a_terminal(
        BIN,
        &["run", &cluster.signed(ROTATE_WASM), "--site", &site],
        "no\n",
    )
    .await;
    assert_eq!(code, 1, "{screen}");
    assert!(screen.contains("declined by the operator"), "{screen}");
    let o = cluster.oracle();
    assert!(o.activates().is_empty(), "{o:#?}");
    assert!(o.broken_pods().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_activate_whose_answer_is_lost_is_finished_by_the_rerun_not_repeated() {
    // The pod applies activate but answers after the site's request limit.
    let cluster = Cluster::start(SimConfig {
        faults: cmk_sim::Faults {
            slow_answer: Some(("/cluster/v1/key/activate".into(), LOST_ANSWER_MS)),
            ..cmk_sim::Faults::default()
        },
        ..SimConfig::pods(3)
    })
    .await;
    let site = short_http_timeout_site(&cluster);
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            &site,
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    let failure = &out.json()["failure"];
    assert_eq!(failure["step"], "activate", "{out}");
    assert!(
        failure["reason"].as_str().unwrap().contains("timeout"),
        "{out}"
    );
    assert_eq!(
        failure["safe_to_resume"], false,
        "it may have landed: {out}"
    );
    assert_eq!(cluster.oracle().activates().len(), 1, "it did land");

    cluster.sim.set_faults(cmk_sim::Faults::default());
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            &site,
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert_rotated_once(&cluster.oracle(), 3);
}

/// A mutating call to `path` lands but its answer comes after the site's request
/// limit: the run stops at `step`, safe; the rerun finishes from what the pods show.
async fn lost_answer_then_rerun(path: &str, step: &str) {
    let cluster = Cluster::start(SimConfig {
        faults: cmk_sim::Faults {
            slow_answer: Some((path.into(), LOST_ANSWER_MS)),
            ..cmk_sim::Faults::default()
        },
        ..SimConfig::pods(3)
    })
    .await;
    let site = short_http_timeout_site(&cluster);
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            &site,
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    let failure = &out.json()["failure"];
    assert_eq!(failure["step"], step, "{out}");
    assert_eq!(failure["safe_to_resume"], true, "{out}");
    assert!(
        cluster.oracle().restarts.is_empty(),
        "stopped before any restart"
    );

    cluster.sim.set_faults(cmk_sim::Faults::default());
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            &site,
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert_rotated_once(&cluster.oracle(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_propose_whose_answer_is_lost_is_adopted_by_the_rerun_not_repeated() {
    lost_answer_then_rerun("/cluster/v1/key/propose", "propose").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fetches_whose_answers_are_lost_are_not_repeated_by_the_rerun() {
    lost_answer_then_rerun("/cluster/v1/key/fetch", "distribute").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_that_times_out_stops_before_activate_and_the_rerun_restarts_again() {
    let cluster = Cluster::start(SimConfig {
        restart_step_delay: Duration::from_millis(400),
        ..SimConfig::pods(3)
    })
    .await;
    let site = cluster.site_with("restart-1s.toml", |t| {
        t.replace("timeout_secs = 120", "timeout_secs = 1")
    });
    let site = site.to_str().unwrap();
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            site,
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    let failure = &out.json()["failure"];
    assert_eq!(failure["step"], "restart-load", "{out}");
    assert!(
        failure["reason"].as_str().unwrap().contains("timeout"),
        "{out}"
    );
    assert_eq!(failure["safe_to_resume"], true, "{out}");
    assert!(cluster.oracle().activates().is_empty());

    settle(&cluster).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            &site,
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert_completed_once(&cluster.oracle(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_left_by_a_dead_process_of_this_host_is_taken_over_at_once() {
    let cluster = Cluster::pods(3).await;
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let holder = format!("{}/{pid}/crashed-run", host.trim());
    // Renewed just now for ten minutes: only the dead pid lets a run take it.
    cluster
        .sim
        .hold_lease("sdkms", "cmk-host-rotation", &holder, 600);

    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            &site(&cluster),
            "--yes",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains(&holder) && out.stderr.contains("no longer exists"),
        "says whose Lease it took over and why: {out}"
    );
    assert_rotated_once(&cluster.oracle(), 3);

    // A live holder elsewhere still blocks.
    cluster
        .sim
        .hold_lease("sdkms", "cmk-host-rotation", "other-host/1/run", 600);
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            &site(&cluster),
            "--yes",
            "--param",
            "new_rotation=true",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("another run holds the cluster"),
        "{out}"
    );
}

/// The restart command outlives a host that is killed (its own process group, so
/// that no signal stops a restart half-way), and the next run takes the dead run's
/// Lease over at once. That run must not read the cluster while the orphaned
/// command may still replace pods: it waits for the command the dead run recorded,
/// saying so, and only then observes and finishes the rotation, which that command
/// completed (it writes its output to a file, so the dead host's pipe cannot end it
/// at its next line). Without the wait a
/// rerun could report the rotation done while pods were still being replaced (the
/// occasional failure of `killed_right_after_activate` in CI).
#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_waits_for_the_restart_command_a_killed_run_left_running() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = cluster(3).await;
    // The restart takes a while to reach the cluster, as a real script's checks do.
    let slow = cluster.dir().join("slow-restart.sh");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\nsleep 3\nexec '{}'\n",
            cluster.dir().join("restart.sh").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let site = cluster.site_with("slow-restart.toml", |t| {
        cmk_tests::replace_restart(
            &t,
            &format!(
                "[restart]\ncommand = [\"{}\"]\ntimeout_secs = 120\n\n",
                slow.display()
            ),
        )
    });
    let site = site.to_str().unwrap();
    let component = cluster.signed(ROTATE_WASM);
    let record = cluster.dir().join("state/restart/sim.pid");
    let mut child = spawn(BIN, &["run", &component, "--site", site, "--yes"]);
    // Killed once it activated and started the second restart's command.
    let (killed, code) = interrupt_when(&mut child, &cluster, "KILL", |o| {
        !o.activates().is_empty() && record.exists()
    })
    .await;
    assert!(killed, "the run ended (exit {code:?}) before the moment");

    let out = run(BIN, &["run", &component, "--site", site, "--yes", "--json"]).await;
    assert_eq!(out.code, 0, "the rerun completes: {out}");
    assert!(
        out.stderr
            .contains("a restart command started by an earlier run is still running"),
        "{out}"
    );
    // Done when the rerun says so: no restart still going, every pod on the new key.
    let oracle = cluster.oracle();
    assert!(!oracle.restart_in_progress(), "{oracle:#?}");
    assert_completed_once(&oracle, 3);
    assert!(!record.exists(), "the record is gone");
    // The killed run's command outlived it and made the second restart, its output
    // going on to a file rather than a pipe to the dead host; the rerun made none.
    assert_eq!(oracle.restarts.len(), 2, "{oracle:#?}");
    let rerun = out.json()["run_id"].as_str().unwrap().to_string();
    let rerun_restarts: Vec<_> = cluster
        .audit_records()
        .into_iter()
        .filter(|r| r["run_id"] == rerun.as_str() && r["capability"] == "restart")
        .collect();
    assert!(rerun_restarts.is_empty(), "{rerun_restarts:#?}");
    let output = std::fs::read_to_string(cluster.dir().join("state/restart/sim.out")).unwrap();
    assert!(output.contains("cmk-sim: rolling restart via"), "{output}");
}
