//! Hooks, end to end: the real binary runs the signed rotation with the site's hook
//! components (`[[hooks]]`) against the simulated cluster. The example hooks run
//! around the steps in order; a veto, a trap, a spin and an untrusted signature each
//! stop the run before the step they guard, which the oracle proves (no propose).
//!
//! The host's guards hold whatever the procedure does: a hostile procedure
//! (`tests/guests/hostile`, attacks `post` and `restart`) that skips its hooks, lies
//! about its step or ignores a veto is denied every mutating call, and so is one
//! facing a cluster with another number of pods than `[cluster] expect_pods`.

use cmk_tests::{
    Cluster, HELLO_WASM, HOOK_DR_REJOIN_WASM, HOOK_HOSTILE_WASM, HOOK_QUORUM_WASM, HOSTILE_WASM,
    Outcome, ROTATE_WASM, STATUS_WASM, Signer, assert_rotated_once, run,
};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

/// The grants of the quorum hook's signer: it lists the pods and logs.
const QUORUM_GRANTS: &str = r#"capabilities = ["pods", "log"]"#;
/// The grants of the DR hook's signer: it only logs.
const LOG_GRANTS: &str = r#"capabilities = ["log"]"#;

/// `wasm` signed by `signer` into the cluster's folder as `file`.
fn hook(cluster: &Cluster, signer: &Signer, wasm: &str, file: &str) {
    signer.sign(wasm, &cluster.dir().join(file));
}

/// Appends `[[hooks]]` entries (TOML) to the site file.
fn add_hooks(cluster: &Cluster, entries: &str) {
    use std::io::Write;
    let mut site = std::fs::OpenOptions::new()
        .append(true)
        .open(cluster.site())
        .expect("open site.toml");
    write!(site, "\n{entries}\n").expect("append [[hooks]]");
}

async fn rotate(cluster: &Cluster) -> Outcome {
    let component = cluster.signed(ROTATE_WASM);
    let site = cluster.site().to_str().unwrap().to_string();
    run(BIN, &["run", &component, "--site", &site, "--yes"]).await
}

/// The quorum hook, signed by a trusted "quorum" signer granted pods and log.
fn quorum(cluster: &Cluster, min_pods: usize) {
    let signer = Signer::generate(cluster.dir(), "quorum");
    cluster.trust(&signer, QUORUM_GRANTS);
    hook(cluster, &signer, HOOK_QUORUM_WASM, "hook-quorum.wasm");
    add_hooks(
        cluster,
        &format!("[[hooks]]\npath = \"hook-quorum.wasm\"\nparams = {{ min_pods = {min_pods} }}"),
    );
}

/// The position of the first line of `text` containing `needle`.
fn line_of(out: &Outcome, needle: &str) -> usize {
    out.stderr
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}:\n{out}"))
}

fn assert_no_propose(cluster: &Cluster, out: &Outcome) {
    let oracle = cluster.oracle();
    assert!(
        oracle.proposes().is_empty(),
        "no propose: {oracle:#?}\n{out}"
    );
    assert!(
        oracle.mutations().is_empty(),
        "nothing changed: {oracle:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn both_example_hooks_run_to_the_end_and_log_in_order_around_the_steps() {
    let cluster = Cluster::pods(3).await;
    quorum(&cluster, 3);
    let dr = Signer::generate(cluster.dir(), "dr");
    cluster.trust(&dr, LOG_GRANTS);
    hook(&cluster, &dr, HOOK_DR_REJOIN_WASM, "hook-dr-rejoin.wasm");
    add_hooks(
        &cluster,
        "[[hooks]]\npath = \"hook-dr-rejoin.wasm\"\nparams = { dr_nodes = \"dr-1, cold-1\" }",
    );

    let out = rotate(&cluster).await;
    assert_eq!(out.code, 0, "{out}");
    assert_rotated_once(&cluster.oracle(), 3);

    // The quorum line comes while propose runs, before its request; the DR lines
    // come once verify-activated is done, after everything else.
    let quorum = line_of(&out, "hook-quorum: quorum: 3 of 3 pods Ready (min_pods 3)");
    let proposing = line_of(&out, "proposing a new key");
    let rejoin = line_of(&out, "hook-dr-rejoin: the new cluster master key is active");
    let dr1 = line_of(&out, "hook-dr-rejoin: must rejoin: dr-1");
    let cold1 = line_of(&out, "hook-dr-rejoin: must rejoin: cold-1");
    let activating = line_of(&out, "activating the new key");
    let propose_begins = line_of(&out, "propose: propose on");
    let verified = line_of(&out, "verify-activated done");
    assert!(propose_begins < quorum && quorum < proposing, "{out}");
    assert!(proposing < activating && activating < verified, "{out}");
    assert!(verified < rejoin, "{out}");
    assert!(rejoin < dr1 && dr1 < cold1, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quorum_hook_vetoes_propose_above_the_pod_count() {
    let cluster = Cluster::pods(3).await;
    quorum(&cluster, 4);

    let out = rotate(&cluster).await;
    assert_eq!(out.code, 1, "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("hook-quorum: quorum not met: 3 of 3 pods Ready, min_pods is 4"),
        "{out}"
    );
    assert!(
        all.contains("vetoed by a site hook before propose"),
        "{out}"
    );
    assert_no_propose(&cluster, &out);

    // The audit trail records the hook's answers: preflight allowed, propose vetoed.
    let seen = hook_records(&cluster);
    let expected = [
        ("hook-quorum before preflight", "allowed"),
        ("hook-quorum after preflight done", "done"),
        ("hook-quorum before propose", "vetoed"),
    ];
    assert_eq!(
        seen,
        expected.map(|(t, o)| (t.to_string(), o.to_string())),
        "{:#?}",
        cluster.audit_records()
    );
}

/// The hostile hook, signed by the trusted "ops" signer, attacking at propose.
fn hostile(cluster: &Cluster, attack: &str, extra: &str) {
    hook(
        cluster,
        &cluster.ops,
        HOOK_HOSTILE_WASM,
        "hostile-hook.wasm",
    );
    add_hooks(
        cluster,
        &format!(
            "[[hooks]]\npath = \"hostile-hook.wasm\"\nparams = {{ attack = \"{attack}\" }}\n{extra}"
        ),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_that_traps_stops_the_run_before_propose() {
    let cluster = Cluster::pods(3).await;
    hostile(&cluster, "trap", "");

    let out = rotate(&cluster).await;
    assert_eq!(out.code, 1, "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("hostile-hook failed: it trapped"), "{out}");
    assert!(all.contains("hostile hook: trap at propose"), "{out}");
    assert_no_propose(&cluster, &out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_that_spins_is_stopped_by_its_time_limit_before_propose() {
    let cluster = Cluster::pods(3).await;
    hostile(&cluster, "spin", "timeout_secs = 1");

    let out = rotate(&cluster).await;
    assert_eq!(out.code, 1, "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("hostile-hook failed: stopped: it ran past its time limit of 1s"),
        "{out}"
    );
    assert_no_propose(&cluster, &out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_signed_by_an_untrusted_key_is_refused_before_any_pod_is_contacted() {
    let cluster = Cluster::pods(3).await;
    let stranger = Signer::generate(cluster.dir(), "stranger");
    hook(&cluster, &stranger, HOOK_QUORUM_WASM, "hook-quorum.wasm");
    add_hooks(
        &cluster,
        "[[hooks]]\npath = \"hook-quorum.wasm\"\nparams = { min_pods = 1 }",
    );

    let out = rotate(&cluster).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("hook-quorum.wasm"), "{out}");
    assert!(out.stderr.contains("refused"), "{out}");
    let oracle = cluster.oracle();
    assert!(oracle.calls.is_empty(), "no pod contacted: {oracle:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsigned_hook_is_refused() {
    let cluster = Cluster::pods(3).await;
    std::fs::copy(HOOK_QUORUM_WASM, cluster.dir().join("hook-quorum.wasm")).unwrap();
    add_hooks(
        &cluster,
        "[[hooks]]\npath = \"hook-quorum.wasm\"\nparams = { min_pods = 1 }",
    );

    let out = rotate(&cluster).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("hook-quorum.wasm"), "{out}");
    assert!(cluster.oracle().calls.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_that_refuses_its_params_stops_the_run_before_any_step() {
    let cluster = Cluster::pods(3).await;
    let signer = Signer::generate(cluster.dir(), "quorum");
    cluster.trust(&signer, QUORUM_GRANTS);
    hook(&cluster, &signer, HOOK_QUORUM_WASM, "hook-quorum.wasm");
    add_hooks(&cluster, "[[hooks]]\npath = \"hook-quorum.wasm\"");

    let out = rotate(&cluster).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("hook hook-quorum"), "{out}");
    assert!(out.stderr.contains("min_pods is required"), "{out}");
    assert!(cluster.oracle().calls.is_empty(), "no pod contacted");
}

/// The hostile procedure (signed by "ops") with `params`, against `site`.
async fn hostile_procedure(cluster: &Cluster, site: &std::path::Path, params: &[&str]) -> Outcome {
    let component = cluster.signed(HOSTILE_WASM);
    let site = site.to_str().unwrap().to_string();
    let mut args = vec!["run", component.as_str(), "--site", site.as_str(), "--yes"];
    for p in params {
        args.extend(["--param", p]);
    }
    run(BIN, &args).await
}

/// The `hooks` records of the audit trail, as (target, outcome).
fn hook_records(cluster: &Cluster) -> Vec<(String, String)> {
    cluster
        .audit_records()
        .into_iter()
        .filter(|r| r["capability"] == "hooks")
        .map(|r| {
            (
                r["target"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const QUORUM_REFUSAL: &str =
    "a site hook's guard refused it: hook-quorum: quorum not met: 3 of 3 pods Ready, min_pods is 4";

#[tokio::test(flavor = "multi_thread")]
async fn the_quorum_guard_refuses_a_propose_from_a_procedure_that_never_calls_its_hooks() {
    let cluster = Cluster::pods(3).await;
    quorum(&cluster, 4);

    // A propose, then a fetch (which the guard itself would allow).
    let out = hostile_procedure(
        &cluster,
        cluster.site(),
        &[
            "attack=post",
            "path=/cluster/v1/key/propose,/cluster/v1/key/fetch",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains(QUORUM_REFUSAL), "{out}");
    // The refusal stopped the run at the gate: the fetch is refused too.
    assert!(
        out.stdout.contains(
            "/cluster/v1/key/fetch denied: a site hook's guard refused POST /cluster/v1/key/propose"
        ),
        "{out}"
    );
    assert_no_propose(&cluster, &out);
    // The host asked the guard itself; no step hook was called.
    assert_eq!(
        hook_records(&cluster),
        [(
            "hook-quorum guard POST /cluster/v1/key/propose".to_string(),
            "refused".to_string()
        )]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quorum_guard_refuses_a_propose_in_a_batch_and_the_stopped_gate_the_rest() {
    let cluster = Cluster::pods(3).await;
    quorum(&cluster, 4);

    let out = hostile_procedure(
        &cluster,
        cluster.site(),
        &[
            "attack=post",
            "batch=true",
            "path=/cluster/v1/key/propose,/cluster/v1/key/fetch,/cluster/v1/key/fetch",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains(QUORUM_REFUSAL), "{out}");
    assert_eq!(
        out.stdout.matches("/cluster/v1/key/fetch denied").count(),
        2,
        "{out}"
    );
    assert_no_propose(&cluster, &out);
    // The trail says why each was not sent: the stopped gate, not the policy.
    let fetches: Vec<serde_json::Value> = cluster
        .audit_records()
        .into_iter()
        .filter(|r| {
            r["capability"] == "http"
                && r["target"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("POST ") && t.ends_with("/cluster/v1/key/fetch"))
        })
        .collect();
    assert_eq!(fetches.len(), 2, "{fetches:?}");
    for r in &fetches {
        assert_eq!(r["outcome"], "denied", "{r}");
        assert!(
            r["detail"]
                .as_str()
                .is_some_and(|d| d.ends_with(": not sent")),
            "{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quorum_guard_refuses_a_propose_from_a_procedure_that_calls_its_hooks() {
    let cluster = Cluster::pods(3).await;
    quorum(&cluster, 4);

    // It calls its hooks, for a step the quorum hook allows, then proposes.
    let out = hostile_procedure(
        &cluster,
        cluster.site(),
        &["attack=post", "hooks_step=preflight"],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains(QUORUM_REFUSAL), "{out}");
    assert_no_propose(&cluster, &out);
    let records = hook_records(&cluster);
    assert_eq!(records[0].0, "hook-quorum before preflight", "{records:?}");
    assert_eq!(records[0].1, "allowed", "{records:?}");
    assert!(
        records.contains(&(
            "hook-quorum guard POST /cluster/v1/key/propose".to_string(),
            "refused".to_string()
        )),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quorum_guard_lets_the_rotation_through_at_quorum() {
    let cluster = Cluster::pods(3).await;
    quorum(&cluster, 3);

    let out = rotate(&cluster).await;
    assert_eq!(out.code, 0, "{out}");
    assert_rotated_once(&cluster.oracle(), 3);
    let records = hook_records(&cluster);
    assert!(
        records.contains(&(
            "hook-quorum guard POST /cluster/v1/key/propose".to_string(),
            "allowed".to_string()
        )),
        "{records:?}"
    );
    assert!(
        records.contains(&(
            "hook-quorum guard rolling-restart".to_string(),
            "allowed".to_string()
        )),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guard_that_traps_denies_the_call() {
    let cluster = Cluster::pods(3).await;
    hostile(&cluster, "guard-trap", "");

    let out = rotate(&cluster).await;
    assert_eq!(out.code, 1, "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("a site hook's guard refused it: hostile-hook failed: it trapped"),
        "{out}"
    );
    assert!(
        all.contains("hostile guard: trap at POST /cluster/v1/key/propose"),
        "{out}"
    );
    assert_no_propose(&cluster, &out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guard_that_spins_is_stopped_by_its_time_limit_and_denies_the_call() {
    let cluster = Cluster::pods(3).await;
    hostile(&cluster, "guard-spin", "timeout_secs = 1");

    let out = rotate(&cluster).await;
    assert_eq!(out.code, 1, "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains(
            "a site hook's guard refused it: hostile-hook failed: stopped: it ran past its time limit of 1s"
        ),
        "{out}"
    );
    assert_no_propose(&cluster, &out);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_veto_every_mutating_call_is_refused_even_when_the_procedure_ignores_it() {
    let cluster = Cluster::pods(3).await;
    // A hook with no guard that vetoes propose: only the veto can stop the calls.
    hostile(&cluster, "veto", "");

    let out = hostile_procedure(
        &cluster,
        cluster.site(),
        &["attack=post", "hooks_step=propose"],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout.contains(
            "denied: a site hook vetoed propose: hostile-hook: hostile hook: veto at propose: not sent"
        ),
        "{out}"
    );
    assert_no_propose(&cluster, &out);

    let out = hostile_procedure(
        &cluster,
        cluster.site(),
        &["attack=restart", "hooks_step=propose"],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("a site hook vetoed propose: hostile-hook: hostile hook: veto at propose"),
        "{out}"
    );
    let oracle = cluster.oracle();
    assert!(oracle.restarts.is_empty(), "no restart: {oracle:#?}");
    assert_eq!(oracle.restarts_started, 0, "no restart started");
    assert!(
        oracle.mutations().is_empty(),
        "nothing changed: {oracle:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_procedure_that_does_not_import_hooks_is_refused_when_the_site_has_hooks() {
    let cluster = Cluster::pods(3).await;
    quorum(&cluster, 1);

    // guest-status is read-only: it has no steps for a hook to see.
    let component = cluster.signed(STATUS_WASM);
    let site = cluster.site().to_str().unwrap().to_string();
    let out = run(BIN, &["run", &component, "--site", &site]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("[[hooks]] (hook-quorum)"), "{out}");
    assert!(
        out.stderr
            .contains("does not import cmk:procedure/hooks@0.1.0"),
        "{out}"
    );
    let oracle = cluster.oracle();
    assert!(oracle.calls.is_empty(), "no pod contacted: {oracle:#?}");
}

/// The generated site file with `[cluster] expect_pods = n`.
fn expecting(cluster: &Cluster, n: usize) -> std::path::PathBuf {
    cluster.site_with(&format!("expect-{n}.toml"), |t| {
        t.replace(
            "port = 4444\n",
            &format!("port = 4444\nexpect_pods = {n}\n"),
        )
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_pods_refuses_every_mutating_call_of_a_procedure_that_ignores_it() {
    let cluster = Cluster::pods(3).await;
    let site = expecting(&cluster, 4);
    let counts = "expected 4 pods ([cluster] expect_pods), the selector matches 3: sdkms-0, sdkms-1, sdkms-2";

    let out = hostile_procedure(&cluster, &site, &["attack=post"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("denied"), "{out}");
    assert!(out.stdout.contains(counts), "{out}");

    let out = hostile_procedure(&cluster, &site, &["attack=restart"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains(counts), "{out}");

    let oracle = cluster.oracle();
    assert!(oracle.mutations().is_empty(), "no POST: {oracle:#?}");
    assert_eq!(oracle.restarts_started, 0, "no restart: {oracle:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_with_expect_pods_runs_procedures_that_do_not_know_it() {
    let cluster = Cluster::pods(3).await;
    let site = expecting(&cluster, 3);
    // Both refuse parameters they do not know: the host passes them no `expect_pods`.
    for wasm in [STATUS_WASM, HELLO_WASM] {
        let component = cluster.signed(wasm);
        let out = run(BIN, &["run", &component, "--site", site.to_str().unwrap()]).await;
        assert_eq!(out.code, 0, "{wasm}: {out}");
        assert!(!out.stdout.contains("expect_pods"), "{out}");
    }
    assert!(cluster.oracle().mutations().is_empty());
}
