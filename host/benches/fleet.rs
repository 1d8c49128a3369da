//! Fleet and scale figures of BENCHMARKS.md, against the simulator of `cmk-sim`
//! (served by this process; the host under test is the real `cmk-host` binary).
//!
//!     cargo bench -p cmk-host --bench fleet --profile dev -- fleet 10 50 100
//!     cargo bench -p cmk-host --bench fleet --profile dev -- pods 3 30 300
//!     cargo bench -p cmk-host --bench fleet --profile dev -- --rollout fleet 10 50 100
//!
//! `fleet N`: N clusters of 3 pods. One cluster's rotation (`cmk-host run`), then
//! one `cmk-host fleet --max-parallel N` over all N (each measured on its second
//! run, when the state folders exist), then N separate `cmk-host run`
//! processes at once: wall time of each, peak RSS (the fleet process's; the sum of
//! the N processes'), and CPU time: the host's (with the restart commands it ran)
//! and the simulators' (this process's). Last, the fleet's floor: the same clusters
//! rotated by the documented runbook's requests alone (`runbook`: no component, no
//! host), one cluster, then all at once, each a task of this process.
//!
//! `pods P`: one cluster of P pods whose fetch answers after 50 ms. The host's time
//! above the simulator's floor (two bare rolling restarts plus one fetch; the least
//! of three rotations against the least of three floors), and what
//! an ideal parallel client (every pod at once, the host's own TLS client) spends on
//! the same rounds of requests.
//!
//! `--rollout` (before the mode): the site files restart by Kubernetes rollout
//! (`[restart] kind = "kubernetes"`, the StatefulSet) instead of the simulator's
//! `restart.sh` (bash and curl, two processes per restart).
//!
//! `--step-ms N` (before the mode): each step of a simulated pod replacement takes N
//! ms instead of the simulator's 30 (longer restarts, closer to a real cluster's).
//!
//! `CMK_BENCH_WRAP="perf record -g -o FILE --"` runs the `fleet` process under that
//! command (a profile of the fleet alone).
//!
//! Without arguments: `fleet 2` and `pods 3` (a smoke run).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmk_host::caps::http::policy::HttpPolicy;
use cmk_host::site::Site;
use cmk_host::trust::keys::{self, SigningKey};
use cmk_sim::{Faults, Sim, SimConfig};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

/// `pods P` takes the least of this many floors and of this many rotations.
const ROUNDS: usize = 3;

/// A finished child: its exit code, wall time and peak RSS (KiB).
struct Measured {
    code: i32,
    wall: Duration,
    max_rss_kib: i64,
    /// User plus system CPU time of the child.
    cpu: Duration,
}

fn cpu_of(usage: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time this process (the simulators) has used so far.
fn own_cpu() -> Duration {
    // SAFETY: a zeroed rusage is a valid value for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    cpu_of(&usage)
}

/// Starts `args`, to be reaped by [`reap`].
fn spawn(args: &[String], cache: &Path) -> (std::process::Child, Instant) {
    // The subcommand, then the cache (before any `--`), then the rest.
    let wrap = std::env::var("CMK_BENCH_WRAP")
        .ok()
        .filter(|_| args[0] == "fleet");
    let mut cmd = match &wrap {
        Some(w) => {
            let mut parts = w.split_whitespace();
            let mut c = Command::new(parts.next().unwrap());
            c.args(parts).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let child = cmd
        .arg("--log=warn")
        .args(&args[..1])
        .args(["--cache-dir", cache.to_str().unwrap()])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cmk-host");
    (child, Instant::now())
}

/// Waits for `child` with `wait4`, which reports its peak RSS.
fn reap(child: std::process::Child, started: Instant) -> Measured {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped (std never waited on it).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    let wall = started.elapsed();
    std::mem::forget(child);
    Measured {
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        wall,
        max_rss_kib: usage.ru_maxrss,
        cpu: cpu_of(&usage),
    }
}

fn run_one(args: &[String], cache: &Path) -> Measured {
    let (child, started) = spawn(args, cache);
    reap(child, started)
}

/// `n` simulated clusters, their site files (cluster `bI`) trusting `key`.
async fn clusters(
    n: usize,
    config: &SimConfig,
    dir: &Path,
    public: &Path,
) -> (Vec<Sim>, Vec<PathBuf>) {
    let mut sims = Vec::new();
    let mut sites = Vec::new();
    for i in 0..n {
        let sim = Sim::start(config.clone()).await.expect("simulator");
        let files = sim.write_files(&dir.join(format!("b{i}"))).expect("files");
        let text = std::fs::read_to_string(&files.site).unwrap();
        let text = if rollout() {
            cmk_tests::replace_restart(
                &text,
                "[restart]\nkind = \"kubernetes\"\nworkload = \"statefulset/sdkms\"\n\n",
            )
        } else {
            text
        };
        let text = text.replacen("name = \"sim\"", &format!("name = \"b{i}\""), 1)
            + &cmk_host::trust::signer_entry("bench", &public.display().to_string());
        std::fs::write(&files.site, text).unwrap();
        sites.push(files.site);
        sims.push(sim);
    }
    (sims, sites)
}

/// `--rollout` was given.
static ROLLOUT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn rollout() -> bool {
    ROLLOUT.get().copied().unwrap_or(false)
}

/// `--step-ms N`: how long each step of a simulated pod replacement takes.
static STEP: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// A simulator of `pods` pods, with the step of `--step-ms` when given.
fn sim_config(pods: usize) -> SimConfig {
    let mut config = SimConfig::pods(pods);
    if let Some(step) = STEP.get() {
        config.restart_step_delay = *step;
    }
    config
}

fn mib(kib: i64) -> f64 {
    kib as f64 / 1024.0
}

fn rotate_args(component: &Path, site: &Path) -> Vec<String> {
    [
        "run",
        component.to_str().unwrap(),
        "--site",
        site.to_str().unwrap(),
        "--yes",
        "--param",
        "new_rotation=true",
    ]
    .map(String::from)
    .to_vec()
}

/// The least any host could do for one cluster, as a floor for the fleet: the
/// documented runbook's requests and nothing else. No component, Lease, journal,
/// trail or check between steps; a Kubernetes client and a pod client of its own,
/// as each cluster has its own credentials; the simulator's restart called in this
/// process instead of a rollout (no patch, no watch, no waiting on pods).
async fn runbook(sim: &Sim, site: &Site) {
    let path = site.cluster.kubeconfig.as_ref().expect("a kubeconfig");
    let kubeconfig = Kubeconfig::read_from(path).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    let pods: Api<Pod> = Api::namespaced(
        kube::Client::try_from(config).expect("kube client"),
        &site.cluster.namespace,
    );
    let selector = ListParams::default().labels(&site.cluster.selector);
    let port = site.cluster.port;
    let http = cmk_host::caps::http::client(&site.tls, &HttpPolicy::new(&site.http, port))
        .expect("pod client");
    let list = async || -> Vec<String> {
        let list = pods.list(&selector).await.expect("pod list");
        list.items
            .into_iter()
            .filter_map(|p| p.status?.pod_ip)
            .collect()
    };
    let url = |ip: &str, path: &str| format!("https://{ip}:{port}/cluster/v1/key{path}");
    let post = async |ip: &str, path: &str, body: String| {
        let answer = http.post(url(ip, path)).body(body).send().await;
        assert!(answer.expect(path).status().is_success(), "{path}");
    };
    let verify = async |ips: &[String]| {
        let gets = ips.iter().map(|ip| http.get(url(ip, "")).send());
        for answer in futures::future::join_all(gets).await {
            assert!(answer.expect("GET").status().is_success());
        }
    };
    // 1-4: list, propose, fetch on the others, verify on every pod.
    let ips = list().await;
    post(&ips[0], "/propose", String::new()).await;
    let target = format!("{{\"target\":\"{}:{port}\"}}", ips[0]);
    futures::future::join_all(ips[1..].iter().map(|ip| post(ip, "/fetch", target.clone()))).await;
    verify(&ips).await;
    // 5-8: restart, list, activate, restart, list, verify.
    sim.rolling_restart().await.expect("restart");
    let ips = list().await;
    post(&ips[0], "/activate", String::new()).await;
    sim.rolling_restart().await.expect("restart");
    verify(&list().await).await;
}

/// `runbook` for the first `n` clusters at once, each a task of its own: wall time
/// and this process's CPU (clients and simulators together).
async fn runbooks(sims: &Arc<Vec<Sim>>, sites: &Arc<Vec<Site>>, n: usize) -> (Duration, Duration) {
    let cpu = own_cpu();
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (sims, sites) = (sims.clone(), sites.clone());
            tokio::spawn(async move { runbook(&sims[i], &sites[i]).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("a runbook");
    }
    (started.elapsed(), own_cpu() - cpu)
}

async fn fleet(n: usize, component: &Path, public: &Path, cache: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let config = sim_config(3);

    let (one, one_site) = clusters(1, &config, &dir.path().join("one"), public).await;
    // Twice: the first also fills the precompile cache; the second is measured.
    let warm = run_one(&rotate_args(component, &one_site[0]), cache);
    assert_eq!(warm.code, 0, "one cluster's rotation");
    let sim_before = own_cpu();
    let single = run_one(&rotate_args(component, &one_site[0]), cache);
    let single_sim = own_cpu() - sim_before;
    assert_eq!(single.code, 0, "one cluster's rotation, again");
    drop(one);

    let (sims, sites) = clusters(n, &config, &dir.path().join("fleet"), public).await;
    let mut args: Vec<String> = [
        "fleet",
        "--component",
        component.to_str().unwrap(),
        "--yes",
        "--param",
        "new_rotation=true",
        "--max-parallel",
    ]
    .map(String::from)
    .to_vec();
    args.push(n.to_string());
    args.push("--".into());
    args.extend(sites.iter().map(|s| s.display().to_string()));
    // Twice, as for one cluster: the first run also creates each cluster's state
    // folders, journal and audit trail; the second is measured.
    let warm = run_one(&args, cache);
    assert_eq!(warm.code, 0, "the first fleet run");
    let sim_before = own_cpu();
    let fleet = run_one(&args, cache);
    let fleet_sim = own_cpu() - sim_before;
    assert_eq!(fleet.code, 0, "the fleet run");
    for sim in &sims {
        assert_eq!(sim.oracle().activates().len(), 2, "one activate each run");
    }

    // The same clusters again, by N separate processes at once.
    let children: Vec<_> = sites
        .iter()
        .map(|s| spawn(&rotate_args(component, s), cache))
        .collect();
    let started = Instant::now();
    let separate: Vec<Measured> = children.into_iter().map(|(c, t)| reap(c, t)).collect();
    let separate_wall = started.elapsed();
    assert!(separate.iter().all(|m| m.code == 0), "every separate run");
    let separate_rss: i64 = separate.iter().map(|m| m.max_rss_kib).sum();
    let separate_cpu: Duration = separate.iter().map(|m| m.cpu).sum();
    // The floor: the same clusters rotated by the runbook alone, one, then all at once.
    let loaded: Arc<Vec<Site>> =
        Arc::new(sites.iter().map(|s| Site::load(s).expect("site")).collect());
    let sims = Arc::new(sims);
    let versions: Vec<i64> = sims.iter().map(|s| s.oracle().version).collect();
    let (floor_one, _) = runbooks(&sims, &loaded, 1).await;
    let (floor_all, floor_cpu) = runbooks(&sims, &loaded, n).await;
    for (i, (sim, before)) in sims.iter().zip(versions).enumerate() {
        let oracle = sim.oracle();
        assert!(oracle.broken_pods().is_empty(), "no pod broken");
        let runs = if i == 0 { 2 } else { 1 };
        assert_eq!(
            oracle.version,
            before + runs,
            "each runbook rotated its cluster"
        );
    }
    println!(
        "fleet {n:>4}: CPU, host + simulator: one cluster {:.3} s + {:.3} s | fleet {:.3} s + {:.3} s \
         ({:.1} ms + {:.1} ms per cluster) | {n} processes {:.3} s of host CPU",
        single.cpu.as_secs_f64(),
        single_sim.as_secs_f64(),
        fleet.cpu.as_secs_f64(),
        fleet_sim.as_secs_f64(),
        fleet.cpu.as_secs_f64() * 1000.0 / n as f64,
        fleet_sim.as_secs_f64() * 1000.0 / n as f64,
        separate_cpu.as_secs_f64(),
    );
    println!(
        "fleet {n:>4}: one cluster {:>6.2} s | fleet {:>6.2} s ({:.2}x) peak RSS {:>7.1} MiB | \
         {n} processes {:>6.2} s, peak RSS {:>7.1} MiB in all ({:.1} MiB each)",
        single.wall.as_secs_f64(),
        fleet.wall.as_secs_f64(),
        fleet.wall.as_secs_f64() / single.wall.as_secs_f64(),
        mib(fleet.max_rss_kib),
        separate_wall.as_secs_f64(),
        mib(separate_rss),
        mib(separate_rss) / n as f64,
    );
    println!(
        "fleet {n:>4}: runbook floor: one cluster {:>6.2} s | {n} at once {:>6.2} s ({:.2}x), \
         {:.1} ms of CPU per cluster, client + simulator",
        floor_one.as_secs_f64(),
        floor_all.as_secs_f64(),
        floor_all.as_secs_f64() / floor_one.as_secs_f64(),
        floor_cpu.as_secs_f64() * 1000.0 / n as f64,
    );
}

async fn pods(p: usize, component: &Path, public: &Path, cache: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        faults: Faults {
            slow_answer: Some(("/cluster/v1/key/fetch".into(), 50)),
            ..Faults::default()
        },
        ..sim_config(p)
    };
    // The floor: two bare rolling restarts (on a simulator of its own) plus one fetch.
    let (bare, _) = clusters(1, &config, &dir.path().join("bare"), public).await;
    // Each the least of three: both vary by a few scheduling delays per pod.
    let mut floor = Duration::MAX;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        bare[0].rolling_restart().await.expect("restart");
        bare[0].rolling_restart().await.expect("restart");
        floor = floor.min(t.elapsed() + Duration::from_millis(50));
    }
    drop(bare);

    let (sims, sites) = clusters(1, &config, &dir.path().join("run"), public).await;
    // Twice: the first also fills the precompile cache; the second is measured.
    let warm = run_one(&rotate_args(component, &sites[0]), cache);
    assert_eq!(warm.code, 0, "the rotation");
    let rotation = (0..ROUNDS)
        .map(|_| {
            let m = run_one(&rotate_args(component, &sites[0]), cache);
            assert_eq!(m.code, 0, "the rotation, again");
            m
        })
        .min_by_key(|m| m.wall)
        .expect("rounds");
    let above = rotation.wall.saturating_sub(floor);

    // An ideal parallel client: one round of GETs to every pod at once, the host's
    // own TLS client; the rotation makes five such rounds.
    let site = Site::load(&sites[0]).expect("site");
    let client =
        cmk_host::caps::http::client(&site.tls, &HttpPolicy::new(&site.http, site.cluster.port))
            .expect("client");
    let ips = sims[0].pod_ips();
    let round = || async {
        let t = Instant::now();
        let gets = ips.iter().map(|(_, ip)| {
            let client = client.clone();
            let url = format!("https://{ip}:4444/cluster/v1/key");
            async move { client.get(url).send().await.map(|r| r.status()) }
        });
        for r in futures::future::join_all(gets).await {
            assert!(r.expect("GET").is_success());
        }
        t.elapsed()
    };
    round().await; // connections and TLS sessions, as the host's first round makes them
    let mut rounds = Duration::ZERO;
    for _ in 0..5 {
        rounds += round().await;
    }
    println!(
        "pods {p:>4}: rotation {:>7.2} s, floor {:>7.2} s, host above the floor {:>7.3} s \
         ({:.2} ms per pod) | ideal client, 5 rounds of GETs {:>7.3} s ({:.2} ms per pod)",
        rotation.wall.as_secs_f64(),
        floor.as_secs_f64(),
        above.as_secs_f64(),
        above.as_secs_f64() * 1000.0 / p as f64,
        rounds.as_secs_f64(),
        rounds.as_secs_f64() * 1000.0 / p as f64,
    );
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut by_rollout = false;
    loop {
        match args.first().map(String::as_str) {
            Some("--rollout") => by_rollout = true,
            Some("--step-ms") => {
                let ms = args
                    .get(1)
                    .and_then(|n| n.parse().ok())
                    .expect("--step-ms N");
                STEP.set(Duration::from_millis(ms)).expect("set once");
                args.remove(0);
            }
            _ => break,
        }
        args.remove(0);
    }
    ROLLOUT.set(by_rollout).expect("set once");
    let (mode, sizes): (&str, Vec<usize>) = match args.split_first() {
        Some((mode, sizes)) => (
            mode.as_str(),
            sizes.iter().map(|s| s.parse().expect("a size")).collect(),
        ),
        None => ("smoke", Vec::new()),
    };
    let dir = tempfile::tempdir().unwrap();
    keys::generate(&dir.path().join("bench")).expect("key");
    let key = SigningKey::load(&dir.path().join("bench.key")).unwrap();
    let component = dir.path().join("rotate.wasm");
    let signed = cmk_host::trust::verify::sign(cmk_host::ROTATE_COMPONENT, &key).unwrap();
    std::fs::write(&component, signed).unwrap();
    let public = dir.path().join("bench.pub");
    let cache = dir.path().join("cache");
    println!(
        "{} cores available; precompile cache warmed by the first run; restart by {}, \
         {} ms per pod replacement step",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if rollout() {
            "Kubernetes rollout"
        } else {
            "the simulator's restart.sh"
        },
        sim_config(1).restart_step_delay.as_millis(),
    );
    match mode {
        "fleet" => {
            for n in sizes {
                fleet(n, &component, &public, &cache).await;
            }
        }
        "pods" => {
            for p in sizes {
                pods(p, &component, &public, &cache).await;
            }
        }
        _ => {
            fleet(2, &component, &public, &cache).await;
            pods(3, &component, &public, &cache).await;
        }
    }
}
