//! The whole rotation, end to end: the real binary, the real component, the
//! simulated cluster; asserted on the simulator's oracle.

use cmk_tests::{Cluster, ROTATE_WASM, assert_rotated_once, run, run_on_a_terminal};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

async fn rotate_with_run(pods: usize) {
    let cluster = Cluster::pods(pods).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let component = cluster.signed(ROTATE_WASM);
    let out = run(
        BIN,
        &["run", &component, "--site", &site, "--json", "--yes"],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let report = out.json();
    assert_eq!(report["outcome"], "done", "{out}");
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
    assert_eq!(json["report"]["outcome"], "done", "{out}");
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
    let component = cluster.signed(ROTATE_WASM);
    let out = run(
        BIN,
        &["run", &component, "--site", &site, "--plan", "--json"],
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

/// `cmk-host sim` as an operator uses it: a separate process that writes a site file;
/// `cmk-host run` against that file; the oracle read back with the `curl` command
/// that `sim` prints; Ctrl-C stops it.
#[tokio::test(flavor = "multi_thread")]
async fn run_against_the_files_that_sim_writes() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap().to_string();
    let mut sim = tokio::process::Command::new(BIN)
        .args(["sim", "--pods", "3", "--dir", &dir_arg])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
    let mut oracle_cmd = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(cmd) = line.strip_prefix("oracle: ") {
            oracle_cmd = Some(cmd.to_string());
        }
        if line.contains("Ctrl-C stops the cluster") {
            break;
        }
    }
    let oracle_cmd = oracle_cmd.expect("sim prints how to read its oracle");

    let component = dir.path().join("rotate.wasm");
    let site = dir.path().join("site.toml");
    let out = run(
        BIN,
        &[
            "run",
            component.to_str().unwrap(),
            "--site",
            site.to_str().unwrap(),
            "--json",
            "--yes",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");

    let curl = tokio::process::Command::new("sh")
        .args(["-c", &format!("{oracle_cmd} -sS --fail")])
        .output()
        .await
        .unwrap();
    assert!(
        curl.status.success(),
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    let oracle: cmk_sim::Oracle = serde_json::from_slice(&curl.stdout).expect("oracle JSON");
    assert_rotated_once(&oracle, 3);

    let pid = sim.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), sim.wait())
        .await
        .expect("sim stops on Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status}");
}

/// Quiet by default on a terminal: the steps and the summary, no INFO lines (the
/// restart script's output among them); `-v` brings them back, `-q` keeps only the
/// summary, and `--log-file` gets the INFO lines whatever the terminal shows.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_terminal_the_default_is_steps_and_summary_and_v_q_log_file_adjust_it() {
    let cluster = Cluster::pods(3).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let component = cluster.signed(ROTATE_WASM);
    let log = cluster.dir().join("run.log");
    let log_arg = log.to_str().unwrap().to_string();
    let (code, screen) = run_on_a_terminal(
        BIN,
        &[
            "run",
            &component,
            "--site",
            &site,
            "--yes",
            "--log-file",
            &log_arg,
        ],
        "",
    )
    .await;
    assert_eq!(code, 0, "{screen}");
    assert!(
        !screen.contains(" INFO "),
        "no INFO lines by default: {screen}"
    );
    for shown in [
        "preflight done",
        "verify-activated done",
        "cluster \"sim\": done",
    ] {
        assert!(screen.contains(shown), "shows {shown}: {screen}");
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(" INFO ") && logged.contains("verified"),
        "the log file has the INFO lines: {logged}"
    );
    assert!(!logged.contains('\u{1b}'), "no colour in the log file");

    let again = [
        "run",
        &component,
        "--site",
        &site,
        "--yes",
        "--param",
        "new_rotation=true",
    ];
    let (code, screen) = run_on_a_terminal(BIN, &[&again[..], &["-v"]].concat(), "").await;
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("INFO"), "-v shows INFO: {screen}");

    let (code, screen) = run_on_a_terminal(BIN, &[&again[..], &["-q"]].concat(), "").await;
    assert_eq!(code, 0, "{screen}");
    assert!(
        !screen.contains("preflight done"),
        "-q: no step lines: {screen}"
    );
    assert!(
        screen.contains("version:  3 -> 4"),
        "-q keeps the summary: {screen}"
    );
    assert_eq!(cluster.oracle().version, 4);
}
