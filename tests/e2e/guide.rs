//! `docs/writing-procedures.md`, kept honest: its example (`examples/hello-procedure`,
//! built by `tests/build.rs` with the guide's own `cargo build` command line) is
//! signed with a fresh key, trusted in a simulated cluster's site, and run; and the
//! guide's `sh` blocks are run as written, against `cmk-host sim`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use cmk_tests::{CACHE_HOME, Cluster, HELLO_WASM, Signer, run};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");
const GUIDE: &str = include_str!("../../docs/writing-procedures.md");

#[tokio::test(flavor = "multi_thread")]
async fn the_example_is_signed_with_a_fresh_key_trusted_and_runs() {
    let cluster = Cluster::pods(3).await;
    let team = Signer::generate(cluster.dir(), "team");
    cluster.trust(&team, r#"capabilities = ["pods", "log"]"#);
    let hello = team.sign(HELLO_WASM, &cluster.dir().join("hello.signed.wasm"));
    let site = cluster.site().to_str().unwrap();

    let out = run(
        BIN,
        &[
            "run",
            &hello,
            "--site",
            site,
            "--param",
            "greeting=hi",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let report = out.json();
    assert_eq!(report["signer"], "team");
    assert_eq!(report["key_id"], team.key_id.as_str());
    assert_eq!(report["pods"], 3);
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{out}");
    assert_eq!(steps[0]["name"], "hello");
    assert_eq!(steps[0]["outcome"], "done");
    assert_eq!(steps[0]["detail"], "hi, sdkms-0, sdkms-1, sdkms-2");
    assert!(report["denials"].as_array().unwrap().is_empty(), "{out}");
    for pod in ["sdkms-0", "sdkms-1", "sdkms-2"] {
        assert!(
            out.stderr.contains(&format!("greeted pod={pod}")),
            "its log lines: {out}"
        );
    }

    // A typo in a parameter: the procedure's failure, exit 1, naming it.
    let out = run(
        BIN,
        &["run", &hello, "--site", site, "--param", "greting=hi"],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("unknown parameter `greting`"), "{out}");

    assert!(
        cluster.oracle().calls.is_empty(),
        "the example never contacts a pod"
    );
}

/// The guide's fenced blocks with the info string `sh`, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unterminated block in the guide");
    blocks
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guides_commands_run_as_written() {
    let blocks = sh_blocks(GUIDE);
    let (sim, commands): (Vec<&String>, Vec<&String>) = blocks
        .iter()
        .partition(|b| b.trim_start().starts_with("cmk-host sim "));
    assert_eq!(sim.len(), 1, "one block starts the simulator: {blocks:#?}");
    assert!(commands.len() >= 4, "{blocks:#?}");

    // The working directory of the guide is the workspace root: put the example
    // where its `cargo build` line leaves it.
    let dir = tempfile::tempdir().unwrap();
    let built = dir.path().join("target/wasm32-wasip2/release");
    std::fs::create_dir_all(&built).unwrap();
    std::fs::copy(HELLO_WASM, built.join("hello_procedure.wasm")).unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // The simulator runs until stopped ("in a second terminal"): its line, as written.
    let args: Vec<&str> = sim[0].split_whitespace().collect();
    let mut sim = Command::new(BIN)
        .args(&args[1..])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start cmk-host sim");
    let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("Ctrl-C stops the cluster") {
                return;
            }
        }
        panic!("cmk-host sim ended before it was up");
    })
    .await
    .expect("cmk-host sim up within a minute");

    let mut transcript = String::new();
    for block in commands {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", block])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("XDG_CACHE_HOME", CACHE_HOME)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the guide's block failed ({}):\n{block}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        );
        transcript.push_str(&format!("$ {block}{stdout}{stderr}"));
    }
    for expected in [
        "signed by team",
        "grants: pods, log",
        "kind       procedure",
        "verdict    runnable: every import is provided by this host",
        "✓ cluster \"sim\": done",
        "signed by: team",
        "hello done",
        "hi, sdkms-0, sdkms-1, sdkms-2",
        "\"detail\": \"hi, sdkms-0, sdkms-1, sdkms-2\"",
    ] {
        assert!(
            transcript.contains(expected),
            "no {expected:?} in:\n{transcript}"
        );
    }
    sim.start_kill().ok();
    let _ = sim.wait().await;
}
