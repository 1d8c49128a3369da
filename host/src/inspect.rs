//! `cmk-host inspect`: what a component is and what it would receive, without
//! running it: its size and digest, its imports (each marked as provided or
//! refused) and exports, and the grants and limits a site would give it.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::caps::http::tls::Tls;
use crate::caps::restart::Mechanism;
use crate::grants::Grants;
use crate::limits::Limits;
use crate::runtime::imports::import_allowed;
use crate::runtime::{RunError, Runtime};
use crate::site::Site;

/// What `inspect` found.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub component: String,
    pub size: u64,
    pub sha256: String,
    /// `procedure` (the `rotation` world) or `hook` (the `hook` world, run by `[[hooks]]`).
    pub kind: &'static str,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Why a run would refuse it (exit 3), if it would.
    pub refused: Option<String>,
    /// The site file the grants come from, if one was given.
    pub site: Option<String>,
    /// What a run would grant it: the site's grants, or nothing without a site.
    pub grants: Grants,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsView>,
    /// How `http` reaches the pods, in words (with a site).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// How pod certificates are trusted (with a site).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// The restart mechanism (with a site that grants one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
}

fn describe_http(site: &Site) -> String {
    let h = &site.http;
    format!(
        "https://<IP of a listed pod>:{} only; bodies up to {} B sent, {} B received; {}s per request; {} at once",
        site.cluster.port,
        h.max_request_bytes,
        h.max_response_bytes,
        h.timeout.as_secs(),
        h.max_concurrency
    )
}

fn describe_tls(tls: &Tls) -> String {
    match tls {
        Tls::Ca { path, .. } => format!("verified against the CA in {}", path.display()),
        Tls::Pins(pins) => format!("pinned: {} SHA-256 certificate digest(s)", pins.len()),
        Tls::Insecure => "NOT VERIFIED (insecure = true)".to_string(),
    }
}

fn describe_restart(site: &Site) -> Option<String> {
    let r = site.restart.as_ref()?;
    let how = match &r.mechanism {
        Mechanism::Command { argv, .. } => format!("command {}", argv.join(" ")),
        Mechanism::Kubernetes(w) => {
            format!(
                "rollout restart of {w} in namespace {}",
                site.cluster.namespace
            )
        }
    };
    Some(format!("{how}; within {}s", r.timeout.as_secs()))
}

/// The limits, in the units of the site file.
#[derive(Debug, Clone, Serialize)]
pub struct LimitsView {
    pub memory_mib: usize,
    pub wall_clock_secs: u64,
    pub host_calls: u64,
}

impl From<&Limits> for LimitsView {
    fn from(l: &Limits) -> Self {
        LimitsView {
            memory_mib: l.memory_bytes >> 20,
            wall_clock_secs: l.wall_clock.as_secs(),
            host_calls: l.host_calls,
        }
    }
}

/// Compiles `bytes` (read from `origin`) and describes it. `Err` only when it is
/// not a component at all.
pub fn inspect(bytes: &[u8], origin: &Path, site: Option<&Site>) -> Result<Inspection, RunError> {
    let runtime = Runtime::new().map_err(|e| RunError::Setup(format!("wasmtime: {e:#}")))?;
    let loaded = runtime.load(bytes)?;
    let interfaces = runtime.interfaces(&loaded);
    // A component exporting `hooks` is judged as a hook: a different world, and at
    // most the grants a hook can get.
    let hook = interfaces
        .exports
        .iter()
        .any(|e| e == crate::caps::hooks::HOOKS_EXPORT);
    let site_grants = site.map_or_else(Grants::none, Site::grants);
    Ok(Inspection {
        component: origin.display().to_string(),
        size: bytes.len() as u64,
        sha256: loaded.sha256.clone(),
        kind: if hook { "hook" } else { "procedure" },
        refused: if hook {
            interfaces.check_hook().err()
        } else {
            interfaces.check().err()
        },
        imports: interfaces.imports,
        exports: interfaces.exports,
        site: site.map(|s| s.path.display().to_string()),
        grants: if hook {
            crate::caps::hooks::hook_grants(&site_grants)
        } else {
            site_grants
        },
        limits: site.map(|s| LimitsView::from(&s.limits)),
        http: site.map(describe_http),
        tls: site.map(|s| describe_tls(&s.tls)),
        restart: site.and_then(describe_restart),
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "component  {}", self.component)?;
        writeln!(f, "size       {} bytes", self.size)?;
        writeln!(f, "sha256     {}", self.sha256)?;
        writeln!(f, "kind       {}", self.kind)?;
        writeln!(f, "exports    {}", self.exports.join(", "))?;
        writeln!(f, "imports    {}", self.imports.len())?;
        for import in &self.imports {
            let mark = if import_allowed(import) {
                "ok     "
            } else {
                "REFUSED"
            };
            writeln!(f, "  {mark}  {import}")?;
        }
        match &self.refused {
            None => writeln!(
                f,
                "verdict    runnable: every import is provided by this host"
            )?,
            Some(why) => writeln!(f, "verdict    {why}")?,
        }
        match &self.site {
            Some(site) => writeln!(f, "site       {site}")?,
            None => writeln!(
                f,
                "site       none given (--site): a run receives only what its site file grants"
            )?,
        }
        writeln!(f, "grants     {}", self.grants)?;
        if let Some(l) = &self.limits {
            writeln!(
                f,
                "limits     memory {} MiB, wall clock {}s, {} host calls",
                l.memory_mib, l.wall_clock_secs, l.host_calls
            )?;
        }
        for (label, value) in [
            ("http", &self.http),
            ("tls", &self.tls),
            ("restart", &self.restart),
        ] {
            if let Some(value) = value {
                writeln!(f, "{label:<10} {value}")?;
            }
        }
        Ok(())
    }
}
