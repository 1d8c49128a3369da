//! A hostile component's `http` calls: every way of reaching past
//! `https://<listed pod IP>:<site port><allowed path>` is denied with the typed
//! error, and a listener on each target sees no connection; bodies over the
//! site's `[http]` limits are refused or cut, with a typed error.

use cmk_sim::{Faults, SimConfig};
use cmk_tests::{Canary, Cluster, PROBE_WASM, run};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

/// Runs the probe (pods listed first) with `requests` and extra params; returns the
/// report.
async fn probe(
    cluster: &Cluster,
    site: &str,
    requests: &[String],
    params: &[&str],
) -> serde_json::Value {
    let component = cluster.signed(PROBE_WASM);
    let requests = format!("requests={}", requests.join("|"));
    let mut args = vec![
        "run",
        &component,
        "--site",
        site,
        "--param",
        "list_pods=true",
        "--param",
        &requests,
    ];
    for p in params {
        args.extend(["--param", p]);
    }
    args.push("--json");
    let out = run(BIN, &args).await;
    assert_eq!(out.code, 0, "{out}");
    out.json()
}

fn step_detail(report: &serde_json::Value, name: &str) -> String {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {report:#}"))["detail"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `a.b.c.d` as one decimal number, and as one hex number.
fn other_forms(ip: &str) -> (String, String) {
    let n = ip
        .parse::<std::net::Ipv4Addr>()
        .map(u32::from)
        .expect("an IPv4 pod IP");
    (n.to_string(), format!("0x{n:x}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_way_around_the_allow_list_is_denied_and_never_connects() {
    let cluster = Cluster::pods(1).await;
    let (_, pod_ip) = cluster.sim.pod_ips().remove(0);
    let loopback = Canary::listen("127.0.0.1:0").await;
    let pod_other_port = Canary::listen(&format!("{pod_ip}:0")).await;
    let (lp, pp) = (loopback.addr.port(), pod_other_port.addr.port());
    let (pod_dec, pod_hex) = other_forms(&pod_ip);
    let (lo_dec, lo_hex) = other_forms("127.0.0.1");
    let key = "/cluster/v1/key";

    let control = format!("GET https://{pod_ip}:4444{key}");
    let cases: Vec<(String, &str)> = vec![
        (format!("GET http://{pod_ip}:{pp}{key}"), "only https"),
        (format!("GET http://{pod_ip}:4444{key}"), "only https"),
        (
            format!("GET https://{pod_ip}:{pp}{key}"),
            "only the site's pod port 4444",
        ),
        (
            format!("GET https://127.0.0.1:{lp}{key}"),
            "not the IP of a pod",
        ),
        (
            format!("GET https://{pod_ip}:4444/admin/v1/users"),
            "outside the allowed prefixes",
        ),
        (
            format!("GET https://{pod_ip}:4444/cluster/v1/keys"),
            "outside the allowed prefixes",
        ),
        (
            format!("POST https://{pod_ip}:4444{key}/../../../sys/v1/reset"),
            "outside the allowed prefixes",
        ),
        (
            format!("GET https://admin:secret@{pod_ip}:4444{key}"),
            "credentials in the URL",
        ),
        (
            format!("GET https://{pod_ip}@127.0.0.1:{lp}{key}"),
            "credentials in the URL",
        ),
        (format!("GET https://{pod_dec}:4444{key}"), "canonical IP"),
        (format!("GET https://{pod_hex}:4444{key}"), "canonical IP"),
        (
            format!("GET https://[::ffff:{pod_ip}]:4444{key}"),
            "not the IP of a pod",
        ),
        (format!("GET https://{lo_dec}:{lp}{key}"), "canonical IP"),
        (format!("GET https://{lo_hex}:{lp}{key}"), "canonical IP"),
        (
            format!("GET https://[::ffff:127.0.0.1]:{lp}{key}"),
            "not the IP of a pod",
        ),
        (
            format!("GET https://localhost:{lp}{key}"),
            "names are not resolved",
        ),
    ];
    let mut requests = vec![control.clone()];
    requests.extend(cases.iter().map(|(r, _)| r.clone()));
    for batch in ["batch=false", "batch=true"] {
        let report = probe(
            &cluster,
            cluster.site().to_str().unwrap(),
            &requests,
            &[batch],
        )
        .await;
        assert_eq!(step_detail(&report, &control), "ok 200", "{batch}");
        for (request, rule) in &cases {
            let detail = step_detail(&report, request);
            assert!(
                detail.starts_with("denied: ") && detail.contains(rule),
                "{batch} {request}: {detail}"
            );
        }
        // Every denial is in the report with its capability, target and rule.
        let denials = report["denials"].as_array().unwrap();
        assert_eq!(denials.len(), cases.len(), "{batch}");
        assert!(denials.iter().all(|d| d["capability"] == "http"));
    }
    assert_eq!(
        loopback.connections(),
        0,
        "the loopback canary saw a connection"
    );
    assert_eq!(
        pod_other_port.connections(),
        0,
        "the pod's other port saw a connection"
    );
    // The pod saw the two control reads, nothing else.
    let calls = cluster.oracle().calls;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert!(
        calls.iter().all(|c| c.method == "GET" && c.path == key),
        "{calls:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_body_over_the_limit_is_denied_before_sending() {
    let cluster = Cluster::pods(2).await;
    let ips = cluster.sim.pod_ips();
    let site = cluster.site_with("small-bodies.toml", |s| {
        format!("{s}\n[http]\nmax_request_bytes = 1024\n")
    });
    let fetch = format!("POST https://{}:4444/cluster/v1/key/fetch", ips[1].1);
    let report = probe(
        &cluster,
        site.to_str().unwrap(),
        std::slice::from_ref(&fetch),
        &["body_bytes=4096"],
    )
    .await;
    let detail = step_detail(&report, &fetch);
    assert!(
        detail.starts_with("denied: ") && detail.contains("4096 bytes is over the limit of 1024"),
        "{detail}"
    );
    assert!(cluster.oracle().calls.is_empty(), "nothing reached a pod");

    // The control: a body within the limit is sent (and the pod answers it).
    let report = probe(
        &cluster,
        site.to_str().unwrap(),
        std::slice::from_ref(&fetch),
        &["body_bytes=512"],
    )
    .await;
    assert!(
        !step_detail(&report, &fetch).starts_with("denied"),
        "{report:#}"
    );
    assert_eq!(cluster.oracle().calls.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_over_the_limit_is_cut_with_a_typed_error() {
    let cluster = Cluster::start(SimConfig {
        faults: Faults {
            oversized_status_on: Some(("sdkms-0".into(), 512 << 10)),
            ..Faults::default()
        },
        ..SimConfig::pods(1)
    })
    .await;
    let (_, pod_ip) = cluster.sim.pod_ips().remove(0);
    let read = format!("GET https://{pod_ip}:4444/cluster/v1/key");

    let limited = cluster.site_with("small-responses.toml", |s| {
        format!("{s}\n[http]\nmax_response_bytes = 65536\n\n[limits]\nmemory_mib = 8\n")
    });
    let report = probe(
        &cluster,
        limited.to_str().unwrap(),
        std::slice::from_ref(&read),
        &[],
    )
    .await;
    assert_eq!(
        step_detail(&report, &read),
        "protocol: response body over the limit of 65536 bytes"
    );

    // The control: with the default limit (1 MiB) the same answer arrives whole.
    let report = probe(
        &cluster,
        cluster.site().to_str().unwrap(),
        std::slice::from_ref(&read),
        &[],
    )
    .await;
    assert_eq!(step_detail(&report, &read), "ok 200");
}

/// The generated site with `[tls] ca` replaced by `pins`.
fn pinned_site(cluster: &Cluster, pins: &[String]) -> String {
    let ca_line = format!("ca = \"{}\"", cluster.files.ca.display());
    let pins = pins
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let path = cluster.site_with("pinned.toml", |s| {
        assert!(s.contains(&ca_line), "{s}");
        s.replace(&ca_line, &format!("pins = [{pins}]"))
    });
    path.to_str().unwrap().to_string()
}

/// `sha256:<hex>` of the simulator's CA certificate (DER).
fn ca_pin(cluster: &Cluster) -> String {
    use sha2::{Digest, Sha256};
    let pem = cluster.sim.ca_pem();
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM");
    let hex: String = Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

#[tokio::test(flavor = "multi_thread")]
async fn pinned_certificates_are_trusted_and_others_are_not() {
    let cluster = Cluster::pods(1).await;
    let (_, pod_ip) = cluster.sim.pod_ips().remove(0);
    let read = format!("GET https://{pod_ip}:4444/cluster/v1/key");

    let wrong = pinned_site(&cluster, &["00".repeat(32)]);
    let report = probe(&cluster, &wrong, std::slice::from_ref(&read), &[]).await;
    let detail = step_detail(&report, &read);
    assert!(
        detail.starts_with("tls: ") && detail.contains("matches a pin"),
        "{detail}"
    );
    assert!(cluster.oracle().calls.is_empty(), "no request was sent");

    let right = pinned_site(&cluster, &["00".repeat(32), ca_pin(&cluster)]);
    let report = probe(&cluster, &right, std::slice::from_ref(&read), &[]).await;
    assert_eq!(step_detail(&report, &read), "ok 200");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_runs_with_the_ca_pinned_across_restarts() {
    let cluster = Cluster::pods(3).await;
    let site = pinned_site(&cluster, &[ca_pin(&cluster)]);
    let component = cluster.signed(cmk_tests::ROTATE_WASM);
    let out = run(
        BIN,
        &["run", &component, "--site", &site, "--json", "--yes"],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    cmk_tests::assert_rotated_once(&cluster.oracle(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_over_the_time_limit_ends_with_a_typed_timeout() {
    let cluster = Cluster::start(SimConfig {
        faults: Faults {
            slow_status_on: Some(("sdkms-0".into(), 3000)),
            ..Faults::default()
        },
        ..SimConfig::pods(1)
    })
    .await;
    let (_, pod_ip) = cluster.sim.pod_ips().remove(0);
    let read = format!("GET https://{pod_ip}:4444/cluster/v1/key");
    let site = cluster.site_with("fast.toml", |s| format!("{s}\n[http]\ntimeout_secs = 1\n"));
    let report = probe(
        &cluster,
        site.to_str().unwrap(),
        std::slice::from_ref(&read),
        &[],
    )
    .await;
    assert_eq!(step_detail(&report, &read), "timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_keeps_to_the_concurrency_limit() {
    let cluster = Cluster::start(SimConfig {
        faults: Faults {
            slow_status_on: Some(("sdkms-0".into(), 400)),
            ..Faults::default()
        },
        ..SimConfig::pods(1)
    })
    .await;
    let (_, pod_ip) = cluster.sim.pod_ips().remove(0);
    let read = format!("GET https://{pod_ip}:4444/cluster/v1/key");
    let site = cluster.site_with("serial.toml", |s| {
        format!("{s}\n[http]\nmax_concurrency = 1\n")
    });
    // Four reads of 400 ms each, one at a time: at least 1.6 s (at the default
    // concurrency they overlap and take about 0.4 s).
    let requests = vec![read.clone(); 4];
    let report = probe(&cluster, site.to_str().unwrap(), &requests, &["batch=true"]).await;
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["detail"] == "ok 200")
            .count()
            == 4,
        "{report:#}"
    );
    assert!(
        report["duration_ms"].as_u64().unwrap() >= 1600,
        "{report:#}"
    );
    assert_eq!(cluster.oracle().calls.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_certificate_from_another_ca_is_a_typed_tls_error() {
    let cluster = Cluster::pods(1).await;
    let (_, pod_ip) = cluster.sim.pod_ips().remove(0);
    let read = format!("GET https://{pod_ip}:4444/cluster/v1/key");
    let other_ca = cluster.dir().join("other-ca.pem");
    let other = cmk_sim::pki::Pki::new().unwrap();
    std::fs::write(&other_ca, other.ca_pem()).unwrap();
    let ca_line = format!("ca = \"{}\"", cluster.files.ca.display());
    let site = cluster.site_with("other-ca.toml", |s| {
        s.replace(&ca_line, &format!("ca = \"{}\"", other_ca.display()))
    });
    let report = probe(
        &cluster,
        site.to_str().unwrap(),
        std::slice::from_ref(&read),
        &[],
    )
    .await;
    let detail = step_detail(&report, &read);
    assert!(
        detail.starts_with("tls: ") && detail.contains("invalid peer certificate"),
        "{detail}"
    );
    // The host says which key is at fault and what to do.
    assert!(
        detail.contains(&format!(
            "[tls] ca: invalid peer certificate: the certificate of pod {pod_ip} is not issued by the CA in {}",
            other_ca.display()
        )) && detail.contains("[tls] pins"),
        "{detail}"
    );
    assert!(cluster.oracle().calls.is_empty(), "no request was sent");
}

/// Percent-encoded `/`, `\`, `.`, NUL and `%` in a request path, in any case, are
/// refused before anything is sent: a pod's router could decode them after the
/// allow-list read the path (`/cluster/v1/key/..%2f..%2fadmin` is `/cluster/admin`;
/// decoded twice, `..%252f` is `../`).
/// The pod sees the two control reads, nothing else; no other listener sees a thing.
#[tokio::test(flavor = "multi_thread")]
async fn encoded_traversal_in_a_path_is_denied_and_never_connects() {
    let cluster = Cluster::pods(1).await;
    let (_, pod_ip) = cluster.sim.pod_ips().remove(0);
    let pod_other_port = Canary::listen(&format!("{pod_ip}:0")).await;
    let key = format!("https://{pod_ip}:4444/cluster/v1/key");
    let control = format!("GET {key}");
    let cases: Vec<(String, &str)> = vec![
        (format!("GET {key}/..%2f..%2fadmin"), "%2f"),
        (format!("GET {key}/..%2F..%2Fadmin"), "%2f"),
        (format!("POST {key}/..%2f..%2fsys/v1/reset"), "%2f"),
        (format!("GET {key}/%2e%2e/%2e%2e/admin"), "%2e"),
        (format!("GET {key}/%2E%2E/%2E%2E/admin"), "%2e"),
        (format!("POST {key}/.%2e/propose"), "%2e"),
        (format!("GET {key}/..%5c..%5cadmin"), "%5c"),
        (format!("GET {key}/..%5C..%5Cadmin"), "%5c"),
        (format!("GET {key}%00/admin"), "%00"),
        (format!("POST {key}/activate%00.json"), "%00"),
        (format!("GET {key}/..%252f..%252fadmin"), "%25"),
        (format!("POST {key}/%252e%252e/propose"), "%25"),
    ];
    let mut requests = vec![control.clone()];
    requests.extend(cases.iter().map(|(r, _)| r.clone()));
    for batch in ["batch=false", "batch=true"] {
        let report = probe(
            &cluster,
            cluster.site().to_str().unwrap(),
            &requests,
            &[batch],
        )
        .await;
        assert_eq!(step_detail(&report, &control), "ok 200", "{batch}");
        for (request, code) in &cases {
            let detail = step_detail(&report, request);
            assert!(
                detail.starts_with("denied: ")
                    && detail.contains(code)
                    && detail.contains("encoded separators, dots, NUL and '%' are refused"),
                "{batch} {request}: {detail}"
            );
        }
        assert_eq!(report["denials"].as_array().unwrap().len(), cases.len());
    }
    let calls = cluster.oracle().calls;
    assert_eq!(
        calls.len(),
        2,
        "only the control reads reached the pod: {calls:#?}"
    );
    assert!(calls.iter().all(|c| c.method == "GET"), "{calls:#?}");
    assert_eq!(pod_other_port.connections(), 0);
}
