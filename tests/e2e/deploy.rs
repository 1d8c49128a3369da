//! The in-cluster deployment in `deploy/` stays consistent with the host: its site
//! file is one this host accepts, the Job outlives the site's wall-clock limit, and
//! the Role grants no more than the host uses.

use std::path::Path;

use cmk_host::site::Site;

fn deploy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `site.toml: |` block of the ConfigMap, de-indented.
fn configmap_site() -> String {
    let text = deploy("configmap.yaml");
    let start = text.find("site.toml: |\n").expect("a site.toml key") + "site.toml: |\n".len();
    text[start..]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_configmap_site_is_valid_and_fits_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    cmk_host::trust::keys::generate(&dir.path().join("security-team")).unwrap();
    let key = dir.path().join("security-team.pub");
    let text = configmap_site()
        .replace("/etc/cmk/ca/ca.pem", ca.to_str().unwrap())
        .replace("/etc/cmk/trust/security-team.pub", key.to_str().unwrap());
    let site = Site::parse(&dir.path().join("site.toml"), &text).expect("a valid site");
    assert_eq!(
        site.grants().to_string(),
        "pods, http (GET/POST under /cluster/v1/key), restart, log, journal, confirm"
    );
    assert_eq!(
        site.state.dir.as_deref(),
        Some(Path::new("/var/lib/cmk-host")),
        "the journal lives on the state volume"
    );
    assert_eq!(site.trust.signers.len(), 1, "one trusted signer");

    let job = deploy("job.yaml");
    let deadline: u64 = job
        .lines()
        .find_map(|l| l.trim().strip_prefix("activeDeadlineSeconds:"))
        .expect("activeDeadlineSeconds")
        .trim()
        .parse()
        .unwrap();
    assert!(
        deadline > site.limits.wall_clock.as_secs(),
        "the Job must outlive the run's wall clock so the host reports the stop"
    );
    assert!(job.contains("readOnlyRootFilesystem: true"));
    assert!(
        job.contains("mountPath: /var/lib/cmk-host") && job.contains("claimName: cmk-state"),
        "the state directory is a persistent volume"
    );
    assert!(job.contains("serviceAccountName: cmk-host"));
}

#[test]
fn the_role_grants_only_what_the_host_uses() {
    let role = deploy("role.yaml");
    let verbs: Vec<&str> = role
        .lines()
        .filter_map(|l| l.trim().strip_prefix("verbs:"))
        .map(str::trim)
        .collect();
    assert_eq!(
        verbs,
        [
            "[\"list\"]",
            "[\"get\", \"patch\", \"watch\"]",
            "[\"create\"]",
            "[\"get\", \"update\"]"
        ]
    );
    assert!(
        role.contains("kind: Role\n"),
        "namespaced, not a ClusterRole"
    );
    assert!(!role.contains("ClusterRole\n"));
    assert!(role.contains("resourceNames: [\"sdkms\"]"));
}
