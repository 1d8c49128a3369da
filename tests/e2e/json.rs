//! `--json` prints one document on stdout on every exit (0, 1, 2, 3), with an
//! `outcome` automation can branch on; `--events FILE` streams one JSON line per
//! step and capability call as it happens. The schema: docs/json.md.

use cmk_sim::Oracle;
use cmk_tests::{Cluster, PROBE_WASM, ROTATE_WASM, assert_rotated_once, run, run_on_a_terminal};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

fn site(cluster: &Cluster) -> String {
    cluster.site().to_str().unwrap().to_string()
}

fn no_activate(oracle: &Oracle) -> bool {
    oracle.activates().is_empty()
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_0_and_1_documents_say_done_and_awaiting_confirmation() {
    let cluster = Cluster::pods(2).await;
    let rotate = cluster.signed(ROTATE_WASM);
    // No terminal and no --yes: the run stops before activate, on purpose.
    let out = run(BIN, &["run", &rotate, "--site", &site(&cluster), "--json"]).await;
    assert_eq!(out.code, 1, "{out}");
    let doc = out.json();
    assert_eq!(doc["outcome"], "awaiting-confirmation", "{out}");
    assert_eq!(doc["exit_code"], 1);
    assert_eq!(doc["failure"]["safe_to_resume"], true, "{out}");
    assert_eq!(doc["irreversible_sent"], serde_json::json!([]), "{out}");
    assert!(no_activate(&cluster.oracle()));

    let out = run(
        BIN,
        &["run", &rotate, "--site", &site(&cluster), "--json", "--yes"],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let doc = out.json();
    assert_eq!(doc["outcome"], "done", "{out}");
    assert_eq!(doc["ended"], "succeeded");
    assert_eq!(doc["exit_code"], 0);
    assert_eq!(
        (doc["version_before"].clone(), doc["version_after"].clone()),
        (1.into(), 2.into())
    );
    // The point of no return as the host saw it: one activate, answered 204.
    let sent: Vec<&str> = doc["irreversible_sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(sent.len(), 1, "{out}");
    assert!(
        sent[0].starts_with("POST https://") && sent[0].ends_with("/cluster/v1/key/activate: 204"),
        "{out}"
    );
    assert_rotated_once(&cluster.oracle(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decline_on_the_terminal_is_declined_in_the_document_and_in_words() {
    let cluster = Cluster::pods(2).await;
    let rotate = cluster.signed(ROTATE_WASM);
    let site = site(&cluster);
    let (code, screen) =
        run_on_a_terminal(BIN, &["run", &rotate, "--site", &site, "--json"], "no\n").await;
    assert_eq!(code, 1, "{screen}");
    assert!(screen.contains(r#""outcome": "declined""#), "{screen}");
    assert!(no_activate(&cluster.oracle()));

    let (code, screen) = run_on_a_terminal(BIN, &["run", &rotate, "--site", &site], "no\n").await;
    assert_eq!(code, 1, "{screen}");
    assert!(
        screen.contains("stopped before activate: safe; run the same command again to continue"),
        "{screen}"
    );
    assert!(
        !screen.contains("fix the cause"),
        "nothing to fix: {screen}"
    );
    assert!(!screen.contains("the procedure failed"), "{screen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_2_documents_name_the_site_key_or_the_usage_error() {
    let cluster = Cluster::pods(1).await;
    let rotate = cluster.signed(ROTATE_WASM);
    let bad = cluster.site_with("bad.toml", |t| {
        t.replace("[cluster]\n", "[cluster]\nprot = 1\n")
    });
    let bad = bad.to_str().unwrap();
    let out = run(BIN, &["run", &rotate, "--site", bad, "--json"]).await;
    assert_eq!(out.code, 2, "{out}");
    let doc = out.json();
    assert_eq!(doc["outcome"], "invalid-site", "{out}");
    assert_eq!(doc["exit_code"], 2);
    assert_eq!(doc["site"], bad);
    assert!(
        doc["error"].as_str().unwrap().contains("[cluster] prot"),
        "{out}"
    );
    assert!(
        out.stderr.contains("[cluster] prot"),
        "the message is on stderr too: {out}"
    );

    let out = run(
        BIN,
        &[
            "run",
            "/nonexistent.wasm",
            "--site",
            &site(&cluster),
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 2, "{out}");
    assert_eq!(out.json()["outcome"], "usage", "{out}");

    let out = run(BIN, &["run", &rotate, "--json", "--no-such-flag"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert_eq!(out.json()["outcome"], "usage", "{out}");
    assert!(cluster.oracle().calls.is_empty(), "nothing was contacted");
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_3_and_a_busy_lease_have_their_documents() {
    let cluster = Cluster::pods(1).await;
    let out = run(
        BIN,
        &["run", ROTATE_WASM, "--site", &site(&cluster), "--json"],
    )
    .await;
    assert_eq!(out.code, 3, "{out}");
    let doc = out.json();
    assert_eq!(doc["outcome"], "refused", "{out}");
    assert_eq!(doc["exit_code"], 3);
    assert!(doc["error"].as_str().unwrap().contains("refused"), "{out}");

    cluster
        .sim
        .hold_lease("sdkms", "cmk-host-rotation", "other-host/7/run", 600);
    let rotate = cluster.signed(ROTATE_WASM);
    let out = run(
        BIN,
        &["run", &rotate, "--site", &site(&cluster), "--json", "--yes"],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    let doc = out.json();
    assert_eq!(doc["outcome"], "lease-busy", "{out}");
    assert!(
        doc["error"].as_str().unwrap().contains("other-host/7/run"),
        "{out}"
    );
    assert!(cluster.oracle().calls.is_empty(), "no pod was contacted");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_stream_every_step_and_call_then_the_report() {
    let cluster = Cluster::pods(2).await;
    let rotate = cluster.signed(ROTATE_WASM);
    let events = cluster.dir().join("events.jsonl");
    let out = run(
        BIN,
        &[
            "run",
            &rotate,
            "--site",
            &site(&cluster),
            "--yes",
            "--events",
            events.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"run"), "{text}");
    assert_eq!(kinds.last(), Some(&"report"), "{text}");
    assert_eq!(lines.last().unwrap()["outcome"], "done");
    // Every step began and ended, in order, before the report.
    let began: Vec<&str> = lines
        .iter()
        .filter(|e| e["event"] == "step-begin")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for step in [
        "preflight",
        "propose",
        "distribute",
        "activate",
        "verify-activated",
    ] {
        assert!(began.contains(&step), "{step} began: {began:?}");
    }
    // One call event per POST the pods received.
    let posts = lines
        .iter()
        .filter(|e| e["event"] == "call" && e["target"].as_str().unwrap().starts_with("POST "))
        .count();
    assert_eq!(posts, cluster.oracle().mutations().len(), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_is_planned() {
    let cluster = Cluster::pods(1).await;
    let probe = cluster.signed(PROBE_WASM);
    let out = run(
        BIN,
        &["run", &probe, "--site", &site(&cluster), "--json", "--plan"],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json()["outcome"], "planned", "{out}");
}
