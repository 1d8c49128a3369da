//! The site file: what an operator fixes for one cluster (where its pods are, how
//! they are reached and restarted), parsed and validated once.
//!
//! This module is the frame: it reads the TOML, reports errors with the file, the
//! key and the line, and hands each section to the capability that owns it
//! (`[cluster]` to `pods`, `[tls]` to `http`, `[restart]` to `restart`). Everything
//! downstream reads a [`Site`], never the TOML.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::audit::{AuditConfig, RawAudit};
use crate::caps::hooks::{HookConfig, RawHook};
use crate::caps::http::policy::{Http, RawHttp};
use crate::caps::http::tls::{RawTls, Tls};
use crate::caps::journal::{RawState, State};
use crate::caps::pods::{Cluster, RawCluster};
use crate::caps::restart::{RawRestart, Restart};
use crate::frame::{SiteError, SiteFile, param_value, toml_error};
use crate::grants::{Capability, Grants};
use crate::lease::{LeaseConfig, RawLease};
use crate::limits::{Limits, RawLimits};
use crate::trust::{RawTrust, Trust};

/// A validated site.
#[derive(Debug, Clone)]
pub struct Site {
    /// Where it was read from.
    pub path: PathBuf,
    pub cluster: Cluster,
    pub tls: Tls,
    /// `[http]`: paths, methods, sizes, time and concurrency of `http`.
    pub http: Http,
    pub restart: Option<Restart>,
    /// `[limits]`: memory, wall clock and host calls of a run (defaults when absent).
    pub limits: Limits,
    /// `[state]`: where the journal (and other run-spanning state) is kept.
    pub state: State,
    /// `[lease]`: the Lease that makes runs against the cluster exclusive.
    pub lease: LeaseConfig,
    /// `[audit]`: where the run's audit trail is appended.
    pub audit: AuditConfig,
    /// `[params]`: passed to the procedure as key/value pairs.
    pub params: Vec<(String, String)>,
    /// `[trust]`: the signers whose components may run, and their grants.
    pub trust: Trust,
    /// `[[hooks]]`: the site's hook components, in the order they are called.
    pub hooks: Vec<HookConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    cluster: RawCluster,
    tls: RawTls,
    #[serde(default)]
    http: RawHttp,
    restart: Option<RawRestart>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    lease: RawLease,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    params: std::collections::BTreeMap<String, toml::Value>,
    #[serde(default)]
    trust: RawTrust,
    #[serde(default)]
    hooks: Vec<RawHook>,
}

impl Site {
    /// What the site grants a component: pods, log, http with the `[http]` methods
    /// and paths (default: GET and POST under the DSM cluster-key API), and restart
    /// when a `[restart]` section says how.
    pub fn grants(&self) -> Grants {
        let grants = Grants::none()
            .allow(Capability::Pods)
            .allow(Capability::Log)
            .allow(Capability::Journal)
            .allow(Capability::Confirm)
            .allow_http(self.http.methods.iter().copied(), self.http.paths.clone());
        match self.restart {
            Some(_) => grants.allow(Capability::Restart),
            None => grants,
        }
    }

    /// Reads and validates the site file at `path`.
    pub fn load(path: &Path) -> Result<Site, SiteError> {
        let file = SiteFile { path };
        let text = std::fs::read_to_string(path)
            .map_err(|e| file.error("", format!("cannot read: {e}")))?;
        Site::parse(path, &text)
    }

    /// Validates `text` as the site file at `path` (used for messages and to
    /// resolve relative paths).
    pub fn parse(path: &Path, text: &str) -> Result<Site, SiteError> {
        let file = SiteFile { path };
        let raw: RawSite = toml::from_str(text).map_err(|e| toml_error(&file, text, e))?;
        let cluster = raw.cluster.validate(&file)?;
        let tls = raw.tls.validate(&file)?;
        let http = raw.http.validate(&file)?;
        let restart = raw.restart.map(|r| r.validate(&file)).transpose()?;
        let trust = raw.trust.validate(&file)?;
        let limits = raw
            .limits
            .validate(&file, restart.as_ref().map(|r| r.timeout))?;
        let state = raw.state.validate(&file)?;
        let lease = raw.lease.validate(&file)?;
        let audit = raw.audit.validate(&file)?;
        let hooks = crate::caps::hooks::validate(raw.hooks, &file)?;

        let mut params = Vec::new();
        for (key, value) in raw.params {
            let value =
                param_value(value).map_err(|why| file.error(format!("[params] {key}"), why))?;
            params.push((key, value));
        }

        Ok(Site {
            path: path.to_path_buf(),
            cluster,
            tls,
            http,
            restart,
            limits,
            state,
            lease,
            audit,
            params,
            trust,
            hooks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::http::tls::Tls;
    use crate::caps::restart::{Mechanism, Workload, WorkloadKind};
    use std::time::Duration;

    fn site_in(dir: &Path, body: &str) -> Result<Site, SiteError> {
        let path = dir.join("site.toml");
        std::fs::write(&path, body).unwrap();
        Site::load(&path)
    }

    fn ca(dir: &Path) -> PathBuf {
        let ca = dir.join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        ca
    }

    const GOOD: &str = r#"
[cluster]
name = "prod-eu"
namespace = "sdkms"
selector = "app=sdkms"

[tls]
ca = "ca.pem"

[restart]
command = ["/bin/true", "--now"]
timeout_secs = 60

[params]
port = 4444
hash_field = "h"
"#;

    #[test]
    fn good_site_resolves_relative_paths_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let site = site_in(dir.path(), GOOD).unwrap();
        assert_eq!(site.cluster.port, 4444);
        assert!(matches!(&site.tls, Tls::Ca { path, .. } if path == &dir.path().join("ca.pem")));
        let restart = site.restart.unwrap();
        assert!(matches!(
            &restart.mechanism,
            Mechanism::Command { argv, working_dir: None, env }
                if argv == &["/bin/true", "--now"] && env.iter().any(|e| e == "PATH")
        ));
        assert_eq!(restart.timeout, Duration::from_secs(60));
        assert_eq!(
            site.params,
            [
                ("hash_field".into(), "h".into()),
                ("port".into(), "4444".into())
            ]
        );
    }

    #[test]
    fn unknown_key_is_named_with_its_section_and_line() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let body = GOOD.replace(
            "namespace = \"sdkms\"",
            "namespace = \"sdkms\"\nnamespce = \"x\"",
        );
        let err = site_in(dir.path(), &body).unwrap_err().to_string();
        assert!(err.contains("[cluster] namespce"), "{err}");
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("site.toml"), "{err}");
    }

    #[test]
    fn missing_ca_file_names_the_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = site_in(dir.path(), GOOD).unwrap_err();
        assert_eq!(err.key, "[tls] ca");
        assert!(err.message.contains("ca.pem"), "{err}");
    }

    #[test]
    fn insecure_and_ca_together_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let body = GOOD.replace("ca = \"ca.pem\"", "ca = \"ca.pem\"\ninsecure = true");
        assert_eq!(site_in(dir.path(), &body).unwrap_err().key, "[tls]");
    }

    #[test]
    fn bad_selector_is_named() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let err = site_in(dir.path(), &GOOD.replace("app=sdkms", "app in sdkms")).unwrap_err();
        assert_eq!(err.key, "[cluster] selector");
    }

    #[test]
    fn restart_by_kubernetes_rollout_names_its_workload() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let body = GOOD.replace(
            "command = [\"/bin/true\", \"--now\"]",
            "kind = \"kubernetes\"\nworkload = \"deployment/sdkms\"",
        );
        let restart = site_in(dir.path(), &body).unwrap().restart.unwrap();
        assert_eq!(
            restart.mechanism,
            Mechanism::Kubernetes(Workload {
                kind: WorkloadKind::Deployment,
                name: "sdkms".into()
            })
        );
        for (edit, key) in [
            ("kind = \"kubernetes\"", "[restart] workload"),
            (
                "kind = \"kubernetes\"\nworkload = \"pod/x\"",
                "[restart] workload",
            ),
            ("kind = \"ssh\"", "[restart] kind"),
            (
                "kind = \"kubernetes\"\nworkload = \"sts/sdkms\"\nenv = [\"PATH\"]",
                "[restart] env",
            ),
        ] {
            let body = GOOD.replace("command = [\"/bin/true\", \"--now\"]", edit);
            assert_eq!(site_in(dir.path(), &body).unwrap_err().key, key, "{edit}");
        }
    }

    #[test]
    fn restart_command_takes_a_working_dir_and_an_env_allow_list() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let body = GOOD.replace(
            "timeout_secs = 60",
            "timeout_secs = 60\nworking_dir = \".\"\nenv = [\"KUBECONFIG\"]",
        );
        let restart = site_in(dir.path(), &body).unwrap().restart.unwrap();
        let Mechanism::Command {
            working_dir, env, ..
        } = restart.mechanism
        else {
            panic!("a command");
        };
        assert_eq!(working_dir, Some(dir.path().join(".")));
        assert_eq!(env, ["KUBECONFIG"]);
        let bad = GOOD.replace("timeout_secs = 60", "timeout_secs = 60\nenv = [\"A=B\"]");
        assert_eq!(site_in(dir.path(), &bad).unwrap_err().key, "[restart] env");
        let bad = GOOD.replace(
            "timeout_secs = 60",
            "timeout_secs = 60\nworking_dir = \"nope\"",
        );
        assert_eq!(
            site_in(dir.path(), &bad).unwrap_err().key,
            "[restart] working_dir"
        );
    }

    #[test]
    fn limits_and_http_sections_are_read() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let body = format!(
            "{GOOD}\n[limits]\nmemory_mib = 32\n\n[http]\nmethods = [\"GET\"]\npaths = [\"/cluster/v1/key/status\"]\n"
        );
        let site = site_in(dir.path(), &body).unwrap();
        assert_eq!(site.limits.memory_bytes, 32 << 20);
        assert_eq!(
            site.grants().to_string(),
            "pods, http (GET under /cluster/v1/key/status), restart, log, journal, confirm"
        );
        let bad = format!("{GOOD}\n[limits]\nmemory = 32\n");
        let err = site_in(dir.path(), &bad).unwrap_err();
        assert_eq!(err.key, "[limits] memory");
        assert!(err.message.contains("unknown field"), "{err}");
    }

    #[test]
    fn restart_program_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let err = site_in(dir.path(), &GOOD.replace("/bin/true", "./nope.sh")).unwrap_err();
        assert_eq!(err.key, "[restart] command");
        assert!(err.message.contains("nope.sh"), "{err}");
    }

    #[test]
    fn state_lease_audit_and_expect_pods_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let site = site_in(dir.path(), GOOD).unwrap();
        assert_eq!(site.state.dir, None);
        assert_eq!(site.lease.name, "cmk-host-rotation");
        assert_eq!(site.lease.duration, Duration::from_secs(60));
        assert_eq!(site.audit.path, None);
        assert_eq!(site.cluster.expect_pods, None);

        let body = GOOD.replace("[tls]", "expect_pods = 3\n\n[tls]")
            + "\n[state]\ndir = \"state\"\n[lease]\nname = \"rot\"\nduration_secs = 5\n\
               [audit]\npath = \"trail.jsonl\"\n";
        let site = site_in(dir.path(), &body).unwrap();
        assert_eq!(site.cluster.expect_pods, Some(3));
        assert_eq!(site.state.dir, Some(dir.path().join("state")));
        assert_eq!(site.lease.name, "rot");
        assert_eq!(site.lease.duration, Duration::from_secs(5));
        assert_eq!(site.audit.path, Some(dir.path().join("trail.jsonl")));

        for (edit, key) in [
            ("[lease]\nduration_secs = 0\n", "[lease] duration_secs"),
            ("[lease]\nname = \"Not A Name\"\n", "[lease] name"),
            ("[state]\ndir = \"\"\n", "[state] dir"),
            ("[audit]\npath = \"\"\n", "[audit] path"),
        ] {
            let err = site_in(dir.path(), &format!("{GOOD}\n{edit}")).unwrap_err();
            assert_eq!(err.key, key, "{err}");
        }
        let body = GOOD.replace("[tls]", "expect_pods = 0\n\n[tls]");
        assert_eq!(
            site_in(dir.path(), &body).unwrap_err().key,
            "[cluster] expect_pods"
        );
    }
}
