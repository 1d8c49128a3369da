//! Mistakes in the sandbox's own sections of the site file (`[limits]`, `[http]`,
//! `[tls] pins`, `[restart]`): exit 2, naming the file, the key and (from the TOML
//! parser) the line, before any pod is contacted.

use cmk_tests::{Cluster, ROTATE_WASM, run};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

async fn refused(cluster: &Cluster, edit: impl FnOnce(String) -> String, expect: &[&str]) {
    let site = cluster.site_with("policy.toml", edit);
    let out = run(BIN, &["run", ROTATE_WASM, "--site", site.to_str().unwrap()]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("policy.toml"),
        "the file is named: {out}"
    );
    for e in expect {
        assert!(out.stderr.contains(e), "{e:?} missing: {out}");
    }
    assert!(cluster.oracle().calls.is_empty(), "no pod contacted: {out}");
}

/// Lines in the cluster's generated site file.
fn generated_lines(cluster: &Cluster) -> usize {
    let text = std::fs::read_to_string(cluster.site()).unwrap();
    assert!(text.ends_with('\n'));
    text.lines().count()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_limit_is_named_with_its_line() {
    let cluster = Cluster::pods(1).await;
    // The generated site ends with a newline; a blank line and `[limits]` follow it.
    let line = generated_lines(&cluster) + 3;
    refused(
        &cluster,
        |s| format!("{s}\n[limits]\nmemory_mb = 64\n"),
        &[&format!(
            "[limits] memory_mb: line {line}: unknown field `memory_mb`"
        )],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_of_the_wrong_type_or_range_is_named() {
    let cluster = Cluster::pods(1).await;
    let line = generated_lines(&cluster) + 3;
    refused(
        &cluster,
        |s| format!("{s}\n[limits]\nwall_clock_secs = \"an hour\"\n"),
        &[&format!("[limits] wall_clock_secs: line {line}")],
    )
    .await;
    refused(
        &cluster,
        |s| format!("{s}\n[limits]\nmemory_mib = 1\n"),
        &["[limits] memory_mib: must be 2..=4096, not 1"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_grants_are_checked() {
    let cluster = Cluster::pods(1).await;
    refused(
        &cluster,
        |s| format!("{s}\n[http]\nmethods = [\"DELETE\"]\n"),
        &["[http] methods", "\"DELETE\" is not a method"],
    )
    .await;
    refused(
        &cluster,
        |s| format!("{s}\n[http]\npaths = [\"/cluster/../sys\"]\n"),
        &["[http] paths", "'..'"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_pin_and_a_missing_working_dir_are_named() {
    let cluster = Cluster::pods(1).await;
    let ca_line = format!("ca = \"{}\"", cluster.files.ca.display());
    refused(
        &cluster,
        |s| s.replace(&ca_line, "pins = [\"sha256:1234\"]"),
        &["[tls] pins", "is not a SHA-256 digest"],
    )
    .await;
    refused(
        &cluster,
        |s| {
            s.replace(
                "timeout_secs = 120",
                "timeout_secs = 120\nworking_dir = \"/nonexistent/dir\"",
            )
        },
        &[
            "[restart] working_dir",
            "/nonexistent/dir is not a directory",
        ],
    )
    .await;
}
