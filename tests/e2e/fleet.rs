//! `cmk-host fleet`: many simulated clusters rotated by one process (and by the
//! shards of an Indexed Job), asserted on each cluster's own oracle.

use std::path::{Path, PathBuf};

use cmk_sim::{Faults, SimConfig};
use cmk_tests::{
    ALL_GRANTS, Cluster, HOOK_HOSTILE_WASM, Outcome, PROBE_WASM, ROTATE_WASM, Signer,
    assert_completed_once, assert_rotated_once, run,
};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");
const PODS: usize = 3;

/// Simulated clusters named `c0`, `c1`, ..., each trusting one fleet signer, and the
/// rotation signed by it.
struct Fleet {
    clusters: Vec<Cluster>,
    component: String,
    /// The policy probe (`tests/guests/probe`), signed by the same key.
    probe: String,
    /// The key every cluster trusts.
    signer: Signer,
    dir: tempfile::TempDir,
}

impl Fleet {
    /// `n` clusters; `faults(i)` are cluster i's injected faults.
    async fn start(n: usize, faults: impl Fn(usize) -> Faults) -> Fleet {
        Fleet::start_with(n, |i| SimConfig {
            faults: faults(i),
            ..SimConfig::pods(PODS)
        })
        .await
    }

    /// `n` clusters; `config(i)` is cluster i's simulator.
    async fn start_with(n: usize, config: impl Fn(usize) -> SimConfig) -> Fleet {
        let dir = tempfile::tempdir().expect("temp dir");
        let signer = Signer::generate(dir.path(), "fleet-ops");
        let mut clusters = Vec::new();
        for i in 0..n {
            let cluster = Cluster::start(config(i)).await;
            let text = std::fs::read_to_string(cluster.site()).unwrap();
            std::fs::write(
                cluster.site(),
                text.replacen("name = \"sim\"", &format!("name = \"c{i}\""), 1),
            )
            .unwrap();
            std::fs::copy(&signer.public, cluster.dir().join("fleet-ops.pub")).unwrap();
            cluster.trust(&signer, ALL_GRANTS);
            clusters.push(cluster);
        }
        let component = signer.sign(ROTATE_WASM, &dir.path().join("rotate.wasm"));
        let probe = signer.sign(PROBE_WASM, &dir.path().join("probe.wasm"));
        Fleet {
            clusters,
            component,
            probe,
            signer,
            dir,
        }
    }

    /// The hostile component (`tests/guests/hostile`), signed by the fleet's key.
    fn hostile(&self) -> String {
        self.signer.sign(
            cmk_tests::HOSTILE_WASM,
            &self.dir.path().join("hostile.wasm"),
        )
    }

    fn sites(&self) -> Vec<String> {
        self.clusters
            .iter()
            .map(|c| c.site().to_str().unwrap().to_string())
            .collect()
    }

    /// `cmk-host fleet --component C <flags> -- SITE...`
    async fn run(&self, flags: &[&str]) -> Outcome {
        self.run_component(&self.component, flags).await
    }

    /// `component` over every cluster by `cmk_host::fleet::execute` in this process,
    /// on the caller's runtime (`--yes` when `yes`).
    async fn execute(&self, component: &Path, yes: bool) -> cmk_host::fleet::FleetReport {
        let options = cmk_host::fleet::FleetOptions {
            component: component.to_path_buf(),
            sites: self
                .clusters
                .iter()
                .map(|c| c.site().to_path_buf())
                .collect(),
            max_parallel: 8,
            max_failures: None,
            shard: None,
            plan: false,
            yes,
            stop_before_activate: false,
            params: Vec::new(),
            events: Default::default(),
        };
        let bytes = std::fs::read(component).unwrap();
        cmk_host::fleet::execute(
            &options,
            &bytes,
            &cmk_host::launch::Launch::default(),
            &cmk_host::ui::Terminal::new(false),
            cmk_host::stop::Stop::default(),
        )
        .await
        .expect("the fleet runs")
    }

    async fn run_component(&self, component: &str, flags: &[&str]) -> Outcome {
        let sites = self.sites();
        let mut args = vec!["fleet", "--component", component];
        args.extend(flags);
        args.push("--");
        args.extend(sites.iter().map(String::as_str));
        run(BIN, &args).await
    }
}

/// The fleet document's record of cluster `name`.
fn record<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .find(|c| c["cluster"] == name)
        .unwrap_or_else(|| panic!("no record of {name}: {doc:#}"))
}

/// The hostile hook (`tests/guests/hook-hostile`), signed by the cluster's operators,
/// in the cluster's site file with `attack` and the `[[hooks]]` keys of `keys`.
fn add_hostile_hook(cluster: &Cluster, attack: &str, keys: &str) {
    cluster
        .ops
        .sign(HOOK_HOSTILE_WASM, &cluster.dir().join("hostile-hook.wasm"));
    append_to_site(
        cluster,
        &format!(
            "[[hooks]]\npath = \"hostile-hook.wasm\"\n{keys}params = {{ attack = \"{attack}\" }}\n"
        ),
    );
}

/// Each cluster's outcome, in the order of the sites.
fn outcomes(report: &cmk_host::fleet::FleetReport) -> Vec<&'static str> {
    report.clusters.iter().map(|c| c.outcome.text()).collect()
}

/// Appends `text` (TOML sections) to the cluster's site file.
fn append_to_site(cluster: &Cluster, text: &str) {
    let site = std::fs::read_to_string(cluster.site()).unwrap();
    std::fs::write(cluster.site(), format!("{site}\n{text}")).unwrap();
}

/// No pod received a request, and no restart ran (a Lease may have been taken).
fn assert_no_pod_call(cluster: &Cluster) {
    let oracle = cluster.oracle();
    assert!(oracle.calls.is_empty(), "no pod request: {oracle:#?}");
    assert!(oracle.restarts.is_empty(), "no restart: {oracle:#?}");
}

/// No request reached the cluster: no pod was called, no Lease was taken.
fn assert_untouched(cluster: &Cluster) {
    let oracle = cluster.oracle();
    assert!(
        oracle.calls.is_empty(),
        "no pod request: {:#?}",
        oracle.calls
    );
    assert!(oracle.restarts.is_empty(), "no restart");
    assert!(
        !cluster.sim.take_lease("sdkms", "cmk-host-rotation", "test"),
        "no Lease was ever created"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twelve_clusters_rotate_in_one_fleet_run() {
    let fleet = Fleet::start(12, |_| Faults::default()).await;
    let out = fleet.run(&["--yes", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let doc = out.json();
    assert_eq!(doc["outcome"], "done", "{out}");
    assert_eq!(doc["clusters"].as_array().unwrap().len(), 12);
    for (i, cluster) in fleet.clusters.iter().enumerate() {
        assert_rotated_once(&cluster.oracle(), PODS);
        let r = record(&doc, &format!("c{i}"));
        assert_eq!(r["outcome"], "done", "{r:#}");
        assert_eq!(r["exit_code"], 0);
        assert_eq!(r["version_before"], 1);
        assert_eq!(r["version_after"], 2);
        assert_eq!(r["steps"].as_array().unwrap().len(), 9, "{r:#}");
        // The activate the host sent to this cluster, and no other's.
        let sent = r["irreversible_sent"].as_array().unwrap();
        assert_eq!(sent.len(), 1, "{r:#}");
        let activate = sent[0].as_str().unwrap();
        let pod = cluster.oracle().activates()[0].ip.clone();
        assert_eq!(
            activate,
            format!("POST https://{pod}:4444/cluster/v1/key/activate: 204")
        );
        // Each cluster its own audit trail.
        let audit = r["audit_path"].as_str().unwrap();
        assert!(
            audit.starts_with(cluster.dir().to_str().unwrap()),
            "{audit}"
        );
        // The log line of its activation names it, before the procedure's words.
        let activating = format!(
            "WARN cluster{{name=c{i}}}: procedure: activating the new key pod=sdkms-0 ip={pod}"
        );
        assert!(out.stderr.contains(&activating), "{activating}: {out}");
    }
}

/// A component that reports rotations it never made: the table shows each
/// cluster's versions as its account, and the records show that no irreversible
/// request was sent; no cluster changed.
#[tokio::test(flavor = "multi_thread")]
async fn versions_a_component_claims_without_an_activate_are_its_account() {
    let fleet = Fleet::start(2, |_| Faults::default()).await;
    let hostile = fleet.hostile();
    let args = ["--yes", "--param", "attack=claim-rotated"];
    let out = fleet.run_component(&hostile, &args).await;
    assert_eq!(out.code, 0, "{out}");
    for name in ["c0", "c1"] {
        let row = out
            .stdout
            .lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("a row for {name}: {out}"));
        assert!(
            row.contains("1 -> 2 (as the procedure reports it)"),
            "{row}"
        );
    }
    let out = fleet
        .run_component(&hostile, &[&args[..], &["--json"]].concat())
        .await;
    for name in ["c0", "c1"] {
        let r = record(&out.json(), name).clone();
        assert_eq!(r["irreversible_sent"], serde_json::json!([]), "{r:#}");
    }
    for cluster in &fleet.clusters {
        let oracle = cluster.oracle();
        assert!(oracle.mutations().is_empty(), "{oracle:#?}");
    }
}

/// `--events`: every cluster's steps and calls as they happen, each line naming its
/// cluster, a `cluster-end` per cluster, and the fleet's document last.
#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_names_each_cluster_and_ends_with_the_fleets_document() {
    let fleet = Fleet::start(3, |_| Faults::default()).await;
    let file = fleet.dir.path().join("events.jsonl");
    let out = fleet
        .run(&["--yes", "--events", file.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 0, "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (last, rest) = events.split_last().unwrap();
    assert_eq!(last["event"], "report");
    assert_eq!(last["clusters"].as_array().unwrap().len(), 3);
    for i in 0..3 {
        let name = format!("c{i}");
        let of = |kind: &str| {
            rest.iter()
                .filter(|e| e["event"] == kind && e["cluster"] == name.as_str())
                .count()
        };
        assert_eq!(of("step-begin"), 9, "{name}");
        assert_eq!(of("step-end"), 9, "{name}");
        assert_eq!(of("cluster-end"), 1, "{name}");
        // The trail's records of that cluster's POSTs, as the oracle saw them.
        let posts = rest
            .iter()
            .filter(|e| {
                e["event"] == "call"
                    && e["cluster"] == name.as_str()
                    && e["target"].as_str().is_some_and(|t| t.starts_with("POST "))
            })
            .count();
        assert_eq!(
            posts,
            fleet.clusters[i].oracle().mutations().len(),
            "{name}"
        );
        let end = rest
            .iter()
            .find(|e| e["event"] == "cluster-end" && e["cluster"] == name.as_str())
            .unwrap();
        assert_eq!(end["outcome"], "done", "{end:#}");
    }
    assert!(
        rest.iter().all(|e| e["cluster"].is_string()),
        "every event but the last names its cluster"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_restart_stops_that_cluster_before_activate_and_the_others_rotate() {
    const BAD: usize = 4;
    let fleet = Fleet::start(12, |i| Faults {
        fail_restart: (i == BAD).then_some(1),
        ..Faults::default()
    })
    .await;
    let out = fleet.run(&["--yes", "--json"]).await;
    assert_eq!(out.code, 1, "{out}");
    let doc = out.json();
    assert_eq!(doc["outcome"], "failed");
    assert_eq!(doc["clusters"].as_array().unwrap().len(), 12);
    let bad = record(&doc, "c4");
    assert_eq!(bad["outcome"], "failed", "{bad:#}");
    assert_eq!(bad["failed_step"], "restart-load", "{bad:#}");
    assert_eq!(bad["safe_to_resume"], true);
    assert!(
        bad["reason"].as_str().unwrap().contains("restart-load"),
        "{bad:#}"
    );
    for (i, cluster) in fleet.clusters.iter().enumerate() {
        let oracle = cluster.oracle();
        if i == BAD {
            assert!(oracle.activates().is_empty(), "stopped before activate");
            assert_eq!(bad["irreversible_sent"], serde_json::json!([]), "{bad:#}");
            assert_eq!(oracle.version, 1);
            assert!(oracle.broken_pods().is_empty());
        } else {
            assert_rotated_once(&oracle, PODS);
            assert_eq!(record(&doc, &format!("c{i}"))["outcome"], "done");
        }
    }

    // The summary names it too; the others, already rotated, are not rotated again.
    fleet.clusters[BAD].sim.set_faults(Faults {
        fail_restart: Some(2),
        ..Faults::default()
    });
    let out = fleet.run(&["--yes"]).await;
    assert_eq!(out.code, 1, "{out}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains(" c4 "))
        .unwrap_or_else(|| panic!("the summary has a row for c4: {out}"));
    assert!(line.starts_with('✗'), "{line}");
    assert!(line.contains("failed"), "{line}");
    assert!(line.contains("restart-load"), "{line}");
    assert!(out.stdout.contains("11 done, 1 failed"), "{out}");
    for (i, cluster) in fleet.clusters.iter().enumerate() {
        if i != BAD {
            assert_rotated_once(&cluster.oracle(), PODS);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_before_activate_prepares_every_cluster_and_the_rerun_activates() {
    let fleet = Fleet::start(4, |_| Faults::default()).await;
    // --yes and --stop-before: the hold wins.
    let out = fleet
        .run(&["--yes", "--stop-before", "activate", "--json"])
        .await;
    assert_eq!(out.code, 0, "{out}");
    let doc = out.json();
    assert_eq!(doc["stop_before"], "activate");
    for (i, cluster) in fleet.clusters.iter().enumerate() {
        let r = record(&doc, &format!("c{i}"));
        assert_eq!(r["outcome"], "ready-to-activate", "{r:#}");
        assert_eq!(r["exit_code"], 0);
        assert_eq!(r["safe_to_resume"], true);
        assert_eq!(
            r["reason"], "stopped before activate (--stop-before activate)",
            "{r:#}"
        );
        let oracle = cluster.oracle();
        assert!(oracle.activates().is_empty(), "none activated");
        assert_eq!(oracle.version, 1);
        assert_eq!(oracle.proposes().len(), 1, "proposed");
        assert_eq!(oracle.fetches().len(), PODS - 1, "distributed");
        assert_eq!(oracle.restarts.len(), 1, "restarted once to load");
        for pod in &oracle.pods {
            assert!(pod.loaded_proposal.is_some(), "{} loaded it", pod.name);
        }
    }

    let out = fleet.run(&["--yes", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    for (i, cluster) in fleet.clusters.iter().enumerate() {
        assert_eq!(record(&out.json(), &format!("c{i}"))["outcome"], "done");
        assert_completed_once(&cluster.oracle(), PODS);
    }
}

/// A fleet never prompts: without --yes every cluster stops before activate.
#[tokio::test(flavor = "multi_thread")]
async fn without_yes_every_cluster_awaits_confirmation_before_activate() {
    let fleet = Fleet::start(2, |_| Faults::default()).await;
    let out = fleet.run(&["--json"]).await;
    assert_eq!(out.code, 1, "{out}");
    let doc = out.json();
    for (i, cluster) in fleet.clusters.iter().enumerate() {
        let r = record(&doc, &format!("c{i}"));
        assert_eq!(r["outcome"], "awaiting-confirmation", "{r:#}");
        assert_eq!(r["safe_to_resume"], true);
        assert!(cluster.oracle().activates().is_empty());
        assert_eq!(cluster.oracle().version, 1);
    }
}

/// A component that skips the confirmation and posts activate itself, in two
/// spellings: with --stop-before activate the host refuses both, on every cluster.
#[tokio::test(flavor = "multi_thread")]
async fn stop_before_activate_refuses_an_activate_the_component_sends_unasked() {
    let fleet = Fleet::start(2, |_| Faults::default()).await;
    for cluster in &fleet.clusters {
        let ip = &cluster.sim.pod_ips()[0].1;
        let requests = format!(
            "POST https://{ip}:4444/cluster/v1/key/%61ctivate|POST https://{ip}:4444/cluster/v1/./key/activate"
        );
        append_to_site(
            cluster,
            &format!("[params]\nlist_pods = \"true\"\nrequests = {requests:?}\n"),
        );
    }
    let activates = |cluster: &Cluster| {
        cluster
            .oracle()
            .calls
            .iter()
            .filter(|c| c.method == "POST" && c.path.contains("ctivate"))
            .count()
    };
    let out = fleet
        .run_component(&fleet.probe, &["--stop-before", "activate", "--json"])
        .await;
    assert_eq!(out.code, 0, "{out}");
    let doc = out.json();
    for (i, cluster) in fleet.clusters.iter().enumerate() {
        assert_eq!(activates(cluster), 0, "no activate reached c{i}");
        let r = record(&doc, &format!("c{i}"));
        assert_eq!(r["outcome"], "ready-to-activate", "{r:#}");
        let steps = r["steps"].as_array().unwrap();
        for step in &steps[1..] {
            assert_eq!(
                step["detail"],
                "denied: stopped before activate (--stop-before activate): not sent",
                "{r:#}"
            );
        }
    }
    // Without the hold, and confirmed by --yes, the same component's request does
    // reach the pods (one of its two: a yes authorises one irreversible request).
    let out = fleet
        .run_component(&fleet.probe, &["--json", "--yes"])
        .await;
    assert_eq!(out.code, 0, "{out}");
    for cluster in &fleet.clusters {
        assert!(activates(cluster) > 0, "{out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_file_with_an_unknown_key_stops_the_fleet_before_any_request() {
    let fleet = Fleet::start(12, |_| Faults::default()).await;
    let bad = fleet.clusters[7].site().to_path_buf();
    let text = std::fs::read_to_string(&bad).unwrap();
    std::fs::write(
        &bad,
        text.replacen("[cluster]\n", "[cluster]\nzone = \"eu\"\n", 1),
    )
    .unwrap();
    let out = fleet.run(&["--yes", "--json"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains(bad.to_str().unwrap()), "{out}");
    assert!(out.stderr.contains("zone"), "names the key: {out}");
    for cluster in &fleet.clusters {
        assert_no_pod_call(cluster);
    }
}

/// Two sites of one fleet never share a cluster name, a journal or an audit trail:
/// one name twice, two names that make one file name in one state folder, and one
/// `[audit] path` in two sites are each exit 2, naming the second site file and its
/// key, before any cluster is contacted.
#[tokio::test(flavor = "multi_thread")]
async fn sites_that_would_share_a_name_a_journal_or_a_trail_stop_the_fleet_before_any_request() {
    let fleet = Fleet::start(6, |_| Faults::default()).await;
    let edit = |i: usize, f: &dyn Fn(String) -> String| {
        let site = fleet.clusters[i].site();
        std::fs::write(site, f(std::fs::read_to_string(site).unwrap())).unwrap();
    };
    edit(1, &|t| t.replacen("name = \"c1\"", "name = \"c0\"", 1));
    let state = fleet.dir.path().join("shared-state");
    let shared_state = |t: String, name: &str| {
        let at = t.find("[state]\n").expect("a [state] section");
        let end = t[at..].find("\n\n").map_or(t.len(), |e| at + e);
        let text = format!("{}[state]\ndir = {:?}{}", &t[..at], state, &t[end..]);
        text.replacen("name = \"c", &format!("name = \"{name}\" # c"), 1)
    };
    edit(2, &|t| shared_state(t, "prod/eu"));
    edit(3, &|t| shared_state(t, "prod eu"));
    let trail = fleet.dir.path().join("trail.jsonl");
    for i in [4, 5] {
        edit(i, &|t| format!("{t}\n[audit]\npath = {trail:?}\n"));
    }
    let out = fleet.run(&["--yes", "--json"]).await;
    assert_eq!(out.code, 2, "{out}");
    let site = |i: usize| fleet.clusters[i].site().display().to_string();
    assert!(
        out.stderr.contains(&format!(
            "site file {}: [cluster] name: \"c0\" is also the cluster of {}",
            site(1),
            site(0)
        )),
        "{out}"
    );
    assert!(
        out.stderr.contains(&format!(
            "site file {}: [cluster] name: \"prod eu\" and \"prod/eu\", the cluster of {}, make \
             one file name: both would keep their journal in {}",
            site(3),
            site(2),
            state.join("journal/prod_eu.json").display()
        )),
        "{out}"
    );
    assert!(
        out.stderr.contains(&format!(
            "site file {}: [audit] path: {} is also the audit trail of {} (cluster \"c4\")",
            site(5),
            trail.display(),
            site(4)
        )),
        "{out}"
    );
    for cluster in &fleet.clusters {
        assert_untouched(cluster);
    }
}

/// Two sites of one fleet that name one cluster (under two names, each with its own
/// state folder) run at once in one process, and still only one of them rotates
/// it: each run holds the cluster's Lease under an identity of its own, so the
/// other finds it held and stops before any change.
#[tokio::test(flavor = "multi_thread")]
async fn two_sites_naming_one_cluster_rotate_it_once() {
    let fleet = Fleet::start(2, |i| Faults {
        // The first cluster's rotation lasts while the second run starts.
        slow_answer: (i == 0).then(|| ("/cluster/v1/key/fetch".into(), 300)),
        ..Faults::default()
    })
    .await;
    let text = std::fs::read_to_string(fleet.clusters[0].site()).unwrap();
    let state = fleet.clusters[1].dir().join("state");
    let at = text.find("[state]\ndir = ").expect("a [state] dir") + "[state]\n".len();
    let end = at + text[at..].find('\n').unwrap();
    let again = format!("{}dir = {state:?}{}", &text[..at], &text[end..]);
    let again = again.replacen("name = \"c0\"", "name = \"c0-again\"", 1);
    std::fs::write(fleet.clusters[1].site(), again).unwrap();

    let out = fleet.run(&["--yes", "--json", "--max-parallel", "2"]).await;
    assert_eq!(out.code, 1, "{out}");
    let doc = out.json();
    let mut outcomes: Vec<&str> = doc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["done", "lease-busy"], "{doc:#}");
    assert_rotated_once(&fleet.clusters[0].oracle(), PODS);
    assert_untouched(&fleet.clusters[1]);
}

/// `--plan` over a fleet: whatever the component tries (posting propose, fetch and
/// activate, a rolling restart, an activate), no cluster changes. Each call is
/// answered "recorded, not sent"; the hostile component reports that as its failure
/// in the first two clusters, and the third, which carries on, is `planned`.
#[tokio::test(flavor = "multi_thread")]
async fn plan_changes_no_cluster_whatever_the_component_sends() {
    let fleet = Fleet::start(3, |_| Faults::default()).await;
    let hostile = fleet.hostile();
    let params = [
        "attack = \"post\"\npath = \"/cluster/v1/key/propose,/cluster/v1/key/fetch,/cluster/v1/key/activate\"",
        "attack = \"restart\"",
        "attack = \"activate\"",
    ];
    for (cluster, params) in fleet.clusters.iter().zip(params) {
        append_to_site(cluster, &format!("[params]\n{params}\n"));
    }
    let out = fleet
        .run_component(&hostile, &["--plan", "--yes", "--json"])
        .await;
    assert_eq!(out.code, 1, "{out}");
    let doc = out.json();
    assert_eq!(doc["plan"], true, "{doc:#}");
    let reason = |i: usize| record(&doc, &format!("c{i}"))["reason"].to_string();
    assert_eq!(
        reason(0).matches("plan mode: recorded, not sent").count(),
        3
    );
    assert!(
        reason(1).contains("plan mode: recorded, not sent"),
        "{doc:#}"
    );
    let c2 = record(&doc, "c2");
    assert_eq!(c2["outcome"], "planned", "{doc:#}");
    // The calls each would have made, recorded instead of sent.
    let planned = |i: usize| record(&doc, &format!("c{i}"))["planned"].to_string();
    for path in ["propose", "fetch", "activate"] {
        assert!(
            planned(0).contains(&format!("/cluster/v1/key/{path}")),
            "{doc:#}"
        );
    }
    assert!(planned(1).contains("restart"), "{doc:#}");
    assert!(planned(2).contains("/cluster/v1/key/activate"), "{doc:#}");
    for cluster in &fleet.clusters {
        let oracle = cluster.oracle();
        assert!(oracle.mutations().is_empty(), "{oracle:#?}");
        assert!(oracle.restarts.is_empty(), "{oracle:#?}");
        assert_eq!(oracle.version, 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_that_does_not_trust_the_signer_refuses_the_fleet_before_any_request() {
    let fleet = Fleet::start(3, |_| Faults::default()).await;
    // Cluster 1's site trusts only its own "ops" key, not the fleet's signer.
    let site = fleet.clusters[1].site().to_path_buf();
    let text = std::fs::read_to_string(&site).unwrap();
    let cut = text.rfind("\n[[trust.signer]]").unwrap();
    std::fs::write(&site, &text[..cut]).unwrap();
    let out = fleet.run(&["--yes"]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains(site.to_str().unwrap()), "{out}");
    for cluster in &fleet.clusters {
        assert_no_pod_call(cluster);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn max_failures_one_starts_no_cluster_after_the_first_failure() {
    let failing = [1, 3];
    let fleet = Fleet::start(6, |i| Faults {
        fail_restart: failing.contains(&i).then_some(1),
        ..Faults::default()
    })
    .await;
    let out = fleet
        .run(&[
            "--yes",
            "--json",
            "--max-parallel",
            "1",
            "--max-failures",
            "1",
        ])
        .await;
    assert_eq!(out.code, 1, "{out}");
    let doc = out.json();
    assert_rotated_once(&fleet.clusters[0].oracle(), PODS);
    assert_eq!(record(&doc, "c0")["outcome"], "done");
    assert_eq!(record(&doc, "c1")["outcome"], "failed");
    for i in 2..6 {
        let r = record(&doc, &format!("c{i}"));
        assert_eq!(r["outcome"], "not-started", "{r:#}");
        assert!(
            r["reason"].as_str().unwrap().contains("--max-failures 1"),
            "{r:#}"
        );
        assert_untouched(&fleet.clusters[i]);
    }
}

/// SIGINT stops a whole fleet at its safe points: the restart under way finishes, no
/// cluster is activated, the clusters still waiting for a slot are not started, and
/// every Lease is released, so that the same command run again finishes each one.
#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_every_cluster_at_a_safe_point_and_the_rerun_finishes_them() {
    let fleet = Fleet::start(4, |_| Faults::default()).await;
    let sites = fleet.sites();
    let mut args = vec![
        "fleet",
        "--component",
        &fleet.component,
        "--yes",
        "--json",
        "--max-parallel",
        "2",
        "--",
    ];
    args.extend(sites.iter().map(String::as_str));
    let mut child = cmk_tests::spawn(BIN, &args);
    let mut stdout = child.stdout.take().expect("stdout");
    let document = tokio::spawn(async move {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut text)
            .await
            .unwrap();
        text
    });
    let (sent, code) = cmk_tests::interrupt_when(&mut child, &fleet.clusters[0], "INT", |o| {
        o.restart_in_progress() && o.restarts_started == 1
    })
    .await;
    assert!(sent, "interrupted during the first cluster's first restart");
    assert_eq!(code, Some(1));
    let doc: serde_json::Value = serde_json::from_str(&document.await.unwrap()).unwrap();
    let first = fleet.clusters[0].oracle();
    assert_eq!(first.restarts.len(), 1, "the restart under way completed");
    assert!(first.restarts[0].ok);
    for (i, cluster) in fleet.clusters.iter().enumerate() {
        let oracle = cluster.oracle();
        assert!(oracle.activates().is_empty(), "c{i}: {oracle:#?}");
        assert!(oracle.broken_pods().is_empty(), "c{i}: {oracle:#?}");
        assert!(!oracle.restart_in_progress(), "c{i}: {oracle:#?}");
    }
    assert_eq!(record(&doc, "c0")["outcome"], "stopped", "{doc:#}");
    for i in [2, 3] {
        assert_eq!(record(&doc, &format!("c{i}"))["outcome"], "not-started");
        assert_untouched(&fleet.clusters[i]);
    }

    let out = fleet.run(&["--yes", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        !out.stderr.contains("expired Lease"),
        "every Lease was released: {out}"
    );
    for cluster in &fleet.clusters {
        assert_rotated_once(&cluster.oracle(), PODS);
    }
}

/// With --max-failures 1, a cluster still running when another fails stops at its
/// next safe point: its rolling restart under way finishes, its activate is not sent.
#[tokio::test(flavor = "multi_thread")]
async fn max_failures_stops_a_running_cluster_at_its_next_safe_point() {
    let fleet = Fleet::start_with(2, |i| match i {
        // c0's first restart fails after its first pod (1 s into it) ...
        0 => SimConfig {
            faults: Faults {
                fail_restart: Some(1),
                ..Faults::default()
            },
            restart_step_delay: std::time::Duration::from_millis(500),
            ..SimConfig::pods(PODS)
        },
        // ... while c1, started at the same time, is in its first restart (3 s).
        _ => SimConfig {
            restart_step_delay: std::time::Duration::from_millis(500),
            ..SimConfig::pods(PODS)
        },
    })
    .await;
    let out = fleet
        .run(&[
            "--yes",
            "--json",
            "--max-parallel",
            "2",
            "--max-failures",
            "1",
        ])
        .await;
    assert_eq!(out.code, 1, "{out}");
    let doc = out.json();
    let failed = record(&doc, "c0");
    assert_eq!(failed["outcome"], "failed", "{failed:#}");
    assert_eq!(failed["failed_step"], "restart-load", "{failed:#}");
    let stopped = record(&doc, "c1");
    assert_eq!(stopped["outcome"], "stopped", "{stopped:#}");
    assert_eq!(stopped["safe_to_resume"], true, "{stopped:#}");
    assert!(
        stopped["reason"]
            .as_str()
            .unwrap()
            .contains("1 cluster(s) failed (--max-failures 1)"),
        "{stopped:#}"
    );
    let oracle = fleet.clusters[1].oracle();
    assert_eq!(oracle.restarts.len(), 1, "the restart under way finished");
    assert!(oracle.restarts[0].ok, "and was not cut short");
    assert!(
        oracle.activates().is_empty(),
        "nothing activated after the stop"
    );
    assert_eq!(oracle.version, 1);
    assert!(oracle.broken_pods().is_empty());
}

/// The manifests of `fleet job`, as a List.
async fn job_manifests(fleet: &Fleet, extra: &[&str]) -> serde_json::Value {
    let sites = fleet.sites();
    let mut args = vec![
        "fleet",
        "job",
        "--image",
        "registry.example.com/cmk-host:0.1.0",
        "--shards",
        "3",
        "--component",
        &fleet.component,
        "--yes",
    ];
    args.extend(extra);
    args.extend(sites.iter().map(String::as_str));
    let out = run(BIN, &args).await;
    assert_eq!(out.code, 0, "{out}");
    out.json()
}

fn items<'a>(list: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_job_manifests_parse_and_carry_the_indexed_job_fields() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, ServiceAccount};

    let fleet = Fleet::start(2, |_| Faults::default()).await;
    let list = job_manifests(&fleet, &["--max-parallel", "4"]).await;
    assert_eq!(list["kind"], "List");

    let jobs = items(&list, "Job");
    assert_eq!(jobs.len(), 1);
    let job: Job = serde_json::from_value(jobs[0].clone()).expect("a batch/v1 Job");
    let spec = job.spec.expect("spec");
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!(spec.completions, Some(3));
    assert_eq!(spec.parallelism, Some(3));
    assert_eq!(spec.backoff_limit_per_index, Some(0));
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        pod.automount_service_account_token,
        Some(false),
        "every site has a kubeconfig: no token for this cluster's API"
    );
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap();
    let at = args.iter().position(|a| a == "--shard").expect("--shard");
    assert_eq!(args[at + 1], "$(JOB_COMPLETION_INDEX)/3");
    assert_eq!(args[0], "fleet");
    for flag in ["--yes", "--json", "--max-parallel"] {
        assert!(args.iter().any(|a| a == flag), "{flag} in {args:?}");
    }
    let env = container.env.clone().unwrap();
    let index = env
        .iter()
        .find(|e| e.name == "JOB_COMPLETION_INDEX")
        .expect("the index in the environment");
    assert_eq!(
        index
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str()),
        Some("metadata.annotations['batch.kubernetes.io/job-completion-index']")
    );
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));

    let secrets: Vec<Secret> = items(&list, "Secret")
        .into_iter()
        .map(|s| serde_json::from_value(s.clone()).expect("a v1 Secret"))
        .collect();
    assert_eq!(secrets.len(), 2, "one Secret per site");
    let volumes = pod.volumes.unwrap();
    for (i, secret) in secrets.iter().enumerate() {
        let name = secret.metadata.name.clone().unwrap();
        assert_eq!(name, format!("cmk-fleet-site-{i}"));
        let data = secret.data.as_ref().unwrap();
        for key in [
            "site.toml",
            "kubeconfig",
            "ca.pem",
            "signer-0.pub",
            "signer-1.pub",
        ] {
            assert!(data.contains_key(key), "{name} has {key}");
        }
        let site = String::from_utf8(data["site.toml"].0.clone()).unwrap();
        assert!(
            site.contains(&format!("\"/etc/cmk/sites/{i}/kubeconfig\"")),
            "{site}"
        );
        assert!(site.contains("dir = \"/var/lib/cmk-host\""), "{site}");
        assert!(
            volumes
                .iter()
                .any(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref())
                    == Some(name.as_str())),
            "{name} is mounted"
        );
        let site_arg = format!("/etc/cmk/sites/{i}/site.toml");
        assert!(args.contains(&site_arg), "{site_arg} in {args:?}");
    }
    let _: ServiceAccount =
        serde_json::from_value(items(&list, "ServiceAccount")[0].clone()).unwrap();
    let _: PersistentVolumeClaim =
        serde_json::from_value(items(&list, "PersistentVolumeClaim")[0].clone()).unwrap();
    assert!(
        items(&list, "Role").is_empty() && items(&list, "ClusterRole").is_empty(),
        "sites with a kubeconfig need no RBAC in the Job's cluster"
    );
}

/// Writes every Secret of `list` where the Job would mount it.
fn materialize(list: &serde_json::Value, root: &Path) {
    use k8s_openapi::api::core::v1::Secret;
    for item in items(list, "Secret") {
        let secret: Secret = serde_json::from_value(item.clone()).unwrap();
        let name = secret.metadata.name.unwrap();
        let index = name.rsplit('-').next().unwrap();
        let dir = root.join("sites").join(index);
        std::fs::create_dir_all(&dir).unwrap();
        for (key, value) in secret.data.unwrap() {
            std::fs::write(dir.join(key), value.0).unwrap();
        }
    }
}

/// Each index's exact command line, as three processes: every cluster rotated once.
#[tokio::test(flavor = "multi_thread")]
async fn the_job_shards_0_1_2_of_3_rotate_every_cluster_exactly_once() {
    let fleet = Fleet::start(6, |_| Faults::default()).await;
    let root: PathBuf = fleet.dir.path().join("etc-cmk");
    let state = fleet.dir.path().join("state");
    let list = job_manifests(
        &fleet,
        &[
            "--mount-root",
            root.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
    )
    .await;
    materialize(&list, &root);
    std::fs::create_dir_all(root.join("component")).unwrap();
    std::fs::copy(&fleet.component, root.join("component/rotate.wasm")).unwrap();
    let args: Vec<String> = serde_json::from_value(
        items(&list, "Job")[0]["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
    )
    .unwrap();
    let shard = |i: usize| -> Vec<String> {
        args.iter()
            .map(|a| a.replace("$(JOB_COMPLETION_INDEX)", &i.to_string()))
            .collect()
    };
    let (a, b, c) = (shard(0), shard(1), shard(2));
    fn as_str(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let (a, b, c) = (as_str(&a), as_str(&b), as_str(&c));
    let (x, y, z) = tokio::join!(run(BIN, &a), run(BIN, &b), run(BIN, &c));
    for (i, out) in [x, y, z].into_iter().enumerate() {
        assert_eq!(out.code, 0, "shard {i}: {out}");
        let doc = out.json();
        assert_eq!(doc["shard"], format!("{i}/3"));
        let names: Vec<&str> = doc["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["cluster"].as_str().unwrap())
            .collect();
        assert_eq!(names, [format!("c{i}"), format!("c{}", i + 3)], "shard {i}");
    }
    for cluster in &fleet.clusters {
        assert_rotated_once(&cluster.oracle(), PODS);
    }
    // The journals and trails are on the state volume, one per cluster.
    for i in 0..6 {
        assert!(
            state.join(format!("audit/c{i}.jsonl")).exists(),
            "c{i}'s trail"
        );
    }
}

/// Spinning components on the runtime's only thread do not keep another cluster's
/// run waiting: guest code yields at each epoch tick. The well-behaved cluster starts
/// first; without the yield it could finish only once a spinner had been stopped
/// at its 5 s limit.
#[test]
fn spinning_components_share_the_workers_with_the_other_clusters() {
    // One thread for every task (the simulators' too): a guest that kept it would
    // stop them all.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let fleet = Fleet::start(4, |_| Faults::default()).await;
        let hostile = fleet.hostile();
        for (i, cluster) in fleet.clusters.iter().enumerate() {
            let attack = if i == 0 { "read-env" } else { "spin" };
            append_to_site(
                cluster,
                &format!("[limits]\nwall_clock_secs = 5\n\n[params]\nattack = \"{attack}\"\n"),
            );
        }
        let report = fleet.execute(Path::new(&hostile), false).await;
        let outcomes = outcomes(&report);
        assert_eq!(
            outcomes,
            ["done", "failed", "failed", "failed"],
            "{report:#?}"
        );
        for c in &report.clusters[1..] {
            let reason = c.reason.as_deref().unwrap();
            assert!(reason.contains("wall-clock limit of 5s"), "{reason}");
        }
        let benign = &report.clusters[0];
        assert!(
            benign.duration_ms < 4000,
            "the spinners held the worker: the other cluster took {} ms",
            benign.duration_ms
        );
    });
}

/// The same for the site's hooks: a hook's `before` and a guard that spin, on the
/// runtime's only thread, do not keep the well-behaved cluster waiting for their
/// 5 s time limits. Without the yield in hook stores it could finish only after
/// every spinner had been stopped.
#[test]
fn spinning_hooks_and_guards_share_the_workers_with_the_other_clusters() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let fleet = Fleet::start(3, |_| Faults::default()).await;
        for (cluster, attack) in fleet.clusters.iter().skip(1).zip(["spin", "guard-spin"]) {
            add_hostile_hook(cluster, attack, "timeout_secs = 5\n");
        }
        let report = fleet.execute(Path::new(&fleet.component), true).await;
        let outcomes = outcomes(&report);
        assert_eq!(outcomes, ["done", "stopped", "stopped"], "{report:#?}");
        for c in &report.clusters[1..] {
            let reason = c.reason.as_deref().unwrap();
            assert!(
                reason.contains("hostile-hook failed: stopped: it ran past its time limit of 5s"),
                "{reason}"
            );
        }
        assert_rotated_once(&fleet.clusters[0].oracle(), PODS);
        for cluster in &fleet.clusters[1..] {
            let oracle = cluster.oracle();
            assert!(oracle.mutations().is_empty(), "{oracle:#?}");
        }
        let benign = &report.clusters[0];
        assert!(
            benign.duration_ms < 4000,
            "the spinning hooks held the worker: the other cluster took {} ms",
            benign.duration_ms
        );
    });
}

/// `cmk-host demo --clusters 5`: five simulated clusters, one fleet run; `--json`
/// carries the fleet's document and every simulator's oracle.
#[tokio::test(flavor = "multi_thread")]
async fn demo_rotates_five_clusters_with_one_fleet_run() {
    let out = run(BIN, &["demo", "--clusters", "5", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let doc = out.json();
    let records = doc["fleet"]["clusters"].as_array().unwrap();
    assert_eq!(records.len(), 5);
    let oracles = doc["oracles"].as_array().unwrap();
    for (record, oracle) in records.iter().zip(oracles) {
        assert_eq!(record["outcome"], "done", "{record:#}");
        let oracle: cmk_sim::Oracle = serde_json::from_value(oracle.clone()).unwrap();
        assert_rotated_once(&oracle, PODS);
    }
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sim-0", "sim-1", "sim-2", "sim-3", "sim-4"]);

    // Without --json: the summary table.
    let out = run(BIN, &["demo", "--clusters", "2"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("CLUSTER  OUTCOME"), "{out}");
    assert!(out.stdout.contains("2 clusters in"), "{out}");
}

/// `cmk-host sim --clusters 3 --dir DIR`: three independent clusters (own API server,
/// own addresses), one site file each, that a fleet run of the printed command rotates.
#[tokio::test(flavor = "multi_thread")]
async fn sim_serves_independent_clusters_that_one_fleet_run_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = cmk_tests::spawn(
        BIN,
        &[
            "sim",
            "--clusters",
            "3",
            "--dir",
            dir.path().to_str().unwrap(),
        ],
    );
    let sites: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("cluster-{i}/site.toml")))
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // The component is written first and the last site file last.
    while !sites
        .iter()
        .all(|s| std::fs::read_to_string(s).is_ok_and(|t| t.contains("[[trust.signer]]")))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "sim wrote no site files"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut servers = Vec::new();
    for site in &sites {
        let kubeconfig = std::fs::read_to_string(site.with_file_name("kubeconfig")).unwrap();
        let server = kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .unwrap()
            .to_string();
        servers.push(server);
    }
    servers.sort();
    servers.dedup();
    assert_eq!(servers.len(), 3, "one API server per cluster");

    let component = dir.path().join("rotate.wasm");
    let mut args = vec![
        "fleet",
        "--component",
        component.to_str().unwrap(),
        "--yes",
        "--json",
    ];
    args.extend(sites.iter().map(|s| s.to_str().unwrap()));
    let out = run(BIN, &args).await;
    sim.start_kill().unwrap();
    assert_eq!(out.code, 0, "{out}");
    let doc = out.json();
    let names: Vec<&str> = doc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sim-0", "sim-1", "sim-2"]);
    for c in doc["clusters"].as_array().unwrap() {
        assert_eq!(c["outcome"], "done", "{c:#}");
        assert_eq!(c["version_after"], 2);
    }
}

/// A site without a kubeconfig runs against the Job's own cluster: its Role (in the
/// site's namespace, bound to the Job's service account) grants what deploy/role.yaml
/// grants, and the pod mounts the account's token.
#[tokio::test(flavor = "multi_thread")]
async fn the_job_grants_an_in_cluster_site_only_what_the_host_uses() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

    let fleet = Fleet::start(1, |_| Faults::default()).await;
    let site = fleet.clusters[0].site().to_path_buf();
    let text = std::fs::read_to_string(&site).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("kubeconfig"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&site, text).unwrap();
    let list = job_manifests(&fleet, &[]).await;

    let roles = items(&list, "Role");
    assert_eq!(roles.len(), 1, "{list:#}");
    let role: Role = serde_json::from_value(roles[0].clone()).unwrap();
    assert_eq!(role.metadata.namespace.as_deref(), Some("sdkms"));
    let rules: Vec<(String, Option<Vec<String>>, Vec<String>)> = role
        .rules
        .unwrap()
        .into_iter()
        .map(|r| (r.resources.unwrap().join(","), r.resource_names, r.verbs))
        .collect();
    assert_eq!(
        rules,
        [
            ("pods".to_string(), None, vec!["list".to_string()]),
            ("leases".to_string(), None, vec!["create".to_string()]),
            (
                "leases".to_string(),
                Some(vec!["cmk-host-rotation".to_string()]),
                vec!["get".to_string(), "update".to_string()]
            ),
        ],
        "a restart by command needs no workload rule"
    );
    let binding: RoleBinding =
        serde_json::from_value(items(&list, "RoleBinding")[0].clone()).unwrap();
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(subject.kind, "ServiceAccount");
    assert_eq!(subject.name, "cmk-fleet-runner");
    assert_eq!(subject.namespace.as_deref(), Some("cmk-fleet"));
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
    let job: Job = serde_json::from_value(items(&list, "Job")[0].clone()).unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(true));
}

/// A trap, a memory limit, a stack overflow and the host-call limit, each in one
/// cluster's store, end that cluster's run alone: the fleet's engine and compiled
/// component serve the well-behaved cluster to its end, and each failure names its
/// own cause.
#[tokio::test(flavor = "multi_thread")]
async fn traps_and_limits_in_one_cluster_leave_the_others_alone() {
    let fleet = Fleet::start(5, |_| Faults::default()).await;
    let hostile = fleet.hostile();
    let attacks = [
        ("read-env", ""),
        ("panic", ""),
        ("grow-memory", "memory_mib = 16\n"),
        ("recurse", ""),
        ("host-calls", "host_calls = 200\n"),
    ];
    for (cluster, (attack, limits)) in fleet.clusters.iter().zip(attacks) {
        append_to_site(
            cluster,
            &format!("[limits]\n{limits}\n[params]\nattack = \"{attack}\"\n"),
        );
    }
    let report = fleet.execute(Path::new(&hostile), false).await;
    let outcomes = outcomes(&report);
    assert_eq!(
        outcomes,
        ["done", "failed", "failed", "failed", "failed"],
        "{report:#?}"
    );
    let reasons: Vec<&str> = report.clusters[1..]
        .iter()
        .map(|c| c.reason.as_deref().unwrap())
        .collect();
    for (reason, cause) in reasons.iter().zip([
        "panicked",
        "reached its memory limit of 16 MiB",
        "overflowed its stack limit of 512 KiB",
        "more than 200 host calls",
    ]) {
        assert!(reason.contains(cause), "{cause}: {reasons:#?}");
    }
    for cluster in &fleet.clusters {
        assert_no_pod_call(cluster);
    }
}

/// The same for the site's hooks: a hook that traps in its `before`, and a guard that
/// traps, stop their own clusters before anything changes there, while the cluster
/// without hooks rotates.
#[tokio::test(flavor = "multi_thread")]
async fn a_trapping_hook_or_guard_stops_only_its_own_cluster() {
    let fleet = Fleet::start(3, |_| Faults::default()).await;
    for (cluster, attack) in fleet.clusters.iter().skip(1).zip(["trap", "guard-trap"]) {
        add_hostile_hook(cluster, attack, "");
    }
    let report = fleet.execute(Path::new(&fleet.component), true).await;
    let outcomes = outcomes(&report);
    assert_eq!(outcomes, ["done", "stopped", "stopped"], "{report:#?}");
    let reasons: Vec<&str> = report.clusters[1..]
        .iter()
        .map(|c| c.reason.as_deref().unwrap())
        .collect();
    assert!(reasons[0].contains("hostile hook: trap at"), "{reasons:#?}");
    assert!(
        reasons[1].contains("hostile guard: trap at"),
        "{reasons:#?}"
    );
    assert_rotated_once(&fleet.clusters[0].oracle(), PODS);
    for cluster in &fleet.clusters[1..] {
        let oracle = cluster.oracle();
        assert!(oracle.mutations().is_empty(), "{oracle:#?}");
        assert!(oracle.restarts.is_empty(), "{oracle:#?}");
    }
}
