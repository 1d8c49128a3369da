//! Hostile components against the sandbox: each attack of `guests/hostile` (and the
//! outside-world import of `guests/outside`) run by the real binary against a
//! simulated cluster, with small `[limits]` so that a limit is hit in seconds. Each
//! test asserts the outcome the limit guarantees, so it fails if the limit goes.

use std::time::{Duration, Instant};

use cmk_host::runtime::{RunOptions, Runtime};
use cmk_host::site::Site;
use cmk_tests::{Canary, Cluster, HOSTILE_WASM, OUTSIDE_WASM, PROBE_WASM, ROTATE_WASM, run};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

/// The generated site with `[limits]` added.
fn limited_site(cluster: &Cluster, limits: &str) -> String {
    let path = cluster.site_with("limited.toml", |s| format!("{s}\n[limits]\n{limits}\n"));
    path.to_str().unwrap().to_string()
}

/// Runs the hostile guest with `attack` and extra `--param`s, `--json`.
async fn attack(
    cluster: &Cluster,
    site: &str,
    attack: &str,
    params: &[&str],
) -> cmk_tests::Outcome {
    let component = cluster.signed(HOSTILE_WASM);
    let attack = format!("attack={attack}");
    let mut args = vec!["run", &component, "--site", site, "--param", &attack];
    for p in params {
        args.extend(["--param", p]);
    }
    args.push("--json");
    run(BIN, &args).await
}

/// The run was stopped: exit 1, failure at `component`, a reason containing `why`.
fn assert_stopped(out: &cmk_tests::Outcome, why: &str) {
    assert_eq!(out.code, 1, "{out}");
    let report = out.json();
    assert_eq!(report["outcome"], "failed", "{out}");
    assert_eq!(report["ended"], "trapped", "{out}");
    assert_eq!(report["failure"]["step"], "component", "{out}");
    let reason = report["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains(why), "reason {reason:?} lacks {why:?}");
    assert_eq!(report["failure"]["safe_to_resume"], false);
}

/// The one step a non-fatal attack reports: its detail.
fn detail(out: &cmk_tests::Outcome) -> String {
    assert_eq!(out.code, 0, "{out}");
    out.json()["steps"][0]["detail"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_component_is_stopped_at_the_wall_clock_limit() {
    let cluster = Cluster::pods(1).await;
    let site = limited_site(&cluster, "wall_clock_secs = 2");
    let started = Instant::now();
    let out = attack(&cluster, &site, "spin", &[]).await;
    assert_stopped(&out, "exceeded its wall-clock limit of 2s");
    // Stopped by the limit, not by the test harness's own bound.
    assert!(started.elapsed() < Duration::from_secs(30), "{out}");
    assert!(cluster.oracle().calls.is_empty());

    // The host still answers: the same binary runs the next component normally.
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(PROBE_WASM),
            "--site",
            &site,
            "--param",
            "list_pods=true",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
}

/// In one process: a runtime that stopped a spinning guest runs the next one.
#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_still_runs_after_a_spinning_component() {
    let cluster = Cluster::pods(1).await;
    let site = Site::load(std::path::Path::new(&limited_site(
        &cluster,
        "wall_clock_secs = 1",
    )))
    .unwrap();
    let runtime = Runtime::new().unwrap();
    let options = |params: Vec<(String, String)>| RunOptions {
        plan: false,
        params,
        limits: site.limits.clone(),
        grants: site.grants(),
        progress: std::sync::Arc::new(cmk_host::ui::Silent),
        state_dir: cluster.dir().join("state"),
        answerer: cmk_host::caps::confirm::Answerer::Nobody,
        stop: cmk_host::stop::Stop::default(),
        hooks: Vec::new(),
        signer: None,
        key_id: None,
        events: cmk_host::events::Events::default(),
    };
    let spin = runtime
        .load_checked(&std::fs::read(HOSTILE_WASM).unwrap())
        .unwrap();
    let report = runtime
        .run(
            &spin,
            &site,
            options(vec![("attack".into(), "spin".into())]),
        )
        .await
        .unwrap();
    assert_eq!(report.exit_code, 1);
    assert!(
        report.failure.unwrap().reason.contains("wall-clock limit"),
        "stopped by the limit"
    );

    let probe = runtime
        .load_checked(&std::fs::read(PROBE_WASM).unwrap())
        .unwrap();
    let report = runtime
        .run(
            &probe,
            &site,
            options(vec![("list_pods".into(), "true".into())]),
        )
        .await
        .unwrap();
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert_eq!(report.steps[0].detail, "ok 1 pods");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_growing_memory_is_stopped_at_the_memory_limit() {
    let cluster = Cluster::pods(1).await;
    let site = limited_site(&cluster, "memory_mib = 16");
    let out = attack(&cluster, &site, "grow-memory", &[]).await;
    assert_stopped(&out, "reached its memory limit of 16 MiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_recursing_without_end_is_trapped() {
    let cluster = Cluster::pods(1).await;
    let out = attack(&cluster, cluster.site().to_str().unwrap(), "recurse", &[]).await;
    assert_stopped(&out, "overflowed its stack limit of 512 KiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_calling_the_host_without_end_is_stopped_at_the_host_call_limit() {
    let cluster = Cluster::pods(1).await;
    let site = limited_site(&cluster, "host_calls = 200\nwall_clock_secs = 20");
    let out = attack(&cluster, &site, "host-calls", &[]).await;
    assert_stopped(&out, "more than 200 host calls");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_component_fails_with_its_message() {
    let cluster = Cluster::pods(1).await;
    let out = attack(
        &cluster,
        cluster.site().to_str().unwrap(),
        "panic",
        &["message=the hostile guest gives up"],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    let failure = &out.json()["failure"];
    assert_eq!(failure["step"], "component");
    let reason = failure["reason"].as_str().unwrap();
    assert!(reason.contains("the hostile guest gives up"), "{reason}");
    assert!(reason.contains("panicked"), "{reason}");
    assert!(cluster.oracle().calls.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_reading_a_file_gets_nothing() {
    let cluster = Cluster::pods(1).await;
    let site = cluster.site().to_str().unwrap().to_string();
    // A file that exists on the host, and holds the cluster's API token.
    let kubeconfig = cluster.files.kubeconfig.to_str().unwrap().to_string();
    let out = attack(
        &cluster,
        &site,
        "read-file",
        &[&format!("path={kubeconfig}")],
    )
    .await;
    let got = detail(&out);
    assert!(got.starts_with("error: "), "{got}");
    let out = attack(&cluster, &site, "read-file", &["path=/etc/passwd"]).await;
    assert!(detail(&out).starts_with("error: "), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_reading_the_environment_gets_nothing() {
    let cluster = Cluster::pods(1).await;
    // The host process has an environment (PATH at least); the guest sees none of it.
    assert!(std::env::var_os("PATH").is_some());
    let out = attack(&cluster, cluster.site().to_str().unwrap(), "read-env", &[]).await;
    let detail = detail(&out);
    assert!(detail.starts_with("0 variables []; 0 args;"), "{detail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_opening_a_socket_gets_nothing() {
    let cluster = Cluster::pods(1).await;
    let canary = Canary::listen("127.0.0.1:0").await;
    let addr = format!("addr={}", canary.addr);
    let out = attack(
        &cluster,
        cluster.site().to_str().unwrap(),
        "connect",
        &[&addr],
    )
    .await;
    let detail = detail(&out);
    assert!(detail.starts_with("error: "), "{detail}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(canary.connections(), 0, "the canary saw a connection");
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_is_denied_when_the_site_grants_none() {
    let cluster = Cluster::pods(2).await;
    let site = cluster.site_with("no-restart.toml", |s| cmk_tests::replace_restart(&s, ""));
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(PROBE_WASM),
            "--site",
            site.to_str().unwrap(),
            "--param",
            "restart=true",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let report = out.json();
    let detail = report["steps"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("denied: ") && detail.contains("no [restart] section"),
        "{detail}"
    );
    assert_eq!(report["denials"][0]["capability"], "restart");
    assert_eq!(report["denials"][0]["target"], "rolling-restart");
    assert!(cluster.oracle().restarts.is_empty(), "no restart ran");
    // The log line names the capability, the target and the rule.
    assert!(out.stderr.contains("denied restart call"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_importing_outside_the_world_is_refused_at_load() {
    let cluster = Cluster::pods(1).await;
    let site = cluster.site().to_str().unwrap().to_string();
    // Signed by a trusted key: the import check, not the signature, refuses it.
    let component = cluster.signed(OUTSIDE_WASM);
    let out = run(BIN, &["run", &component, "--site", &site, "--json"]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(
        out.stderr.contains("outside the `rotation` world")
            && out.stderr.contains("cmk:outside/exfil@0.1.0"),
        "{out}"
    );
    // Refused before instantiation: nothing ran (the document is the refusal's,
    // not a run's report), no pod was contacted.
    let doc = out.json();
    assert_eq!(doc["outcome"], "refused", "{out}");
    assert!(
        doc.get("run_id").is_none() && doc.get("steps").is_none(),
        "{out}"
    );
    let oracle = cluster.oracle();
    assert!(oracle.calls.is_empty() && oracle.restarts.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_shows_imports_exports_digest_and_grants() {
    use sha2::{Digest, Sha256};
    let cluster = Cluster::pods(1).await;
    let site = cluster.site().to_str().unwrap().to_string();
    // With a site, inspect judges as run does: the component must be signed.
    let signed = cluster.signed(ROTATE_WASM);
    let out = run(BIN, &["inspect", &signed, "--site", &site]).await;
    assert_eq!(out.code, 0, "{out}");
    let bytes = std::fs::read(&signed).unwrap();
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for line in [
        format!("component  {signed}"),
        format!("signature  signed by ops (key {})", cluster.ops.key_id),
        format!("size       {} bytes", bytes.len()),
        format!("sha256     {sha}"),
        "kind       procedure".to_string(),
        "exports    cmk:procedure/procedure@0.1.0".to_string(),
        "  ok       cmk:procedure/http@0.1.0".to_string(),
        "  ok       cmk:procedure/restart@0.1.0".to_string(),
        "verdict    runnable: every import is provided by this host".to_string(),
        format!("site       {site}"),
        "grants     pods, http (GET/POST under /cluster/v1/key), restart, log, journal, confirm".to_string(),
        "limits     memory 256 MiB, wall clock 2040s, 10000 host calls".to_string(),
        "http       https://<IP of a listed pod>:4444 only; bodies up to 65536 B sent, 1048576 B received; 30s per request; 64 at once".to_string(),
        format!("tls        verified against the CA in {}", cluster.files.ca.display()),
        format!(
            "restart    command {}; within 120s",
            cluster.files.restart_script.display()
        ),
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "no line {line:?} in:\n{out}"
        );
    }
    assert!(!out.stdout.contains("REFUSED"), "{out}");

    // Without a site: nothing granted.
    let out = run(BIN, &["inspect", ROTATE_WASM]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.lines().any(|l| l == "grants     nothing"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_marks_an_import_outside_the_world() {
    let out = run(BIN, &["inspect", OUTSIDE_WASM, "--json"]).await;
    assert_eq!(out.code, 3, "{out}");
    let json = out.json();
    assert!(
        json["refused"]
            .as_str()
            .unwrap()
            .contains("cmk:outside/exfil@0.1.0"),
        "{out}"
    );
    let out = run(BIN, &["inspect", OUTSIDE_WASM]).await;
    assert!(
        out.stdout
            .lines()
            .any(|l| l == "  REFUSED  cmk:outside/exfil@0.1.0"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_restart_command_gets_only_the_allowed_environment_in_its_working_dir() {
    let cluster = Cluster::pods(1).await;
    let workdir = cluster.dir().join("restart-wd");
    std::fs::create_dir_all(&workdir).unwrap();
    let site = cluster.site_with("env.toml", |s| {
        cmk_tests::replace_restart(
            &s,
            &format!(
                "[restart]\ncommand = [\"/bin/sh\", \"-c\", \"echo wd=$(pwd); env | sed 's/^/ENVLINE:/'\"]\nworking_dir = \"{}\"\nenv = [\"PATH\"]\ntimeout_secs = 30\n\n",
                workdir.display()
            ),
        )
    });
    // The host's environment holds more than PATH (HOME at least, under cargo).
    assert!(std::env::var_os("CARGO").is_some() || std::env::var_os("HOME").is_some());
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(PROBE_WASM),
            "--site",
            site.to_str().unwrap(),
            "--param",
            "restart=true",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json()["steps"][0]["detail"], "ok", "{out}");
    assert!(
        out.stderr.contains(&format!("wd={}", workdir.display())),
        "{out}"
    );
    let env: Vec<&str> = out
        .stderr
        .lines()
        // The log line announcing the command quotes it: skip that one.
        .filter(|l| !l.contains("sed "))
        .filter_map(|l| l.split_once("ENVLINE:").map(|(_, v)| v))
        .collect();
    assert!(env.iter().any(|v| v.starts_with("PATH=")), "{out}");
    // Only PATH, and what the shell itself sets (PWD, SHLVL, _).
    for v in &env {
        let name = v.split('=').next().unwrap();
        assert!(
            ["PATH", "PWD", "SHLVL", "_", "OLDPWD"].contains(&name),
            "{name} leaked into the restart command: {out}"
        );
    }
}

/// A hook is inspected as a hook: the `hook` world's check, and at most the grants a
/// hook can receive (never restart, journal or confirm).
#[tokio::test(flavor = "multi_thread")]
async fn inspect_judges_a_hook_as_a_hook() {
    let cluster = Cluster::pods(1).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let hook = cluster.signed(cmk_tests::HOOK_QUORUM_WASM);
    let out = run(BIN, &["inspect", &hook, "--site", &site]).await;
    assert_eq!(out.code, 0, "{out}");
    for line in [
        "kind       hook",
        "verdict    runnable: every import is provided by this host",
        "grants     pods, http (GET/POST under /cluster/v1/key), log",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "{line:?} missing: {out}"
        );
    }
    // The rotation exports `procedure`, not `hooks`: it stays a procedure.
    let out = run(BIN, &["inspect", ROTATE_WASM, "--json"]).await;
    assert_eq!(out.json()["kind"], "procedure", "{out}");
}

/// What a hostile component may put in front of the operator: escape sequences, a
/// carriage return, a newline and a forged host line, bidi overrides, in every string
/// it supplies (`attack=forge`). None reaches stdout or stderr as itself, in the
/// terminal's lines or in `--json`, whichever way the run ends; no line starts with
/// the forged `✓ verify-activated done`; the trail holds only the escaped text.
#[tokio::test(flavor = "multi_thread")]
async fn component_text_cannot_forge_the_hosts_voice() {
    let cluster = Cluster::pods(1).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let component = cluster.signed(HOSTILE_WASM);
    for end in ["report", "fail", "panic"] {
        for json in [false, true] {
            let end_param = format!("end={end}");
            let mut args = vec![
                "run",
                &component,
                "--site",
                &site,
                "--param",
                "attack=forge",
                "--param",
                &end_param,
            ];
            if json {
                args.push("--json");
            }
            let out = run(BIN, &args).await;
            let case = format!("end={end} json={json}");
            assert_eq!(
                out.code,
                if end == "report" { 0 } else { 1 },
                "{case}: {out}"
            );
            for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
                for raw in ['\u{1b}', '\u{9b}', '\u{202e}', '\r', '\u{8}', '\u{7}'] {
                    assert!(
                        !text.contains(raw),
                        "{case}: {raw:?} reached {stream}:\n{out}"
                    );
                }
                for line in text.lines() {
                    let start = line.trim_start_matches(|c: char| c.is_whitespace() || c == '│');
                    assert!(
                        !start.starts_with("✓ verify-activated done"),
                        "{case}: a forged host line on {stream}: {line:?}"
                    );
                }
            }
            // Shown visibly, as escapes, and as the procedure's words.
            let all = format!("{}{}", out.stdout, out.stderr);
            assert!(all.contains(r"\u{1b}[2J"), "{case}: {out}");
            assert!(all.contains(r"\u{202e}"), "{case}: {out}");
            assert!(
                all.contains("procedure: log "),
                "{case}: the log line is attributed: {out}"
            );
            if json {
                let report = out.json();
                assert!(!report["audit_path"].is_null(), "{out}");
                let trail =
                    std::fs::read_to_string(report["audit_path"].as_str().unwrap()).unwrap();
                for raw in ['\u{1b}', '\u{9b}', '\u{202e}'] {
                    assert!(!trail.contains(raw), "{case}: {raw:?} in the trail");
                }
                if end == "fail" {
                    assert_eq!(report["failure"]["reported_by"], "procedure", "{out}");
                    assert!(
                        report["failure"]["reason"]
                            .as_str()
                            .unwrap()
                            .starts_with(r"reason \u{1b}[2J"),
                        "{out}"
                    );
                }
            }
        }
    }
    let trail = cluster.dir().join("state/audit/sim.jsonl");
    let out = run(BIN, &["audit", "verify", trail.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        cluster.oracle().calls.is_empty(),
        "the forged URL was not sent"
    );
}

/// `journal.remove` is checked against the grant like every other call: a signer
/// without `journal` is denied, and the journal on disk keeps its entry.
#[tokio::test(flavor = "multi_thread")]
async fn journal_remove_without_the_journal_grant_is_denied() {
    let cluster = Cluster::pods(1).await;
    let journal = cluster.dir().join("state/journal/sim.json");
    std::fs::create_dir_all(journal.parent().unwrap()).unwrap();
    let seeded = r#"{"cluster":"sim","entries":{"k":"v"}}"#;
    std::fs::write(&journal, seeded).unwrap();
    let granted = r#""log", "journal", "confirm"]"#;
    let site = cluster.site_with("no-journal.toml", |s| {
        assert!(s.contains(granted), "{s}");
        s.replace(granted, r#""log", "confirm"]"#)
    });
    let out = attack(
        &cluster,
        site.to_str().unwrap(),
        "journal-remove",
        &["key=k"],
    )
    .await;
    let got = detail(&out);
    assert!(
        got.starts_with("denied: ") && got.contains("journal is not granted"),
        "{got}"
    );
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap(),
        seeded,
        "untouched"
    );
    let denials = &out.json()["denials"];
    assert_eq!(denials[0]["capability"], "journal", "{out}");

    // The control: with the grant, the same call removes the entry.
    let out = attack(
        &cluster,
        cluster.site().to_str().unwrap(),
        "journal-remove",
        &["key=k"],
    )
    .await;
    assert_eq!(detail(&out), "ok");
    assert!(!std::fs::read_to_string(&journal).unwrap().contains("\"k\""));
}
