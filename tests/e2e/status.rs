//! `guest-status`, end to end: the real binary runs the read-only status procedure,
//! signed by a signer granted `pods`, `log` and `http` GET only, against the
//! simulated cluster. Exit 0 when every pod agrees; exit 1, naming the pod, when one
//! diverges; and whatever it runs, the oracle shows no POST and no restart.

use cmk_sim::{Faults, SimConfig, Start};
use cmk_tests::{Cluster, Outcome, PROBE_WASM, READ_ONLY_GRANTS, STATUS_WASM, Signer, run};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

/// The status procedure signed by a "status" signer that the site trusts with
/// read-only grants; returns the signed component's path.
fn status_component(cluster: &Cluster) -> (Signer, String) {
    let signer = Signer::generate(cluster.dir(), "status");
    cluster.trust(&signer, READ_ONLY_GRANTS);
    let component = signer.sign(STATUS_WASM, &cluster.dir().join("status.wasm"));
    (signer, component)
}

async fn status(cluster: &Cluster, component: &str, extra: &[&str]) -> Outcome {
    let site = cluster.site().to_str().unwrap().to_string();
    let mut args = vec!["run", component, "--site", &site];
    args.extend_from_slice(extra);
    run(BIN, &args).await
}

/// The steps of the report that are pod rows, by name.
fn rows(report: &Value) -> Vec<(String, String, Value)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("sdkms-"))
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["outcome"].as_str().unwrap().to_string(),
                s["fields"].clone(),
            )
        })
        .collect()
}

/// Nothing but reads reached the pods: one GET of the status per pod and run, no
/// POST, no restart, and the key state is as it was.
fn assert_read_only(cluster: &Cluster, runs: usize) {
    let oracle = cluster.oracle();
    assert!(
        oracle.mutations().is_empty(),
        "no POST: {:#?}",
        oracle.calls
    );
    assert!(oracle.restarts.is_empty(), "no restart");
    assert!(
        oracle
            .calls
            .iter()
            .all(|c| c.method == "GET" && c.path == "/cluster/v1/key"),
        "{:#?}",
        oracle.calls
    );
    assert_eq!(
        oracle.calls.len(),
        oracle.pods.len() * runs,
        "one read per pod and run"
    );
    assert_eq!(oracle.version, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn when_every_pod_agrees_each_gets_a_row_and_the_exit_code_is_0() {
    let cluster = Cluster::pods(3).await;
    let (_, component) = status_component(&cluster);

    let out = status(&cluster, &component, &["--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let report = out.json();
    assert_eq!(report["signer"], "status");
    assert_eq!(report["pods"], 3);
    assert_eq!(report["version_before"], 1);
    let rows = rows(&report);
    assert_eq!(rows.len(), 3, "{out}");
    for (i, (name, outcome, fields)) in rows.iter().enumerate() {
        assert_eq!(name, &format!("sdkms-{i}"));
        assert_eq!(outcome, "done");
        assert_eq!(
            fields,
            &serde_json::json!({
                "version": "1", "hash": "none", "ready": "true", "phase": "Running", "note": "-"
            }),
            "{out}"
        );
    }
    let verdict = report["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(verdict["name"], "verdict");
    assert_eq!(
        verdict["detail"],
        "all 3 pods agree: version 1, no proposal"
    );

    // The terminal: a table of the pods.
    let out = status(&cluster, &component, &[]).await;
    assert_eq!(out.code, 0, "{out}");
    let header = out
        .stdout
        .lines()
        .find(|l| l.contains("VERSION"))
        .unwrap_or_else(|| panic!("no table: {out}"));
    for column in ["VERSION", "HASH", "READY", "PHASE", "NOTE"] {
        assert!(header.contains(column), "{header}");
    }
    for i in 0..3 {
        let row = format!("✓ sdkms-{i}");
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(&row))
            .unwrap_or_else(|| panic!("no row {row}: {out}"));
        assert!(
            line.contains(" 1 ") && line.contains("none") && line.contains("Running"),
            "{line}"
        );
    }
    assert!(out.stdout.contains("  version:  1\n"), "{out}");
    assert_read_only(&cluster, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_holding_another_hash_is_flagged_and_the_exit_code_is_1() {
    let cluster = Cluster::start(SimConfig {
        start: Start::Distributed,
        faults: Faults {
            diverge_hash_on: Some("sdkms-2".into()),
            ..Faults::default()
        },
        ..SimConfig::pods(3)
    })
    .await;
    let (_, component) = status_component(&cluster);
    let oracle = cluster.oracle();
    let proposal = oracle.proposal.clone().unwrap();
    let diverged = oracle.pods[2].fetched_hash.clone().unwrap();

    let out = status(&cluster, &component, &["--json"]).await;
    assert_eq!(out.code, 1, "{out}");
    let report = out.json();
    let failure = &report["failure"];
    assert_eq!(failure["step"], "verdict", "{out}");
    assert_eq!(failure["safe_to_resume"], true, "a read changes nothing");
    let reason = failure["reason"].as_str().unwrap();
    assert!(reason.starts_with("proposal hashes differ: "), "{reason}");
    assert!(
        reason.contains(&format!("{}… on sdkms-0, sdkms-1", &proposal[..16])),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("{}… on sdkms-2", &diverged[..16])),
        "{reason}"
    );
    let rows = rows(&report);
    assert_eq!(rows.len(), 3, "{out}");
    for (name, outcome, fields) in &rows[..2] {
        assert_eq!(outcome, "done", "{name}");
        assert_eq!(fields["hash"], proposal.as_str(), "{name}: the whole hash");
        assert_eq!(fields["note"], "-");
    }
    let (name, outcome, fields) = &rows[2];
    assert_eq!((name.as_str(), outcome.as_str()), ("sdkms-2", "failed"));
    assert_eq!(fields["hash"], diverged.as_str());
    assert_eq!(fields["note"], "hash differs");
    assert_eq!(fields["version"], "1");

    // The terminal: the pod is marked in the table, and the reason names it.
    let out = status(&cluster, &component, &[]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("✗ sdkms-2"), "{out}");
    assert!(out.stdout.contains("✓ sdkms-0"), "{out}");
    assert!(out.stdout.contains("hash differs"), "{out}");
    assert!(out.stdout.contains("failed at: verdict"), "{out}");
    assert!(out.stdout.contains("on sdkms-2"), "{out}");

    let after = cluster.oracle();
    assert_eq!(after.proposal, Some(proposal), "the proposal is untouched");
    assert_read_only(&cluster, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_signer_is_denied_a_post_and_nothing_is_posted() {
    let cluster = Cluster::pods(2).await;
    let (signer, _) = status_component(&cluster);
    // Anything this signer signs gets its grants: here, the probe, asked to POST.
    let probe = signer.sign(PROBE_WASM, &cluster.dir().join("status-probe.wasm"));
    let (_, ip) = cluster.sim.pod_ips().remove(0);
    let propose = format!("POST https://{ip}:4444/cluster/v1/key/propose");
    let read = format!("GET https://{ip}:4444/cluster/v1/key");
    let requests = format!("requests={propose}|{read}");
    let out = status(
        &cluster,
        &probe,
        &[
            "--param",
            "list_pods=true",
            "--param",
            &requests,
            "--param",
            "restart=true",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let report = out.json();
    assert_eq!(report["signer"], "status");
    let detail = |name: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {out}"))["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(detail("pods.list"), "ok 2 pods");
    let post = detail(&propose);
    assert!(
        post.starts_with("denied: ") && post.contains("method POST is not granted"),
        "{post}"
    );
    assert_eq!(detail(&read), "ok 200", "GET is granted");
    let restart = detail("restart");
    assert!(restart.contains("restart is not granted"), "{restart}");
    let denied: Vec<(&str, &str)> = report["denials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["capability"].as_str().unwrap(),
                d["target"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(denied.len(), 2, "{out}");
    assert_eq!(
        denied[0],
        (
            "http",
            format!("POST https://{ip}:4444/cluster/v1/key/propose").as_str()
        )
    );
    assert_eq!(denied[1].0, "restart");

    let oracle = cluster.oracle();
    assert!(
        oracle.mutations().is_empty(),
        "no POST reached a pod: {:#?}",
        oracle.calls
    );
    assert_eq!(oracle.calls.len(), 1, "only the GET: {:#?}", oracle.calls);
    assert!(oracle.restarts.is_empty());
    assert!(oracle.proposes().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_that_cannot_be_read_is_named_and_the_exit_code_is_1() {
    // sdkms-1 answers with a body over the site's response limit (1 MiB).
    let cluster = Cluster::start(SimConfig {
        faults: Faults {
            oversized_status_on: Some(("sdkms-1".into(), 2 << 20)),
            ..Faults::default()
        },
        ..SimConfig::pods(3)
    })
    .await;
    let (_, component) = status_component(&cluster);
    let out = status(&cluster, &component, &["--json"]).await;
    assert_eq!(out.code, 1, "{out}");
    let report = out.json();
    let reason = report["failure"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("could not be read: sdkms-1 ("),
        "{reason}"
    );
    assert!(
        !reason.contains("sdkms-0") && !reason.contains("sdkms-2"),
        "{reason}"
    );
    let rows = rows(&report);
    assert_eq!(rows[1].1, "failed");
    assert_eq!(rows[1].2["version"], "?");
    assert!(
        rows[1].2["note"].as_str().unwrap().starts_with("unread: "),
        "{out}"
    );
    assert_eq!((rows[0].1.as_str(), rows[2].1.as_str()), ("done", "done"));
    assert_read_only(&cluster, 1);
}

/// The generated site file without any `[[trust.signer]]`: nobody is trusted.
fn site_trusting_nobody(cluster: &Cluster) -> String {
    let path = cluster.site_with("untrusting.toml", |text| {
        match text.find("[[trust.signer]]") {
            Some(at) => text[..at].to_string(),
            None => text,
        }
    });
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_needs_no_signature_and_looks_while_a_rotation_holds_the_lease() {
    let cluster = Cluster::pods(3).await;
    let site = site_trusting_nobody(&cluster);
    // A rotation is going on elsewhere: its Lease is live for ten minutes.
    cluster
        .sim
        .hold_lease("sdkms", "cmk-host-rotation", "ops-host/4242/rotation", 600);

    let out = run(BIN, &["status", "--site", &site, "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let report = out.json();
    assert_eq!(report["signer"], "cmk-host (bundled)", "{out}");
    assert_eq!(report["pods"], 3);
    assert_eq!(rows(&report).len(), 3, "{out}");
    assert!(!out.stderr.contains("another run holds"), "{out}");

    // And on the terminal: the table, without a key, a signature or the Lease.
    let out = run(BIN, &["status", "--site", &site]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("✓ sdkms-2"), "{out}");
    assert_read_only(&cluster, 2);

    // The rotation's Lease is untouched.
    let leases = cluster.sim.leases("sdkms");
    assert_eq!(leases.len(), 1);
    assert_eq!(
        leases[0].spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("ops-host/4242/rotation")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_on_a_diverging_cluster_is_exit_1_and_never_posts() {
    let cluster = Cluster::start(SimConfig {
        start: Start::Distributed,
        faults: Faults {
            diverge_hash_on: Some("sdkms-1".into()),
            ..Faults::default()
        },
        ..SimConfig::pods(3)
    })
    .await;
    let site = site_trusting_nobody(&cluster);
    let out = run(BIN, &["status", "--site", &site]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("sdkms-1"), "{out}");
    assert!(cluster.oracle().mutations().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn while_pods_do_not_answer_the_check_says_how_long_it_keeps_trying() {
    let cluster = Cluster::pods(2).await;
    // Nothing listens on 4445: every read is refused, and retried.
    let site = cluster.site_with("wrong-port.toml", |t| {
        match t.find("[[trust.signer]]") {
            Some(at) => t[..at].to_string(),
            None => t,
        }
        .replace("port = 4444", "port = 4445")
    });
    let out = run(
        BIN,
        &[
            "status",
            "--site",
            site.to_str().unwrap(),
            "--param",
            "read_timeout_secs=3",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    let progress: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("does not answer yet"))
        .collect();
    assert!(!progress.is_empty(), "progress while retrying: {out}");
    assert!(
        progress[0].contains(":4445") && progress[0].contains("giving up in "),
        "names the pod and the time left: {out}"
    );
    assert!(
        progress.len() <= 2,
        "a line every 10 s at most, not one per retry: {out}"
    );
}
