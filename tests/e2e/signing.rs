//! Signed components and per-signer grants, end to end: the real binary, real
//! components, the simulated cluster. Every refusal is asserted on the simulator's
//! oracle (no request reached a pod, no restart ran) and on the precompile cache
//! (nothing was compiled: wasmtime never saw the bytes).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cmk_tests::{Cluster, Outcome, PROBE_WASM, ROTATE_WASM, Signer, run};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

/// Runs `component` against the cluster's site (plus `extra` args) with a private
/// cache directory.
async fn run_component(
    cluster: &Cluster,
    component: &str,
    cache: &Path,
    extra: &[&str],
) -> Outcome {
    let site = cluster.site().to_str().unwrap().to_string();
    let cache = cache.to_str().unwrap().to_string();
    let mut args = vec!["run", component, "--site", &site, "--cache-dir", &cache];
    args.extend_from_slice(extra);
    run(BIN, &args).await
}

/// Exit 3, the message, and nothing happened: no request to any pod, no restart,
/// nothing compiled.
fn assert_refused(cluster: &Cluster, cache: &Path, out: &Outcome, why: &str) {
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("refused: "), "{out}");
    assert!(out.stderr.contains(why), "expected {why:?}: {out}");
    let oracle = cluster.oracle();
    assert!(
        oracle.calls.is_empty(),
        "no request at all: {:#?}",
        oracle.calls
    );
    assert!(oracle.restarts.is_empty(), "no restart");
    let compiled = std::fs::read_dir(cache).map_or(0, |d| d.count());
    assert_eq!(compiled, 0, "nothing compiled or cached");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsigned_component_is_refused_and_nothing_runs() {
    let cluster = Cluster::pods(3).await;
    let cache = tempfile::tempdir().unwrap();
    let out = run_component(&cluster, ROTATE_WASM, cache.path(), &[]).await;
    assert_refused(&cluster, cache.path(), &out, "not signed");
    assert!(
        out.stderr.contains("cmk-host sign"),
        "says how to fix it: {out}"
    );
}

/// The offset of the first byte after `needle` in `bytes`.
fn after(bytes: &[u8], needle: &[u8]) -> usize {
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(needle)))
        + needle.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_flipped_byte_anywhere_is_refused() {
    let cluster = Cluster::pods(3).await;
    let signed = std::fs::read(cluster.signed(ROTATE_WASM)).unwrap();
    let unsigned_len = std::fs::read(ROTATE_WASM).unwrap().len();
    let signature_end = signed.len() - unsigned_len + 8;
    let places = [
        // A byte of the signature itself (inside the Ed25519 signature, at the end
        // of the signature section).
        ("signature", signature_end - 5),
        // A code byte, well inside the embedded core module.
        ("code", signature_end + (signed.len() - signature_end) / 2),
        // A byte of a custom section the runtime never reads (the name section of
        // the embedded core module, or the producers section).
        ("custom section", after(&signed, b"producers") + 2),
        // The last byte of the file.
        ("last byte", signed.len() - 1),
    ];
    for (what, at) in places {
        let mut bad = signed.clone();
        bad[at] ^= 0x01;
        let path = cluster.dir().join(format!("flipped-{at}.wasm"));
        std::fs::write(&path, &bad).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let out = run_component(&cluster, path.to_str().unwrap(), cache.path(), &[]).await;
        assert_eq!(out.code, 3, "{what} (byte {at}) flipped: {out}");
        assert_refused(&cluster, cache.path(), &out, "refused");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_not_in_the_trust_list_is_refused_and_named() {
    let cluster = Cluster::pods(3).await;
    let stranger = Signer::generate(cluster.dir(), "stranger");
    let component = stranger.sign(ROTATE_WASM, &cluster.dir().join("stranger.wasm"));
    let cache = tempfile::tempdir().unwrap();
    let out = run_component(&cluster, &component, cache.path(), &[]).await;
    assert_refused(
        &cluster,
        cache.path(),
        &out,
        &format!(
            "signed by key {}, which is not trusted here",
            stranger.key_id
        ),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_stripped_and_re_added_by_another_key_is_refused() {
    let cluster = Cluster::pods(3).await;
    let signed = std::fs::read(cluster.signed(ROTATE_WASM)).unwrap();
    // Strip the ops signature (the first section after the preamble) by hand, then
    // sign what is left with another key.
    let section_len = signed[9] as usize | ((signed[10] as usize & 0x7f) << 7);
    assert!(
        signed[9] & 0x80 != 0 && signed[10] & 0x80 == 0,
        "2-byte LEB length"
    );
    let mut stripped = signed[..8].to_vec();
    stripped.extend_from_slice(&signed[11 + section_len..]);
    assert_eq!(
        stripped,
        std::fs::read(ROTATE_WASM).unwrap(),
        "stripped whole"
    );
    let mallory = Signer::generate(cluster.dir(), "mallory");
    let path = cluster.dir().join("resigned.wasm");
    std::fs::write(&path, mallory.sign_bytes(&stripped)).unwrap();

    let cache = tempfile::tempdir().unwrap();
    let out = run_component(&cluster, path.to_str().unwrap(), cache.path(), &[]).await;
    assert_refused(&cluster, cache.path(), &out, &mallory.key_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_runs_only_when_the_site_and_the_flag_both_allow_it_and_always_warns() {
    let cluster = Cluster::pods(1).await;
    let cache = tempfile::tempdir().unwrap();

    // The flag alone: refused, and told what the site would need.
    let out = run_component(&cluster, ROTATE_WASM, cache.path(), &["--allow-unsigned"]).await;
    assert_refused(&cluster, cache.path(), &out, "not signed");
    assert!(out.stderr.contains("allow_unsigned = true"), "{out}");

    // The site alone: refused.
    let lax = cluster.site_with("lax.toml", |s| {
        s.replacen(
            "[[trust.signer]]",
            "[trust]\nallow_unsigned = true\n\n[[trust.signer]]",
            1,
        )
    });
    let lax = lax.to_str().unwrap();
    let out = run(BIN, &["run", ROTATE_WASM, "--site", lax, "--no-cache"]).await;
    assert_refused(&cluster, cache.path(), &out, "not signed");
    assert!(out.stderr.contains("only with --allow-unsigned"), "{out}");

    // Both: it runs, with a warning, every time.
    for _ in 0..2 {
        let out = run(
            BIN,
            &[
                "run",
                ROTATE_WASM,
                "--site",
                lax,
                "--no-cache",
                "--allow-unsigned",
                "--plan",
                "--json",
            ],
        )
        .await;
        assert_eq!(out.code, 0, "{out}");
        assert!(
            out.stderr
                .contains("--allow-unsigned: a component without a signature will run"),
            "{out}"
        );
        assert!(
            out.stderr.contains("running an UNSIGNED component"),
            "{out}"
        );
        let report = out.json();
        assert!(report.get("signer").is_none(), "{report}");
        assert!(report.get("key_id").is_none(), "{report}");
    }
    assert!(
        cluster.oracle().mutations().is_empty(),
        "--plan changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signer_granted_only_pods_and_log_cannot_restart_or_call_http() {
    let cluster = Cluster::pods(2).await;
    let vendor = Signer::generate(cluster.dir(), "vendor");
    cluster.trust(&vendor, r#"capabilities = ["pods", "log"]"#);
    let probe = vendor.sign(PROBE_WASM, &cluster.dir().join("vendor-probe.wasm"));
    let (_, pod_ip) = cluster.sim.pod_ips().remove(0);
    let propose = format!("POST https://{pod_ip}:4444/cluster/v1/key/propose");
    let status = format!("GET https://{pod_ip}:4444/cluster/v1/key");
    let cache = tempfile::tempdir().unwrap();
    let requests = format!("requests={propose}|{status}");
    let out = run_component(
        &cluster,
        &probe,
        cache.path(),
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
    assert_eq!(report["signer"], "vendor", "{out}");
    assert_eq!(report["key_id"], vendor.key_id.as_str(), "{out}");

    let steps = report["steps"].as_array().unwrap();
    let detail = |name: &str| {
        steps
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {out}"))["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(detail("pods.list"), "ok 2 pods", "pods is granted");
    for call in [&propose, &status] {
        let d = detail(call);
        assert!(
            d.starts_with("denied: ") && d.contains("http is not granted"),
            "{d}"
        );
    }
    let d = detail("restart");
    assert!(
        d.starts_with("denied: ") && d.contains("restart is not granted"),
        "{d}"
    );
    let denied: Vec<&str> = report["denials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["capability"].as_str().unwrap())
        .collect();
    assert_eq!(denied, ["http", "http", "restart"], "{out}");

    let oracle = cluster.oracle();
    assert!(
        oracle.calls.is_empty(),
        "no request reached a pod: {:#?}",
        oracle.calls
    );
    assert!(oracle.restarts.is_empty(), "no restart ran");
    assert_eq!(oracle.version, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_and_report_name_the_signer_key_and_digest() {
    let cluster = Cluster::pods(1).await;
    let component = cluster.signed(ROTATE_WASM);
    let cache = tempfile::tempdir().unwrap();
    let out = run_component(&cluster, &component, cache.path(), &["--plan", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let report = out.json();
    assert_eq!(report["signer"], "ops");
    assert_eq!(report["key_id"], cluster.ops.key_id.as_str());
    let sha256 = report["component_sha256"].as_str().unwrap();
    assert_eq!(sha256.len(), 64);
    let verified = out
        .stderr
        .lines()
        .find(|l| l.contains("verified"))
        .unwrap_or_else(|| panic!("no 'verified' log line: {out}"));
    assert!(verified.contains(&cluster.ops.key_id), "{verified}");
    assert!(verified.contains(sha256), "{verified}");
    assert!(verified.contains("signer=ops"), "{verified}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_second_run_loads_from_the_cache_and_a_corrupted_entry_is_recompiled() {
    let cluster = Cluster::pods(1).await;
    let component = cluster.signed(ROTATE_WASM);
    let base = tempfile::tempdir().unwrap();
    let cache = base.path().join("cmk-host");
    let plan = async |cache: &Path| {
        let out = run_component(&cluster, &component, cache, &["--plan", "--json"]).await;
        assert_eq!(out.code, 0, "{out}");
        let status = out.json()["cache"].as_str().unwrap().to_string();
        assert!(out.stderr.contains(&format!("cache: {status}")), "{out}");
        status
    };

    assert_eq!(plan(&cache).await, "stored");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache), 0o700, "the host creates its cache 0700");
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(mode(entry), 0o600, "entries are 0600");

    assert_eq!(
        plan(&cache).await,
        "hit",
        "the second run does not recompile"
    );

    // Corrupt the compiled code: discarded and recompiled, not loaded.
    let mut data = std::fs::read(entry).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0xff;
    std::fs::write(entry, &data).unwrap();
    assert_eq!(plan(&cache).await, "discarded");
    assert_eq!(plan(&cache).await, "hit", "and stored again");

    let out = run(
        BIN,
        &[
            "run",
            &component,
            "--site",
            cluster.site().to_str().unwrap(),
            "--no-cache",
            "--plan",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.json()["cache"], "off", "{out}");
    assert!(cluster.oracle().mutations().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn keygen_sign_and_verify_from_the_command_line() {
    let cluster = Cluster::pods(1).await;
    let dir = cluster.dir();
    let name = dir.join("team");
    let out = run(BIN, &["keygen", "--out", name.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{out}");
    let key_id = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("key id: "))
        .unwrap_or_else(|| panic!("no key id: {out}"))
        .to_string();
    let secret = dir.join("team.key");
    let public = dir.join("team.pub");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A second keygen never overwrites.
    let again = run(BIN, &["keygen", "--out", name.to_str().unwrap()]).await;
    assert_eq!(again.code, 2, "{again}");

    let signed = dir.join("team-rotate.wasm");
    let out = run(
        BIN,
        &[
            "sign",
            "--key",
            secret.to_str().unwrap(),
            ROTATE_WASM,
            "-o",
            signed.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let (public, signed) = (public.to_str().unwrap(), signed.to_str().unwrap());

    let out = run(BIN, &["verify", "--key", public, signed]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains(&key_id), "{out}");
    let out = run(BIN, &["verify", "--key", public, ROTATE_WASM]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("not signed"), "{out}");

    // With the site: untrusted until listed, then verified with its name and grants.
    let site = cluster.site().to_str().unwrap();
    let out = run(BIN, &["verify", "--site", site, signed]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains(&key_id), "{out}");
    let listed = cluster.site_with("team.toml", |s| {
        format!(
            "{s}\n[[trust.signer]]\nname = \"team\"\nkey = \"team.pub\"\ncapabilities = [\"pods\", \"log\", \"http\"]\n\
             http_methods = [\"GET\"]\nhttp_paths = [\"/cluster/v1/key\"]\n"
        )
    });
    let out = run(BIN, &["verify", "--site", listed.to_str().unwrap(), signed]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("signed by team"), "{out}");
    assert!(
        out.stdout
            .contains("grants: pods, http (GET under /cluster/v1/key), log"),
        "{out}"
    );

    // A detached signature verifies (and runs) the unchanged file.
    let sig = dir.join("rotate.sig");
    let out = run(
        BIN,
        &[
            "sign",
            "--key",
            secret.to_str().unwrap(),
            ROTATE_WASM,
            "-o",
            sig.to_str().unwrap(),
            "--detached",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let sig = sig.to_str().unwrap();
    let out = run(
        BIN,
        &["verify", "--key", public, ROTATE_WASM, "--signature", sig],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let out = run(
        BIN,
        &[
            "run",
            ROTATE_WASM,
            "--site",
            listed.to_str().unwrap(),
            "--signature",
            sig,
            "--plan",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json()["signer"], "team");
    assert!(cluster.oracle().mutations().is_empty());
}

/// An edit of the generated site file's text.
type SiteEdit = fn(String) -> String;

#[tokio::test(flavor = "multi_thread")]
async fn trust_section_mistakes_are_site_errors_that_name_the_key() {
    let cluster = Cluster::pods(1).await;
    let component = cluster.signed(ROTATE_WASM);
    let cases: [(&str, SiteEdit, &str); 3] = [
        (
            "typo.toml",
            |s: String| {
                s.replacen(
                    "[[trust.signer]]",
                    "[trust]\nallow_unsgned = true\n\n[[trust.signer]]",
                    1,
                )
            },
            "[trust] allow_unsgned",
        ),
        (
            "missing.toml",
            |s: String| s.replace("key = \"ops.pub\"", "key = \"gone.pub\""),
            "[[trust.signer]] key: signer \"ops\": cannot read",
        ),
        (
            "capability.toml",
            |s: String| s.replace("\"confirm\"]", "\"disk\"]"),
            "[[trust.signer]] capabilities",
        ),
    ];
    for (name, edit, key) in cases {
        let site = cluster.site_with(name, edit);
        let out = run(BIN, &["run", &component, "--site", site.to_str().unwrap()]).await;
        assert_eq!(out.code, 2, "{out}");
        assert!(out.stderr.contains(name), "names the file: {out}");
        assert!(out.stderr.contains(key), "names {key:?}: {out}");
    }
    assert!(cluster.oracle().calls.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_signs_with_an_ephemeral_key_and_takes_the_verification_path() {
    let out = run(BIN, &["demo", "--pods", "1"]).await;
    assert_eq!(out.code, 0, "{out}");
    let key_id = out
        .stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("signed the bundled component with ephemeral key ")
        })
        .unwrap_or_else(|| panic!("the demo prints its key id: {out}"))
        .to_string();
    assert_eq!(key_id.len(), 24, "{out}");
    assert!(
        out.stdout
            .contains(&format!("signed by: demo-signer (key {key_id})")),
        "{out}"
    );
    let verified = out
        .stderr
        .lines()
        .find(|l| l.contains(" verified "))
        .unwrap_or_else(|| panic!("no 'verified' log line: {out}"));
    assert!(verified.contains(&format!("key_id={key_id}")), "{verified}");
}

/// The journal is state a later run trusts: a signer not granted it cannot read or
/// write it. The rotation knows its grants from the run's context and stops before
/// its first request, naming the grant and the site key that gives it; nothing is
/// proposed (it used to propose and only then find it could not record it).
#[tokio::test(flavor = "multi_thread")]
async fn a_signer_without_the_journal_grant_cannot_rotate() {
    let cluster = Cluster::pods(2).await;
    let vendor = Signer::generate(cluster.dir(), "vendor");
    cluster.trust(
        &vendor,
        r#"capabilities = ["pods", "http", "restart", "log", "confirm"]
http_methods = ["GET", "POST"]
http_paths = ["/cluster/v1/key"]"#,
    );
    let rotate = vendor.sign(ROTATE_WASM, &cluster.dir().join("vendor-rotate.wasm"));
    let cache = tempfile::tempdir().unwrap();
    let out = run_component(&cluster, &rotate, cache.path(), &["--yes", "--json"]).await;
    assert_refused_by_the_procedure(
        &cluster,
        &out,
        "journal is not granted: add \"journal\" to [[trust.signer]] capabilities",
    );
}

/// A signer granted only GET: the rotation refuses before its first request, naming
/// POST and the key that grants it; no POST reaches any pod.
#[tokio::test(flavor = "multi_thread")]
async fn a_signer_without_post_cannot_rotate_and_sends_nothing() {
    let cluster = Cluster::pods(2).await;
    let vendor = Signer::generate(cluster.dir(), "vendor");
    cluster.trust(
        &vendor,
        r#"capabilities = ["pods", "http", "restart", "log", "journal", "confirm"]
http_methods = ["GET"]
http_paths = ["/cluster/v1/key"]"#,
    );
    let rotate = vendor.sign(ROTATE_WASM, &cluster.dir().join("vendor-rotate.wasm"));
    let cache = tempfile::tempdir().unwrap();
    let out = run_component(&cluster, &rotate, cache.path(), &["--yes", "--json"]).await;
    assert_refused_by_the_procedure(
        &cluster,
        &out,
        "POST is not granted: add \"POST\" to [[trust.signer]] http_methods",
    );

    // Its plan shows the steps that need POST as refused, not as planned, naming
    // the grant; the plan itself is a report (exit 0) and sends no POST.
    let out = run_component(&cluster, &rotate, cache.path(), &["--plan", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let report = out.json();
    let step = |name: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {out}"))
            .clone()
    };
    for name in ["propose", "distribute", "activate"] {
        let s = step(name);
        assert_eq!(s["outcome"], "refused", "{name}: {out}");
        let detail = s["detail"].as_str().unwrap();
        assert!(detail.contains("POST is not granted"), "{name}: {detail}");
    }
    for name in ["verify-distributed", "restart-load", "verify-activated"] {
        assert_eq!(step(name)["outcome"], "planned", "{name}: {out}");
    }
    assert!(
        cluster.oracle().mutations().is_empty(),
        "plan sends no POST"
    );
}

/// The run's context tells the procedure its grants: the site's narrowed to the
/// signer's, and whether a confirmation can be answered (`confirm` and `--yes`).
#[tokio::test(flavor = "multi_thread")]
async fn the_context_tells_the_procedure_its_grants() {
    let cluster = Cluster::pods(1).await;
    let vendor = Signer::generate(cluster.dir(), "vendor");
    cluster.trust(
        &vendor,
        r#"capabilities = ["pods", "http", "log", "confirm"]
http_methods = ["GET"]
http_paths = ["/cluster/v1/key"]"#,
    );
    let probe = vendor.sign(PROBE_WASM, &cluster.dir().join("vendor-probe.wasm"));
    let cache = tempfile::tempdir().unwrap();
    let grants = |out: &Outcome| {
        out.json()["steps"][0]["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("no grants step: {out}"))
            .to_string()
    };
    let args = ["--param", "grants=true", "--json"];
    let out = run_component(&cluster, &probe, cache.path(), &args).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        grants(&out),
        "capabilities=pods,http,log,confirm methods=GET paths=/cluster/v1/key answerable=false",
        "no terminal and no --yes: a confirmation cannot be answered"
    );
    let out = run_component(
        &cluster,
        &probe,
        cache.path(),
        &[&args[..], &["--yes"]].concat(),
    )
    .await;
    assert!(grants(&out).ends_with("answerable=true"), "{out}");
}

/// Exit 1 at preflight, before any request reached a pod: the reason names `why`.
fn assert_refused_by_the_procedure(cluster: &Cluster, out: &Outcome, why: &str) {
    assert_eq!(out.code, 1, "{out}");
    let report = out.json();
    assert_eq!(report["failure"]["step"], "preflight", "{out}");
    let reason = report["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains(why), "expected {why:?}: {out}");
    assert_eq!(report["failure"]["safe_to_resume"], true, "{out}");
    let oracle = cluster.oracle();
    assert!(oracle.calls.is_empty(), "no request at all: {oracle:#?}");
    assert!(oracle.mutations().is_empty(), "no POST: {oracle:#?}");
    assert!(oracle.restarts.is_empty(), "no restart");
    assert_eq!(oracle.version, 1);
}

/// Without the confirm grant every question is answered no: the rotation stops
/// before activating, even with --yes.
#[tokio::test(flavor = "multi_thread")]
async fn a_signer_without_the_confirm_grant_never_activates() {
    let cluster = Cluster::pods(2).await;
    let vendor = Signer::generate(cluster.dir(), "vendor");
    cluster.trust(
        &vendor,
        r#"capabilities = ["pods", "http", "restart", "log", "journal"]
http_methods = ["GET", "POST"]
http_paths = ["/cluster/v1/key"]"#,
    );
    let rotate = vendor.sign(ROTATE_WASM, &cluster.dir().join("vendor-rotate.wasm"));
    let cache = tempfile::tempdir().unwrap();
    let out = run_component(&cluster, &rotate, cache.path(), &["--yes", "--json"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("confirm is not granted"), "{out}");
    let oracle = cluster.oracle();
    assert!(
        oracle.activates().is_empty(),
        "never activated: {oracle:#?}"
    );
    assert_eq!(oracle.version, 1);
    assert!(oracle.broken_pods().is_empty());
}

/// `inspect --site` judges as `run` does, signature first: what `run` refuses
/// (unsigned, an untrusted key, modified after signing) is "refused", exit 3, and
/// nothing was compiled; a signed component is shown with the site's grants
/// narrowed to its signer.
#[tokio::test(flavor = "multi_thread")]
async fn inspect_verifies_the_signature_first_and_shows_the_signers_grants() {
    let cluster = Cluster::pods(1).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let inspect = |component: String, json: bool| {
        let site = site.clone();
        async move {
            let mut args = vec!["inspect".to_string(), component, "--site".into(), site];
            if json {
                args.push("--json".into());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(BIN, &args).await
        }
    };
    let line = |out: &Outcome, want: &str| {
        assert!(
            out.stdout.lines().any(|l| l == want),
            "no line {want:?} in:\n{out}"
        );
    };

    // Unsigned: refused, as `run` refuses it.
    let out = inspect(ROTATE_WASM.to_string(), false).await;
    assert_eq!(out.code, 3, "{out}");
    line(&out, "grants     nothing");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("verdict    refused: not signed")),
        "{out}"
    );
    assert!(!out.stdout.contains("runnable"), "{out}");
    assert!(
        !out.stdout.contains("cmk:procedure/http"),
        "not compiled: {out}"
    );
    let json = inspect(ROTATE_WASM.to_string(), true).await.json();
    assert_eq!(json["compiled"], false);
    assert!(
        json["refused"]
            .as_str()
            .unwrap()
            .starts_with("refused: not signed")
    );

    // Signed by a key the site does not trust, and modified after signing.
    let stranger = Signer::generate(cluster.dir(), "stranger");
    let foreign = stranger.sign(ROTATE_WASM, &cluster.dir().join("foreign.wasm"));
    let out = inspect(foreign, false).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stdout.contains("which is not trusted here"), "{out}");
    assert!(out.stdout.contains(&stranger.key_id), "{out}");
    let signed = cluster.signed(ROTATE_WASM);
    let mut bytes = std::fs::read(&signed).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let modified = cluster.dir().join("modified.wasm");
    std::fs::write(&modified, bytes).unwrap();
    let out = inspect(modified.to_str().unwrap().to_string(), false).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stdout.contains("modified after signing"), "{out}");

    // Signed by a trusted signer: the site's grants narrowed to that signer's.
    let vendor = Signer::generate(cluster.dir(), "vendor");
    cluster.trust(&vendor, r#"capabilities = ["pods", "log"]"#);
    let probe = vendor.sign(PROBE_WASM, &cluster.dir().join("vendor-probe.wasm"));
    let out = inspect(probe, false).await;
    assert_eq!(out.code, 0, "{out}");
    line(
        &out,
        &format!("signature  signed by vendor (key {})", vendor.key_id),
    );
    line(
        &out,
        "verdict    runnable: every import is provided by this host",
    );
    line(&out, "grants     pods, log");
    let out = inspect(signed, true).await;
    assert_eq!(out.code, 0, "{out}");
    let json = out.json();
    assert_eq!(json["signer"], "ops", "{out}");
    assert_eq!(json["key_id"], cluster.ops.key_id.as_str(), "{out}");
}

/// 14 bytes whose one section claims 4 GiB: refused (exit 3) before any parser
/// allocates what the length says. `verify` runs under a 2 GiB address-space limit,
/// so a 4 GiB allocation would abort it; `run` and `inspect` refuse it too.
#[tokio::test(flavor = "multi_thread")]
async fn a_section_longer_than_the_file_is_refused_before_it_is_read() {
    let cluster = Cluster::pods(1).await;
    let file = cluster.dir().join("huge-section.wasm");
    std::fs::write(
        &file,
        [
            0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f,
        ],
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let script = format!(
        "ulimit -v 2097152 && exec {BIN} verify --key {} {file}",
        cluster.ops.public.display()
    );
    let out = run("/bin/sh", &["-c", &script]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(
        out.stderr
            .contains("claims 4294967295 bytes, but only 0 remain"),
        "{out}"
    );
    let site = cluster.site().to_str().unwrap();
    let out = run(BIN, &["run", file, "--site", site]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("claims 4294967295 bytes"), "{out}");
    let out = run(BIN, &["inspect", file, "--site", site]).await;
    assert_eq!(out.code, 3, "{out}");
    let out = run(BIN, &["inspect", file]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(cluster.oracle().calls.is_empty());
}
