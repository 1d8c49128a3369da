//! The gate (`host/src/caps/gate.rs`): promises the host keeps whatever the procedure
//! does. Each test runs a hostile component (`tests/guests/hostile`) with the real
//! binary against the simulator and asserts on the oracle: the host's own
//! confirmation of irreversible requests, host calls counted per batch request, the
//! batch and held-bytes limits, restarts per run, and the Lease fence.

use std::time::{Duration, Instant};

use cmk_sim::{Faults, Oracle, SimConfig};
use cmk_tests::{Cluster, HOSTILE_WASM, Outcome, PROBE_WASM, Signer, run, spawn};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");
const ACTIVATE: &str = "/cluster/v1/key/activate";

/// Runs the component at `signed` (a path) with `flags` and `--param`s.
async fn hostile(signed: &str, site: &str, flags: &[&str], params: &[&str]) -> Outcome {
    let mut args = vec!["run", signed, "--site", site, "--json"];
    args.extend_from_slice(flags);
    for p in params {
        args.extend_from_slice(&["--param", p]);
    }
    run(BIN, &args).await
}

/// Every POST of activate that reached a pod, whatever its answer.
fn activates_received(o: &Oracle) -> usize {
    o.calls
        .iter()
        .filter(|c| c.method == "POST" && c.path == ACTIVATE)
        .count()
}

/// The detail of the report's step `name`.
fn detail(out: &Outcome, name: &str) -> String {
    out.json()["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("steps: {out}"))
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {out}"))["detail"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_activate_reaches_a_pod_without_a_confirmation_whatever_the_procedure_does() {
    let cluster = Cluster::pods(2).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let signed = cluster.signed(HOSTILE_WASM);

    // A signer granted confirm, no --yes, no terminal: the procedure never asks.
    let out = hostile(&signed, &site, &[], &["attack=activate"]).await;
    let first = detail(&out, "activate 1");
    assert!(
        first.starts_with("denied: ") && first.contains("run the same command again with --yes"),
        "says how to resume: {out}"
    );
    let denials = out.json()["denials"].to_string();
    assert!(denials.contains("/cluster/v1/key/activate"), "{denials}");

    // The procedure asks first: the answer is no, and it activates anyway.
    let out = hostile(&signed, &site, &[], &["attack=activate", "ask=true"]).await;
    assert!(detail(&out, "ask").starts_with("Err("), "{out}");
    assert!(detail(&out, "activate 1").starts_with("denied: "), "{out}");

    // A signer without confirm, with --yes.
    let vendor = Signer::generate(cluster.dir(), "vendor");
    cluster.trust(
        &vendor,
        r#"capabilities = ["pods", "http", "restart", "log", "journal"]
http_methods = ["GET", "POST"]
http_paths = ["/cluster/v1/key"]"#,
    );
    let by_vendor = vendor.sign(HOSTILE_WASM, &cluster.dir().join("vendor-hostile.wasm"));
    let out = hostile(&by_vendor, &site, &["--yes"], &["attack=activate"]).await;
    let first = detail(&out, "activate 1");
    assert!(first.contains("not granted `confirm`"), "{out}");

    // Plan mode: recorded as planned, not sent, nothing asked.
    let out = hostile(&signed, &site, &["--plan", "--yes"], &["attack=activate"]).await;
    let planned = out.json()["planned"].to_string();
    assert!(planned.contains("/cluster/v1/key/activate"), "{out}");

    let o = cluster.oracle();
    assert_eq!(
        activates_received(&o),
        0,
        "no activate reached a pod: {o:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_confirmation_lets_exactly_one_activate_through() {
    let cluster = Cluster::pods(2).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let signed = cluster.signed(HOSTILE_WASM);

    // --yes, and the procedure never asks: the host asks itself at the request,
    // --yes answers once; the second activate of the run is denied.
    let out = hostile(&signed, &site, &["--yes"], &["attack=activate"]).await;
    assert!(!detail(&out, "activate 1").starts_with("denied"), "{out}");
    assert!(detail(&out, "activate 2").starts_with("denied: "), "{out}");
    assert_eq!(activates_received(&cluster.oracle()), 1);
    // The report lists the one that went out, with the pod's answer (409: nothing
    // was proposed), and not the one refused.
    let sent = out.json()["irreversible_sent"].clone();
    assert_eq!(sent.as_array().map(Vec::len), Some(1), "{out}");
    assert!(
        sent[0].as_str().unwrap().ends_with("/activate: 409"),
        "{out}"
    );

    // The procedure asks, --yes answers: one activate, not two.
    let out = hostile(
        &signed,
        &site,
        &["--yes"],
        &["attack=activate", "ask=true", "times=3"],
    )
    .await;
    assert_eq!(detail(&out, "ask"), "Ok(())", "{out}");
    assert!(detail(&out, "activate 2").starts_with("denied: "), "{out}");
    assert!(detail(&out, "activate 3").starts_with("denied: "), "{out}");
    assert_eq!(activates_received(&cluster.oracle()), 2, "one more");

    // A yes given before the latest pod list no longer counts.
    let out = hostile(
        &signed,
        &site,
        &["--yes"],
        &["attack=activate", "ask=true", "relist=true", "times=1"],
    )
    .await;
    assert_eq!(detail(&out, "ask"), "Ok(())", "{out}");
    assert!(detail(&out, "activate 1").starts_with("denied: "), "{out}");
    assert_eq!(activates_received(&cluster.oracle()), 2, "none more");
}

/// A procedure that reports a rotation it never made: the summary and the trail show
/// the versions as its claim, because this run sent no irreversible request; the
/// cluster is untouched.
#[tokio::test(flavor = "multi_thread")]
async fn a_claimed_rotation_without_an_activate_is_shown_as_the_procedures_claim() {
    let cluster = Cluster::pods(2).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let signed = cluster.signed(HOSTILE_WASM);
    let out = run(
        BIN,
        &[
            "run",
            &signed,
            "--site",
            &site,
            "--yes",
            "--param",
            "attack=claim-rotated",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains(
            "  version:  1 -> 2 (as the procedure reports it: this run sent no irreversible request)\n"
        ),
        "{out}"
    );
    assert!(!out.stdout.contains("irreversible: POST"), "{out}");
    let end = cluster
        .audit_records()
        .into_iter()
        .rfind(|r| r["kind"] == "run" && r["target"] == "end")
        .expect("the run's end record");
    assert_eq!(
        end["detail"],
        "version 1 -> 2 (as the procedure reports it: this run sent no irreversible request)"
    );
    let o = cluster.oracle();
    assert_eq!((o.version, activates_received(&o)), (1, 0), "{o:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_5000_request_batch_under_50_host_calls_sends_at_most_50() {
    let cluster = Cluster::pods(1).await;
    let site = cluster.site_with("calls-50.toml", |t| {
        format!("{t}\n[limits]\nhost_calls = 50\n\n[http]\nmax_batch = 10000\n")
    });
    let out = hostile(
        &cluster.signed(HOSTILE_WASM),
        site.to_str().unwrap(),
        &[],
        &["attack=batch", "count=5000"],
    )
    .await;
    let o = cluster.oracle();
    let sent = o.calls.iter().filter(|c| c.method == "GET").count();
    assert!((1..=50).contains(&sent), "{sent} requests sent: {out}");
    // The requests past the limit were answered `denied`, and the component's next
    // call into the host stopped it.
    assert_eq!(out.code, 1, "{out}");
    let report = out.json();
    assert_eq!(
        report["failure"]["reason"],
        "stopped: the component made more than 50 host calls, its limit",
        "{out}"
    );
    let denial = &report["denials"][0];
    assert_eq!(
        denial["target"],
        format!("requests {}..5000 of a batch of 5000", sent + 1),
        "{out}"
    );
    assert!(
        denial["rule"]
            .as_str()
            .unwrap()
            .contains("[limits] host_calls; each request of a batch counts"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_over_max_batch_is_refused_whole() {
    let cluster = Cluster::pods(1).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let signed = cluster.signed(HOSTILE_WASM);
    let out = hostile(&signed, &site, &[], &["attack=batch", "count=513"]).await;
    let batch = detail(&out, "batch");
    assert!(
        batch.starts_with("513 results, 0 ok, 513 denied: ")
            && batch.contains("over the limit of 512 requests per batch ([http] max_batch)"),
        "{batch}"
    );
    assert!(cluster.oracle().calls.is_empty(), "nothing sent");

    // The control: 512 go.
    let out = hostile(&signed, &site, &[], &["attack=batch", "count=512"]).await;
    assert!(
        detail(&out, "batch").starts_with("512 results, 512 ok"),
        "{out}"
    );
    assert_eq!(cluster.oracle().calls.len(), 512);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_response_bytes_a_batch_holds_at_once_are_bounded() {
    let cluster = Cluster::start(SimConfig {
        faults: Faults {
            oversized_status_on: Some(("sdkms-0".into(), 600 << 10)),
            ..Faults::default()
        },
        ..SimConfig::pods(1)
    })
    .await;
    let (_, ip) = cluster.sim.pod_ips().remove(0);
    let read = format!("GET https://{ip}:4444/cluster/v1/key");
    let site = cluster.site_with("held-1m.toml", |t| {
        format!("{t}\n[http]\nmax_concurrency = 1\nmax_held_response_bytes = 1048576\n")
    });
    let requests = format!("requests={read}|{read}|{read}");
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(PROBE_WASM),
            "--site",
            site.to_str().unwrap(),
            "--json",
            "--param",
            "list_pods=true",
            "--param",
            "batch=true",
            "--param",
            &requests,
        ],
    )
    .await;
    let steps = out.json()["steps"].as_array().unwrap().clone();
    let details: Vec<&str> = steps
        .iter()
        .filter(|s| s["name"] == read.as_str())
        .map(|s| s["detail"].as_str().unwrap())
        .collect();
    assert_eq!(details.len(), 3, "{out}");
    assert_eq!(details[0], "ok 200", "{out}");
    for d in &details[1..] {
        assert_eq!(
            *d,
            "protocol: the responses of this call are over the limit of 1048576 bytes held \
             at once ([http] max_held_response_bytes)"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn six_restart_calls_restart_the_cluster_at_most_max_per_run_times() {
    let cluster = Cluster::pods(2).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let signed = cluster.signed(HOSTILE_WASM);
    let out = hostile(&signed, &site, &[], &["attack=restart-loop"]).await;
    assert_eq!(detail(&out, "restart 2"), "Ok(())", "{out}");
    for i in 3..=6 {
        let d = detail(&out, &format!("restart {i}"));
        assert!(
            d.contains("the site allows 2 rolling restarts per run ([restart] max_per_run)"),
            "{d}"
        );
    }
    assert_eq!(cluster.oracle().restarts.len(), 2, "{out}");

    let one = cluster.site_with("one-restart.toml", |t| {
        t.replace(
            "timeout_secs = 120\n",
            "timeout_secs = 120\nmax_per_run = 1\n",
        )
    });
    hostile(
        &signed,
        one.to_str().unwrap(),
        &[],
        &["attack=restart-loop"],
    )
    .await;
    let o = cluster.oracle();
    assert_eq!(o.restarts.len(), 3, "one more: {:#?}", o.restarts);
    assert_eq!(o.restarts_started, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_whose_renewals_fail_fences_every_post_after_it_expires() {
    let cluster = Cluster::pods(1).await;
    let site = cluster.site_with("lease-1s.toml", |t| {
        format!("{t}\n[lease]\nduration_secs = 1\n")
    });
    // Each POST answered after 20 ms: the loop would go on for about 10 s.
    let slow = ("/cluster/v1/key/nothing".to_string(), 20);
    cluster.sim.set_faults(Faults {
        slow_answer: Some(slow.clone()),
        ..Faults::default()
    });
    let child = spawn(
        BIN,
        &[
            "run",
            &cluster.signed(HOSTILE_WASM),
            "--site",
            site.to_str().unwrap(),
            "--json",
            "--param",
            "attack=post-loop",
            "--param",
            "times=500",
        ],
    );
    let posts = |o: &Oracle| o.mutations().len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while posts(&cluster.oracle()) < 3 {
        assert!(
            Instant::now() < deadline,
            "no POST: {:#?}",
            cluster.oracle()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // From now on no renewal succeeds: the Lease expires within its 1 s duration.
    cluster.sim.set_faults(Faults {
        slow_answer: Some(slow),
        fail_lease_writes: true,
        ..Faults::default()
    });
    let failing_since = Instant::now();
    // The Lease was last renewed before now, so it expires within 1 s. A request
    // that passed the gate just before may still be on its way: allow 1 s more (a
    // loaded machine), a tenth of what the loop would take unfenced.
    tokio::time::sleep(Duration::from_millis(1000 + 1000)).await;
    let at_expiry = posts(&cluster.oracle());
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let o = cluster.oracle();
    assert_eq!(
        posts(&o),
        at_expiry,
        "no POST after the Lease expired ({:?} after renewals began to fail): {stdout}",
        failing_since.elapsed()
    );
    assert!(
        at_expiry < 200,
        "the loop was fenced, not finished: {at_expiry}"
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let stopped = report["stopped"].as_str().unwrap_or_default();
    assert!(
        stopped.contains("could not be renewed within its duration of 1s"),
        "{report:#}"
    );
    let steps = report["steps"].to_string();
    assert!(
        steps.contains("denied: the Lease sdkms/cmk-host-rotation"),
        "{steps}"
    );
}
