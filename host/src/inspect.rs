//! `cmk-host inspect`: what a component is and what it would receive, without
//! running it: its size and digest, its imports (each marked as provided or
//! refused) and exports, and the grants and limits a site would give it.
//!
//! With a site, it judges as `run` does and in the same order: the signature is
//! verified against the site's `[[trust.signer]]` keys before the component is
//! compiled or its imports judged; what `run` would refuse (unsigned, an untrusted
//! key, modified after signing) is "refused", and the grants shown are the site's
//! narrowed to the signer that verified it. Without a site there is nobody to
//! verify against: the lengths of its sections are checked, then it is compiled and
//! described, and the signature is said to be unchecked.

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
use crate::trust::{self, Refusal};

/// What `inspect` found.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub component: String,
    pub size: u64,
    pub sha256: String,
    /// `procedure` (the `rotation` world) or `hook` (the `hook` world, run by `[[hooks]]`).
    pub kind: &'static str,
    /// False when the trust check refused it: nothing was compiled or judged.
    pub compiled: bool,
    /// What the signature check found: `signed by NAME (key ID)`, why it was
    /// refused, or that it was not checked (no site).
    pub signature: String,
    /// The signer that verified it, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Why a run would refuse it (exit 3), if it would.
    pub refused: Option<String>,
    /// The site file the grants come from, if one was given.
    pub site: Option<String>,
    /// What a run would grant it: the site's grants narrowed to its signer's (and,
    /// for a hook, to what a hook may have); nothing without a site or when refused.
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
    let how = match tls {
        Tls::Ca { path, .. } => format!("verified against the CA in {}", path.display()),
        Tls::Pins { pins, .. } => format!("pinned: {} SHA-256 certificate digest(s)", pins.len()),
        Tls::Insecure => return "NOT VERIFIED (insecure = true)".to_string(),
    };
    match tls.server_name() {
        Some(name) => format!("{how}, as {name:?} (server_name), not by pod IP"),
        None => how,
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

/// Verifies (with a site), compiles and describes `bytes` (read from `origin`), as
/// `run` would with `request`. `Err` only when it is not a component at all.
pub fn inspect(
    bytes: &[u8],
    origin: &Path,
    site: Option<&Site>,
    request: &trust::Request<'_>,
) -> Result<Inspection, RunError> {
    let sha256 = crate::digest::sha256_hex(bytes);
    let not_a_component = |r: Refusal| RunError::Invalid(r.to_string());
    // Before anything parses the file: the signature with a site, else the lengths.
    let admitted = match site {
        Some(site) => match trust::admit(bytes, &site.trust, &site.grants(), request) {
            Ok(admitted) => Some(admitted),
            Err(refusal) if !refusal.is_refusal() => return Err(not_a_component(refusal)),
            Err(refusal) => {
                let hint = match refusal {
                    Refusal::NotSigned => trust::unsigned_hint(&site.trust, request),
                    _ => "",
                };
                return Ok(Inspection::refused(
                    bytes,
                    origin,
                    sha256,
                    Some(site),
                    format!("refused: {refusal}{hint}"),
                ));
            }
        },
        None => match crate::trust::verify::check_lengths(bytes) {
            Ok(()) => None,
            Err(r) if !r.is_refusal() => return Err(not_a_component(r)),
            Err(r) => {
                return Ok(Inspection::refused(
                    bytes,
                    origin,
                    sha256,
                    None,
                    format!("refused: {r}"),
                ));
            }
        },
    };
    let runtime = Runtime::new().map_err(|e| RunError::Setup(format!("wasmtime: {e:#}")))?;
    let loaded = runtime.load(bytes)?;
    let interfaces = runtime.interfaces(&loaded);
    // A component exporting `hooks` is judged as a hook: a different world, and at
    // most the grants a hook can get.
    let hook = interfaces
        .exports
        .iter()
        .any(|e| e == crate::caps::hooks::HOOKS_EXPORT);
    let granted = admitted
        .as_ref()
        .map_or_else(Grants::none, |a| a.grants.clone());
    let signer = admitted.as_ref().and_then(|a| a.signer.clone());
    let key_id = admitted
        .as_ref()
        .and_then(|a| a.key_id.as_ref().map(|k| k.0.clone()));
    let signature = match (&admitted, &signer, &key_id) {
        (Some(_), Some(name), Some(id)) => format!("signed by {name} (key {id})"),
        (Some(_), _, _) => {
            "not signed: runs only because of --allow-unsigned and [trust] allow_unsigned"
                .to_string()
        }
        (None, _, _) => "not checked: no --site (a run verifies it against the site's \
             [[trust.signer]] keys before compiling it)"
            .to_string(),
    };
    Ok(Inspection {
        component: origin.display().to_string(),
        size: bytes.len() as u64,
        sha256: loaded.sha256.clone(),
        kind: if hook { "hook" } else { "procedure" },
        compiled: true,
        signature,
        signer,
        key_id,
        refused: if hook {
            interfaces.check_hook().err()
        } else {
            interfaces.check().err()
        },
        imports: interfaces.imports,
        exports: interfaces.exports,
        site: site.map(|s| s.path.display().to_string()),
        grants: if hook {
            crate::caps::hooks::hook_grants(&granted)
        } else {
            granted
        },
        limits: site.map(|s| LimitsView::from(&s.limits)),
        http: site.map(describe_http),
        tls: site.map(|s| describe_tls(&s.tls)),
        restart: site.and_then(describe_restart),
    })
}

impl Inspection {
    /// A component the site's trust refused: nothing compiled, nothing judged,
    /// nothing granted.
    fn refused(
        bytes: &[u8],
        origin: &Path,
        sha256: String,
        site: Option<&Site>,
        why: String,
    ) -> Self {
        Inspection {
            component: origin.display().to_string(),
            size: bytes.len() as u64,
            sha256,
            kind: "unknown (refused before it was compiled)",
            compiled: false,
            signature: why.clone(),
            signer: None,
            key_id: None,
            imports: Vec::new(),
            exports: Vec::new(),
            refused: Some(why),
            site: site.map(|s| s.path.display().to_string()),
            grants: Grants::none(),
            limits: None,
            http: None,
            tls: None,
            restart: None,
        }
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "component  {}", self.component)?;
        writeln!(f, "size       {} bytes", self.size)?;
        writeln!(f, "sha256     {}", self.sha256)?;
        writeln!(f, "kind       {}", self.kind)?;
        writeln!(f, "signature  {}", self.signature)?;
        if !self.compiled {
            // Refused by the trust check: nothing was compiled to describe.
            writeln!(f, "verdict    {}", self.refused.as_deref().unwrap_or(""))?;
            if let Some(site) = &self.site {
                writeln!(f, "site       {site}")?;
            }
            return writeln!(f, "grants     {}", self.grants);
        }
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
