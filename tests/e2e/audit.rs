//! The audit trail of a real rotation, and `cmk-host audit verify` against an
//! intact trail and against each kind of tampering.

use std::path::{Path, PathBuf};

use cmk_tests::{Cluster, HOSTILE_WASM, PROBE_WASM, ROTATE_WASM, run};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

/// Rotates a 2-pod cluster and returns it with its trail's path and the report.
async fn rotated() -> (Cluster, PathBuf, serde_json::Value) {
    let cluster = Cluster::pods(2).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(ROTATE_WASM),
            "--site",
            &site,
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let trail = cluster.dir().join("state/audit/sim.jsonl");
    assert!(trail.exists(), "{out}");
    (cluster, trail, out.json())
}

fn records(trail: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(trail)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn verify(trail: &Path) -> cmk_tests::Outcome {
    run(BIN, &["audit", "verify", trail.to_str().unwrap()]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_leaves_a_chained_trail_of_every_call_and_step() {
    let (cluster, trail, report) = rotated().await;
    let recs = records(&trail);
    let sha = report["component_sha256"].as_str().unwrap();
    let run_id = report["run_id"].as_str().unwrap();
    for r in &recs {
        assert_eq!(r["component_sha256"], sha);
        assert_eq!(r["run_id"], run_id);
        assert_eq!(r["cluster"], "sim");
    }
    let find = |cap: &str, target_has: &str| {
        recs.iter()
            .filter(|r| {
                r["capability"] == cap && r["target"].as_str().unwrap().contains(target_has)
            })
            .collect::<Vec<_>>()
    };
    // One record per mutating call the oracle saw, with its outcome.
    let o = cluster.oracle();
    let posts = find("http", "POST ");
    assert_eq!(posts.len(), o.mutations().len(), "{posts:#?}");
    assert!(posts.iter().all(|r| r["outcome"] == "204"));
    let fetch = find("http", "/cluster/v1/key/fetch");
    assert_eq!(
        fetch[0]["body"]["target"].as_str().unwrap(),
        format!("{}:4444", o.proposes()[0].ip)
    );
    assert_eq!(find("restart", "restart.sh").len(), 2);
    assert_eq!(find("lease", "cmk-host-rotation")[0]["outcome"], "taken");
    assert_eq!(find("confirm", "activate")[0]["outcome"], "yes (--yes)");
    let steps: Vec<&str> = recs
        .iter()
        .filter(|r| r["kind"] == "step")
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    assert_eq!(steps.len(), 9, "{steps:?}");
    let last = recs.last().unwrap();
    assert_eq!(last["target"], "reminder");
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .contains("DR and cold-standby nodes")
    );
    assert_eq!(report["audit_head"], last["hash"]);

    let out = verify(&trail).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .contains(&format!("{} records, chain intact", recs.len())),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_an_edited_record() {
    let (_c, trail, _) = rotated().await;
    let text = std::fs::read_to_string(&trail).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let i = lines
        .iter()
        .position(|l| l.contains("/cluster/v1/key/activate"))
        .unwrap();
    lines[i] = lines[i].replace("\"outcome\":\"204\"", "\"outcome\":\"500\"");
    std::fs::write(&trail, lines.join("\n") + "\n").unwrap();
    let out = verify(&trail).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains(&format!("line {}: record seq {} was altered", i + 1, i + 1)),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_a_deleted_record() {
    let (_c, trail, _) = rotated().await;
    let text = std::fs::read_to_string(&trail).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(4);
    std::fs::write(&trail, lines.join("\n") + "\n").unwrap();
    let out = verify(&trail).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("line 5: a record was removed: found seq 6, expected seq 5"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_a_swapped_pair() {
    let (_c, trail, _) = rotated().await;
    let text = std::fs::read_to_string(&trail).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(6, 7);
    std::fs::write(&trail, lines.join("\n") + "\n").unwrap();
    let out = verify(&trail).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("line 7: records were reordered: found seq 8, expected seq 7"),
        "{out}"
    );
}

/// A hostile GET whose URL is 300 KB: its record is cut (with the URL's length and
/// SHA-256), the next run on the cluster starts and ends normally, the chain
/// verifies, every record names the signer and its key, and the trail is the
/// owner's alone (0600 in a 0700 folder).
#[tokio::test(flavor = "multi_thread")]
async fn a_300_kb_url_cannot_stop_the_next_run() {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let cluster = Cluster::pods(1).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let out = run(
        BIN,
        &[
            "run",
            &cluster.signed(HOSTILE_WASM),
            "--site",
            &site,
            "--param",
            "attack=long-url",
            "--param",
            "bytes=300000",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let trail = cluster.dir().join("state/audit/sim.jsonl");
    let (_, ip) = cluster.sim.pod_ips().remove(0);
    let target = format!(
        "GET https://{ip}:4444/cluster/v1/key/{}",
        "a".repeat(300_000)
    );
    let recs = records(&trail);
    let get = recs
        .iter()
        .find(|r| r["capability"] == "http")
        .unwrap_or_else(|| panic!("no record of the GET: {recs:#?}"));
    assert_eq!(get["cut"]["target"]["bytes"], target.len(), "{get:#}");
    let sha: String = Sha256::digest(target.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(get["cut"]["target"]["sha256"], sha.as_str());
    let text = std::fs::read_to_string(&trail).unwrap();
    assert!(
        text.lines().all(|l| l.len() < 16 << 10),
        "every record is bounded"
    );

    // The next run on the same cluster starts, and ends normally.
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
    let out = verify(&trail).await;
    assert_eq!(out.code, 0, "{out}");

    let recs = records(&trail);
    assert!(recs.len() > 4, "{recs:#?}");
    for r in &recs {
        assert_eq!(r["signer"], "ops", "{r:#}");
        assert_eq!(r["key_id"], cluster.ops.key_id.as_str(), "{r:#}");
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&trail), 0o600);
    assert_eq!(mode(trail.parent().unwrap()), 0o700);
}
