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

/// A cluster whose pods listen on 4445: the site's `[cluster] port` is what the
/// procedure is given, so the rotation reaches the pods there without `--param`.
#[tokio::test(flavor = "multi_thread")]
async fn the_site_port_reaches_the_procedure() {
    let cluster = cmk_tests::Cluster::start(cmk_sim::SimConfig {
        port: 4445,
        ..cmk_sim::SimConfig::pods(3)
    })
    .await;
    let text = std::fs::read_to_string(cluster.site()).unwrap();
    assert!(text.contains("port = 4445"), "{text}");
    assert!(!text.contains("[params]"), "no port parameter: {text}");
    let site = cluster.site().to_str().unwrap().to_string();
    let component = cluster.signed(ROTATE_WASM);
    let out = run(
        BIN,
        &["run", &component, "--site", &site, "--json", "--yes"],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.json()["denials"].as_array().unwrap().is_empty(),
        "{out}"
    );
    let oracle = cluster.oracle();
    let proposer = &oracle.proposes()[0].ip;
    let fetches = oracle.fetches();
    assert_eq!(fetches.len(), 2, "{oracle:#?}");
    for fetch in fetches {
        assert_eq!(
            fetch.body.as_ref().unwrap()["target"],
            format!("{proposer}:4445"),
            "the proposer at the site's port"
        );
    }
    assert_eq!(oracle.version, 2);
    assert!(oracle.pods.iter().all(|p| p.running_version == 2));
    assert!(oracle.broken_pods().is_empty());
}

/// `--param port=` (and `[params] port`) still override the site's port: here to
/// one the allow-list does not permit, so the host denies every request and the
/// cluster receives nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_port_parameter_still_overrides_the_site_port() {
    let cluster = cmk_tests::Cluster::start(cmk_sim::SimConfig {
        port: 4445,
        ..cmk_sim::SimConfig::pods(3)
    })
    .await;
    let site = cluster.site().to_str().unwrap().to_string();
    let component = cluster.signed(ROTATE_WASM);
    let out = run(
        BIN,
        &[
            "run",
            &component,
            "--site",
            &site,
            "--json",
            "--yes",
            "--param",
            "port=4446",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    let denials = out.json()["denials"].clone();
    assert!(
        denials
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["target"].as_str().unwrap().contains(":4446/")),
        "{out}"
    );
    assert!(cluster.oracle().calls.is_empty(), "nothing reached a pod");
}

/// Every string of `value` that names a file on this machine: an absolute path whose
/// first component exists here (`/tmp/...`), unlike the oracle's URL paths
/// (`/cluster/v1/key`).
fn file_paths(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => {
            let path = std::path::Path::new(s);
            let first = path
                .components()
                .nth(1)
                .map(|c| std::path::Path::new("/").join(c));
            if path.is_absolute() && first.is_some_and(|f| f.exists()) {
                out.push(s.clone());
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| file_paths(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| file_paths(v, out)),
        _ => {}
    }
}

/// `demo --json` deletes its simulator's directory when it ends: the document names
/// none of the files that were in it (the site file, the audit trail).
#[tokio::test(flavor = "multi_thread")]
async fn demo_json_names_only_files_that_exist() {
    let out = run(BIN, &["demo", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let json = out.json();
    let mut paths = Vec::new();
    file_paths(&json, &mut paths);
    for path in &paths {
        assert!(
            std::path::Path::new(path).exists(),
            "the demo's JSON names {path}, which does not exist:\n{json:#}"
        );
    }
    assert!(json["report"].get("audit_path").is_none(), "{json:#}");
    assert_eq!(json["report"]["outcome"], "done");
}
