//! Mistakes in the site file or the command line: exit 2, a message that names the
//! file and the key, and nothing done to the cluster.

use cmk_tests::{Cluster, ROTATE_WASM, run};

const BIN: &str = env!("CARGO_BIN_EXE_cmk-host");

async fn run_with_site(
    cluster: &Cluster,
    edit: impl FnOnce(String) -> String,
) -> cmk_tests::Outcome {
    let site = cluster.site_with("edited.toml", edit);
    let component = cluster.signed(ROTATE_WASM);
    let out = run(BIN, &["run", &component, "--site", site.to_str().unwrap()]).await;
    assert!(cluster.oracle().calls.is_empty(), "no pod contacted: {out}");
    assert!(
        out.stderr.contains("edited.toml"),
        "the file is named: {out}"
    );
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_key_is_named_with_its_line() {
    let cluster = Cluster::pods(1).await;
    let out = run_with_site(&cluster, |s| {
        s.replace("port = 4444", "port = 4444\nprot = 1")
    })
    .await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("[cluster] prot: line 7: unknown field `prot`"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_ca_file_is_named() {
    let cluster = Cluster::pods(1).await;
    let out = run_with_site(&cluster, |s| s.replace("ca.pem", "missing-ca.pem")).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("[tls] ca: cannot read"), "{out}");
    assert!(out.stderr.contains("missing-ca.pem"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_selector_is_named() {
    let cluster = Cluster::pods(1).await;
    let out = run_with_site(&cluster, |s| s.replace("app=sdkms", "app in sdkms")).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("[cluster] selector: invalid label selector"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_type_is_named() {
    let cluster = Cluster::pods(1).await;
    let out = run_with_site(&cluster, |s| {
        s.replace("timeout_secs = 120", "timeout_secs = \"soon\"")
    })
    .await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("[restart] timeout_secs"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_component_file_is_a_usage_error() {
    let cluster = Cluster::pods(1).await;
    let site = cluster.site().to_str().unwrap().to_string();
    let out = run(BIN, &["run", "/nonexistent/rotate.wasm", "--site", &site]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("cannot read component /nonexistent/rotate.wasm"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_not_a_component_is_a_usage_error() {
    let cluster = Cluster::pods(1).await;
    let bogus = cluster.dir().join("bogus.wasm");
    std::fs::write(&bogus, b"not wasm at all").unwrap();
    let site = cluster.site().to_str().unwrap().to_string();
    let out = run(BIN, &["run", bogus.to_str().unwrap(), "--site", &site]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("not a WebAssembly component"), "{out}");
    assert!(cluster.oracle().calls.is_empty());
}

/// Errors about the cluster say where to look: the API server, the kubeconfig,
/// the namespace and selector, and the kubectl command that checks them.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_api_server_and_an_empty_selector_say_where_to_look() {
    let cluster = Cluster::pods(1).await;
    let component = cluster.signed(ROTATE_WASM);
    // A kubeconfig whose server nothing listens on.
    let kubeconfig = std::fs::read_to_string(&cluster.files.kubeconfig).unwrap();
    let dead = cluster.dir().join("dead-kubeconfig");
    let server = cluster.sim.api_url();
    std::fs::write(&dead, kubeconfig.replace(&server, "https://127.0.0.1:9")).unwrap();
    let site = cluster.site_with("dead-api.toml", |t| {
        t.replace(
            &cluster.files.kubeconfig.display().to_string(),
            &dead.display().to_string(),
        )
    });
    let out = run(
        BIN,
        &["run", &component, "--site", site.to_str().unwrap(), "--yes"],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    for shown in [
        "https://127.0.0.1:9",
        dead.to_str().unwrap(),
        "kubectl get lease -n sdkms cmk-host-rotation",
        "Connection refused",
    ] {
        assert!(
            out.stderr.contains(shown) || out.stdout.contains(shown),
            "names {shown}: {out}"
        );
    }
    // `status` takes no Lease: its first call is the pod list, which says the same.
    let out = run(BIN, &["status", "--site", site.to_str().unwrap()]).await;
    assert_eq!(out.code, 1, "{out}");
    for shown in [
        "https://127.0.0.1:9",
        dead.to_str().unwrap(),
        "kubectl get pods -n sdkms -l app=sdkms -o wide",
    ] {
        assert!(
            out.stderr.contains(shown) || out.stdout.contains(shown),
            "status names {shown}: {out}"
        );
    }

    let site = cluster.site_with("no-pods.toml", |t| {
        t.replace("selector = \"app=sdkms\"", "selector = \"app=nothing\"")
    });
    let out = run(
        BIN,
        &["run", &component, "--site", site.to_str().unwrap(), "--yes"],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .contains("no pod matches selector \"app=nothing\" in namespace \"sdkms\"")
            && out
                .stderr
                .contains("kubectl get pods -n sdkms -l app=nothing"),
        "{out}"
    );
    assert!(cluster.oracle().calls.is_empty(), "no pod contacted");
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_with_a_public_key_says_it_is_one() {
    let cluster = Cluster::pods(1).await;
    let out = run(
        BIN,
        &[
            "sign",
            "--key",
            cluster.ops.public.to_str().unwrap(),
            ROTATE_WASM,
            "-o",
            cluster.dir().join("x.wasm").to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("is a public key"), "{out}");
}
