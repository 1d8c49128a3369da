//! `[tls] server_name`: pods whose certificates name the cluster, not each pod's IP,
//! as an appliance's do. With the name set, the rotation verifies them against the CA
//! and that name and rotates; without it, every pod fails verification before a
//! request is sent, and the message names the `[tls]` key and the names the
//! certificate carries. The name changes what is verified, never where requests go.

use cmk_sim::{PodCerts, SimConfig};
use cmk_tests::{Cluster, PROBE_WASM, ROTATE_WASM, assert_rotated_once, run};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");
const NAME: &str = "dsm.sim.internal";

/// A cluster whose pod certificates carry only `dsm.sim.internal`; its generated
/// site file sets `[tls] server_name` to it.
async fn appliance() -> Cluster {
    Cluster::start(SimConfig {
        pod_certs: PodCerts::DnsOnly(NAME.into()),
        ..SimConfig::pods(3)
    })
    .await
}

fn posts(cluster: &Cluster) -> usize {
    cluster
        .oracle()
        .calls
        .iter()
        .filter(|c| c.method == "POST")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn server_name_verifies_pods_whose_certificates_name_only_the_cluster() {
    let cluster = appliance().await;
    let text = std::fs::read_to_string(cluster.site()).unwrap();
    assert!(
        text.contains(&format!("server_name = \"{NAME}\"")),
        "{text}"
    );
    let site = cluster.site().to_str().unwrap().to_string();
    let component = cluster.signed(ROTATE_WASM);
    let out = run(
        BIN,
        &["run", &component, "--site", &site, "--yes", "--json"],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert_rotated_once(&cluster.oracle(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_server_name_every_pod_fails_tls_and_the_message_says_what_to_set() {
    let cluster = appliance().await;
    let site = cluster.site_with("no-name.toml", |t| {
        t.replace(&format!("server_name = \"{NAME}\"\n"), "")
    });
    assert!(
        !std::fs::read_to_string(&site)
            .unwrap()
            .contains("server_name"),
        "the variant has no server_name"
    );
    let component = cluster.signed(ROTATE_WASM);
    let out = run(
        BIN,
        &["run", &component, "--site", site.to_str().unwrap(), "--yes"],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(
        posts(&cluster),
        0,
        "nothing POSTed: {:#?}",
        cluster.oracle()
    );
    assert!(
        cluster.oracle().calls.is_empty(),
        "no request got past the handshake"
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("[tls] ca: invalid peer certificate: the certificate of pod 127."),
        "{out}"
    );
    assert!(
        text.contains(&format!(
            "names \"{NAME}\", not the pod's IP: set [tls] server_name"
        )),
        "{out}"
    );
    assert!(text.contains(&format!("server_name = \"{NAME}\"")), "{out}");
    assert!(text.contains("[tls] pins"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_name_the_certificates_do_not_carry_is_named_as_the_fault() {
    let cluster = appliance().await;
    let site = cluster.site_with("wrong-name.toml", |t| {
        t.replace(NAME, "dsm.example.internal")
    });
    let component = cluster.signed(ROTATE_WASM);
    let out = run(
        BIN,
        &["run", &component, "--site", site.to_str().unwrap(), "--yes"],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(posts(&cluster), 0, "nothing POSTed");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("[tls] server_name: invalid peer certificate: the certificate of pod 127."),
        "{out}"
    );
    assert!(
        text.contains(&format!("names \"{NAME}\", not \"dsm.example.internal\"")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_name_is_never_a_destination() {
    let cluster = appliance().await;
    let site = cluster.site().to_str().unwrap().to_string();
    let probe = cluster.signed(PROBE_WASM);
    let pod_ip = &cluster.sim.pod_ips()[0].1;
    let requests = format!(
        "requests=GET https://{NAME}:4444/cluster/v1/key|GET https://{pod_ip}:4444/cluster/v1/key"
    );
    let out = run(
        BIN,
        &[
            "run",
            &probe,
            "--site",
            &site,
            "--param",
            "list_pods=true",
            "--param",
            &requests,
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let steps = out.json()["steps"].clone();
    let detail = |i: usize| steps[i]["detail"].as_str().unwrap_or_default().to_string();
    // Step 0 is the pod list.
    assert!(detail(1).starts_with("denied: "), "{out}");
    assert!(detail(2).starts_with("ok 200"), "{out}");
    let calls = cluster.oracle().calls;
    assert_eq!(calls.len(), 1, "only the pod IP was contacted: {calls:#?}");
    assert_eq!(&calls[0].ip, pod_ip);
}
