//! The simulator end to end over real TLS: a client that trusts only the simulator's
//! CA talks to the pods by IP, runs the documented procedure (and a wrong one), and
//! the oracle says what happened. Also: the real `kube` client lists the pods through
//! the kubeconfig that `write_files` writes.

use std::sync::Arc;

use cmk_sim::{Faults, Sim, SimConfig};
use serde_json::{Value, json};

fn client(sim: &Sim) -> reqwest::Client {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(sim.ca_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .unwrap()
}

fn url(sim: &Sim, ip: &str, path: &str) -> String {
    format!("https://{ip}:{}{path}", sim.port())
}

async fn status(c: &reqwest::Client, sim: &Sim, ip: &str) -> Value {
    let r = c.get(url(sim, ip, "/cluster/v1/key")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn post(c: &reqwest::Client, sim: &Sim, ip: &str, path: &str, body: Option<Value>) -> u16 {
    let mut req = c.post(url(sim, ip, path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap().status().as_u16()
}

/// Propose on the first pod, fetch on the others, verify every hash is the same.
async fn propose_and_distribute(c: &reqwest::Client, sim: &Sim) -> String {
    let pods = sim.pod_ips();
    assert_eq!(pods.len(), 3);
    let (_, proposer) = &pods[0];
    assert_eq!(
        post(c, sim, proposer, "/cluster/v1/key/propose", None).await,
        204
    );
    let target = json!({ "target": format!("{proposer}:{}", sim.port()) });
    for (_, ip) in &pods[1..] {
        assert_eq!(
            post(c, sim, ip, "/cluster/v1/key/fetch", Some(target.clone())).await,
            204
        );
    }
    let mut hashes = Vec::new();
    for (_, ip) in &pods {
        let s = status(c, sim, ip).await;
        assert_eq!(s["version"], 1);
        hashes.push(s["fetched_proposal_hash"].as_str().unwrap().to_string());
    }
    assert!(hashes.iter().all(|h| h == &hashes[0] && h.len() == 64));
    hashes.remove(0)
}

#[tokio::test]
async fn correct_procedure_puts_every_pod_on_version_2() {
    let sim = Sim::start(SimConfig::pods(3)).await.unwrap();
    let c = client(&sim);
    let before: Vec<_> = sim.pod_ips();

    let hash = propose_and_distribute(&c, &sim).await;
    sim.rolling_restart().await.unwrap();
    let after = sim.pod_ips();
    assert_eq!(after.len(), 3);
    for ((n1, ip1), (n2, ip2)) in before.iter().zip(&after) {
        assert_eq!(n1, n2);
        assert_ne!(ip1, ip2, "a restarted pod gets a new IP");
    }
    // The old addresses are gone.
    assert!(
        c.get(url(&sim, &before[0].1, "/cluster/v1/key"))
            .send()
            .await
            .is_err()
    );
    let o = sim.oracle();
    assert!(
        o.pods
            .iter()
            .all(|p| p.loaded_proposal.as_deref() == Some(&hash))
    );

    assert_eq!(
        post(&c, &sim, &after[1].1, "/cluster/v1/key/activate", None).await,
        204
    );
    // Still the old key in memory until the restart.
    assert_eq!(status(&c, &sim, &after[0].1).await["version"], 1);
    sim.rolling_restart().await.unwrap();

    for (_, ip) in sim.pod_ips() {
        let s = status(&c, &sim, &ip).await;
        assert_eq!(s["version"], 2);
        assert_eq!(s["fetched_proposal_hash"], Value::Null);
    }
    let o = sim.oracle();
    assert_eq!(o.version, 2);
    assert_eq!(o.proposal, None);
    assert!(o.broken_pods().is_empty());
    assert!(o.pods.iter().all(|p| p.running_version == 2 && p.ready));
    assert_eq!(o.proposes().len(), 1);
    assert_eq!(o.fetches().len(), 2);
    assert_eq!(o.activates().len(), 1);
    assert_eq!(o.restarts.len(), 2);
    assert!(o.restarts.iter().all(|r| r.ok));
    // One counter orders calls and restarts: the activate came after restart #1.
    assert!(o.activates()[0].seq > o.restarts[0].seq);
    assert!(o.activates()[0].seq < o.restarts[1].seq);
    sim.shutdown().await;
}

#[tokio::test]
async fn activating_before_the_restart_breaks_the_pods() {
    let sim = Sim::start(SimConfig::pods(3)).await.unwrap();
    let c = client(&sim);
    propose_and_distribute(&c, &sim).await;
    let ip0 = sim.pod_ips()[0].1.clone();
    assert_eq!(
        post(&c, &sim, &ip0, "/cluster/v1/key/activate", None).await,
        204
    );
    sim.rolling_restart().await.unwrap();

    let o = sim.oracle();
    assert_eq!(o.broken_pods().len(), 3);
    for (_, ip) in sim.pod_ips() {
        let r = c
            .get(url(&sim, &ip, "/cluster/v1/key"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["error"],
            "cannot unwrap database: master key version 2 not loaded"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn protocol_errors_and_faults() {
    let sim = Sim::start(SimConfig::pods(3)).await.unwrap();
    let c = client(&sim);
    let pods = sim.pod_ips();
    let ip = |i: usize| pods[i].1.clone();
    let port = sim.port();

    // No proposal yet.
    let t0 = json!({ "target": format!("{}:{port}", ip(0)) });
    assert_eq!(
        post(&c, &sim, &ip(1), "/cluster/v1/key/fetch", Some(t0.clone())).await,
        404
    );
    assert_eq!(
        post(&c, &sim, &ip(1), "/cluster/v1/key/activate", None).await,
        409
    );
    // Bad bodies, wrong method, unknown path.
    assert_eq!(
        post(&c, &sim, &ip(1), "/cluster/v1/key/fetch", None).await,
        400
    );
    assert_eq!(
        post(
            &c,
            &sim,
            &ip(1),
            "/cluster/v1/key/fetch",
            Some(json!({"target": 1}))
        )
        .await,
        400
    );
    assert_eq!(post(&c, &sim, &ip(1), "/cluster/v1/key", None).await, 405);
    let r = c
        .get(url(&sim, &ip(1), "/cluster/v1/key/propose"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = c.get(url(&sim, &ip(1), "/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Propose twice: the first fetcher now holds a stale hash.
    assert_eq!(
        post(&c, &sim, &ip(0), "/cluster/v1/key/propose", None).await,
        204
    );
    assert_eq!(
        post(&c, &sim, &ip(1), "/cluster/v1/key/fetch", Some(t0.clone())).await,
        204
    );
    assert_eq!(
        post(&c, &sim, &ip(2), "/cluster/v1/key/propose", None).await,
        204
    );
    let h1 = status(&c, &sim, &ip(1)).await["fetched_proposal_hash"].clone();
    let h2 = status(&c, &sim, &ip(2)).await["fetched_proposal_hash"].clone();
    assert_ne!(h1, h2);
    // sdkms-0 no longer holds the proposal, and a non-pod address is no target.
    assert_eq!(
        post(&c, &sim, &ip(1), "/cluster/v1/key/fetch", Some(t0)).await,
        502
    );
    let nowhere = json!({ "target": format!("127.0.0.1:{port}") });
    assert_eq!(
        post(&c, &sim, &ip(1), "/cluster/v1/key/fetch", Some(nowhere)).await,
        502
    );

    // Faults: failing fetch, diverging fetch, oversized status.
    let t2 = json!({ "target": format!("{}:{port}", ip(2)) });
    sim.set_faults(Faults {
        fail_fetch_on: Some("sdkms-0".into()),
        diverge_hash_on: Some("sdkms-1".into()),
        oversized_status_on: Some(("sdkms-2".into(), 100_000)),
        ..Faults::default()
    });
    assert_eq!(
        post(&c, &sim, &ip(0), "/cluster/v1/key/fetch", Some(t2.clone())).await,
        500
    );
    assert_eq!(
        post(&c, &sim, &ip(1), "/cluster/v1/key/fetch", Some(t2)).await,
        204
    );
    let h1 = status(&c, &sim, &ip(1)).await["fetched_proposal_hash"].clone();
    assert_ne!(h1, h2, "diverged");
    let big = c
        .get(url(&sim, &ip(2), "/cluster/v1/key"))
        .send()
        .await
        .unwrap();
    let text = big.text().await.unwrap();
    assert!(text.len() >= 100_000);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["fetched_proposal_hash"], h2);

    // Every request was recorded, GETs included, with its status.
    let o = sim.oracle();
    assert!(o.calls.iter().any(|c| c.method == "GET" && c.status == 404));
    assert!(o.calls.iter().any(|c| c.status == 502));
    let fetch_body = o.fetches()[0].body.clone().unwrap();
    assert_eq!(fetch_body["target"], format!("{}:{port}", ip(0)));
    assert_eq!(o.proposes().len(), 2);
    assert!(o.calls.windows(2).all(|w| w[0].seq < w[1].seq));
    sim.shutdown().await;
}

#[tokio::test]
async fn warmup_and_failing_restart() {
    let mut config = SimConfig::pods(3);
    config.faults.warmup_503 = 2;
    config.faults.fail_restart = Some(2);
    let sim = Sim::start(config).await.unwrap();
    let c = client(&sim);
    // No warm-up for the initial pods.
    let ip0 = sim.pod_ips()[0].1.clone();
    status(&c, &sim, &ip0).await;

    sim.rolling_restart().await.unwrap();
    let ip0 = sim.pod_ips()[0].1.clone();
    for _ in 0..2 {
        let r = c
            .get(url(&sim, &ip0, "/cluster/v1/key"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "warming up");
    }
    status(&c, &sim, &ip0).await;

    let before = sim.pod_ips();
    let err = sim.rolling_restart().await.unwrap_err();
    assert!(format!("{err:#}").contains("fail_restart"), "{err:#}");
    let after = sim.pod_ips();
    assert_ne!(before[0].1, after[0].1, "the first pod was replaced");
    assert_eq!(before[1..], after[1..], "the others were not");
    let o = sim.oracle();
    assert_eq!(
        o.restarts.iter().map(|r| r.ok).collect::<Vec<_>>(),
        [true, false]
    );
    // The third restart works again.
    sim.rolling_restart().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn kube_lists_pods_through_the_written_kubeconfig() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};

    let sim = Sim::start(SimConfig::pods(3)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = sim.write_files(dir.path()).unwrap();
    let kubeconfig = Kubeconfig::read_from(&files.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "sdkms");

    let list = pods
        .list(&ListParams::default().labels("app=sdkms"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 3);
    let ips: Vec<_> = sim.pod_ips().into_iter().map(|(_, ip)| ip).collect();
    for (pod, ip) in list.items.iter().zip(&ips) {
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_ref(), Some(ip));
    }
    let names: Vec<_> = list
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["sdkms-0", "sdkms-1", "sdkms-2"]);

    let none = pods
        .list(&ListParams::default().labels("app=other"))
        .await
        .unwrap();
    assert!(none.items.is_empty());
    let set = pods
        .list(
            &ListParams::default()
                .labels("app in (sdkms),statefulset.kubernetes.io/pod-name!=sdkms-1"),
        )
        .await
        .unwrap();
    assert_eq!(set.items.len(), 2);

    let one = pods.get("sdkms-1").await.unwrap();
    assert_eq!(one.metadata.name.as_deref(), Some("sdkms-1"));
    let missing = pods.get("sdkms-9").await.unwrap_err();
    assert!(
        matches!(missing, kube::Error::Api(ref s) if s.code == 404),
        "{missing:?}"
    );
    let other_ns: Api<Pod> = Api::namespaced(client, "elsewhere");
    assert!(
        other_ns
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // The restart script works, and the site file points at the files.
    let out = tokio::process::Command::new(&files.restart_script)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sim.oracle().restarts.len(), 1);
    let site = std::fs::read_to_string(&files.site).unwrap();
    assert!(site.contains(&format!("kubeconfig = \"{}\"", files.kubeconfig.display())));
    sim.shutdown().await;
}

#[tokio::test]
async fn api_server_requires_the_token() {
    let sim = Sim::start(SimConfig::pods(1)).await.unwrap();
    let c = client(&sim);
    let r = c
        .get(format!("{}/api/v1/namespaces/sdkms/pods", sim.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["code"], 401);

    let r = c
        .get(format!("{}/apis/apps/v1/nothing", sim.api_url()))
        .bearer_auth(sim.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "NotFound");

    let r = c
        .get(format!("{}/sim/v1/oracle", sim.api_url()))
        .bearer_auth(sim.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let o: cmk_sim::Oracle = r.json().await.unwrap();
    assert_eq!(o.pods.len(), 1);
    assert_eq!(o.version, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn failed_restart_makes_the_script_exit_non_zero() {
    let mut config = SimConfig::pods(2);
    config.faults.fail_restart = Some(1);
    let sim = Sim::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = sim.write_files(dir.path()).unwrap();
    let out = tokio::process::Command::new(&files.restart_script)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rolling restart"), "{stdout}");
    assert!(stdout.contains("fail_restart"), "{stdout}");
    assert!(!sim.oracle().restarts[0].ok);
    sim.shutdown().await;
}

#[tokio::test]
async fn pod_list_shows_the_restart_in_progress() {
    use std::time::Duration;
    let mut config = SimConfig::pods(2);
    config.restart_step_delay = Duration::from_millis(150);
    let sim = Arc::new(Sim::start(config).await.unwrap());
    let c = client(&sim);
    let list_url = format!("{}/api/v1/namespaces/sdkms/pods", sim.api_url());
    let s = sim.clone();
    let restart = tokio::spawn(async move { s.rolling_restart().await });
    let mut seen = std::collections::BTreeSet::new();
    while !restart.is_finished() {
        let list: Value = c
            .get(&list_url)
            .bearer_auth(sim.token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = list["items"].as_array().unwrap();
        let phases: Vec<String> = items
            .iter()
            .map(|p| {
                let st = &p["status"];
                format!(
                    "{}:{}:{}",
                    p["metadata"]["name"].as_str().unwrap(),
                    st["phase"].as_str().unwrap(),
                    st["podIP"].is_string()
                )
            })
            .collect();
        seen.insert(phases.join(","));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    restart.await.unwrap().unwrap();
    // Absent, then Pending without an IP, then Running with one.
    assert!(seen.contains("sdkms-1:Running:true"), "{seen:?}");
    assert!(
        seen.contains("sdkms-0:Pending:false,sdkms-1:Running:true"),
        "{seen:?}"
    );
    assert!(
        seen.contains("sdkms-0:Running:true,sdkms-1:Pending:false"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn kube_rollout_restart_of_the_statefulset_replaces_the_pods() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use kube::api::Api;
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use std::time::Duration;

    let sim = Sim::start(SimConfig::pods(3)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = sim.write_files(dir.path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&files.kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let sts: Api<StatefulSet> = Api::namespaced(client, "sdkms");
    let before_ips = sim.pod_ips();

    let patched = sts.restart("sdkms").await.unwrap();
    let generation = patched.metadata.generation.unwrap();
    assert_eq!(generation, 2);
    // Wait for the rollout as `kubectl rollout status` does.
    let done = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let s = sts.get("sdkms").await.unwrap();
            let st = s.status.unwrap();
            if st.observed_generation >= Some(generation)
                && st.updated_replicas == Some(3)
                && st.ready_replicas == Some(3)
                && st.current_revision == st.update_revision
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "rollout did not complete");
    let o = sim.oracle();
    assert_eq!(o.restarts.len(), 1);
    assert!(o.restarts[0].ok);
    for ((_, a), (_, b)) in before_ips.iter().zip(sim.pod_ips()) {
        assert_ne!(a, &b);
    }
    assert!(sts.get("other").await.is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn hundreds_of_pods_get_distinct_addresses() {
    let sim = Sim::start(SimConfig::pods(300)).await.unwrap();
    let ips = sim.pod_ips();
    assert_eq!(ips.len(), 300);
    assert_eq!(ips[2].0, "sdkms-2", "StatefulSet order, not lexicographic");
    let distinct: std::collections::BTreeSet<_> = ips.iter().map(|(_, ip)| ip).collect();
    assert_eq!(distinct.len(), 300);
    // Each is a live TLS server with a certificate for its own IP.
    let c = client(&sim);
    let last = &ips[299].1;
    assert_eq!(status(&c, &sim, last).await["node"], "sdkms-299");
    sim.shutdown().await;
}

#[tokio::test]
async fn kube_rollout_restart_of_a_deployment_replaces_the_pods() {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    use kube::api::Api;
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use std::time::Duration;

    let sim = Sim::start(SimConfig {
        workload: cmk_sim::WorkloadKind::Deployment,
        ..SimConfig::pods(2)
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = sim.write_files(dir.path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&files.kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    // Only the configured kind exists.
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "sdkms");
    assert!(sts.get("sdkms").await.is_err());
    let deploy: Api<Deployment> = Api::namespaced(client, "sdkms");
    let before_ips = sim.pod_ips();

    let generation = deploy
        .restart("sdkms")
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap();
    assert_eq!(generation, 2);
    // Wait as `kubectl rollout status` does for a Deployment.
    let done = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let st = deploy.get("sdkms").await.unwrap().status.unwrap();
            if st.observed_generation >= Some(generation)
                && st.updated_replicas == Some(2)
                && st.replicas == Some(2)
                && st.available_replicas == Some(2)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "rollout did not complete");
    let o = sim.oracle();
    assert_eq!(o.restarts.len(), 1);
    assert!(o.restarts[0].ok);
    for ((_, a), (_, b)) in before_ips.iter().zip(sim.pod_ips()) {
        assert_ne!(a, &b);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_cluster_can_start_with_a_distributed_proposal_one_pod_diverging() {
    let sim = Sim::start(SimConfig {
        start: cmk_sim::Start::Distributed,
        faults: Faults {
            diverge_hash_on: Some("sdkms-2".into()),
            ..Faults::default()
        },
        ..SimConfig::pods(3)
    })
    .await
    .unwrap();
    let c = client(&sim);
    let oracle = sim.oracle();
    let proposal = oracle.proposal.clone().expect("a proposal exists");
    let hash = |i: usize| oracle.pods[i].fetched_hash.clone();
    assert_eq!(hash(0).as_deref(), Some(proposal.as_str()), "the proposer");
    assert_eq!(hash(1).as_deref(), Some(proposal.as_str()), "fetched");
    assert!(hash(2).is_some() && hash(2) != hash(0), "diverged");
    assert!(oracle.calls.is_empty(), "set up without requests");
    assert_eq!(oracle.version, 1);
    // And the pods say so.
    let pods = sim.pod_ips();
    assert_eq!(
        status(&c, &sim, &pods[1].1).await["fetched_proposal_hash"],
        proposal.as_str()
    );
    assert_eq!(
        status(&c, &sim, &pods[2].1).await["fetched_proposal_hash"],
        hash(2).unwrap().as_str()
    );

    // Without the fault, every pod holds the proposal.
    let sim = Sim::start(SimConfig {
        start: cmk_sim::Start::Distributed,
        ..SimConfig::pods(2)
    })
    .await
    .unwrap();
    let oracle = sim.oracle();
    assert!(
        oracle
            .pods
            .iter()
            .all(|p| p.fetched_hash == oracle.proposal)
    );
}
