//! The launch pipeline every command that runs a component takes:
//! admit (the signature, before wasmtime sees a byte) -> compile (or load from the
//! precompile cache) -> link (the load-time import check, the site's hooks) -> run
//! (the runtime) -> report (summary or JSON, and the exit code).
//!
//! This is also the one place that decides which error gets which exit code
//! ([`Failure`]): `cli`, `demo` and `signing` only print what it returns.

use std::path::{Path, PathBuf};

use crate::cache::{self, Cache};
use crate::events::Events;
use crate::exit;
use crate::frame::SiteError;
use crate::report::RunReport;
use crate::runtime::{Loaded, PreparedHook, RunError, RunOptions, Runtime};
use crate::site::Site;
use crate::trust::verify::Verifier;
use crate::trust::{self, Admitted, Refusal};
use crate::ui;

/// Why a launch did not produce a report, as an operator reads it. Each kind has
/// its exit code; nothing else in the host maps errors to codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The site file is wrong (exit 2).
    #[error("{0}")]
    InvalidSite(String),
    /// An argument or input file is wrong, or a component cannot be compiled (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Refused: a signature, a grant or the world (exit 3).
    #[error("{0}")]
    Refused(String),
    /// Another run holds the cluster's Lease (exit 1).
    #[error("{0}")]
    LeaseBusy(String),
    /// The run could not go on (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::InvalidSite(_) | Failure::Usage(_) => exit::USAGE,
            Failure::Refused(_) => exit::REFUSED,
            Failure::LeaseBusy(_) | Failure::Failed(_) => exit::FAILED,
        }
    }

    /// The outcome a machine reads (`--json`).
    pub fn outcome(&self) -> &'static str {
        match self {
            Failure::InvalidSite(_) => "invalid-site",
            Failure::Usage(_) => "usage",
            Failure::Refused(_) => "refused",
            Failure::LeaseBusy(_) => "lease-busy",
            Failure::Failed(_) => "failed",
        }
    }

    /// A signature or trust refusal of the component at `origin`: exit 3 for what
    /// the site's trust refuses, exit 2 for what cannot even be read as a signature.
    pub fn refusal(origin: &Path, refusal: &Refusal, hint: &str, sha256: Option<&str>) -> Failure {
        let digest = sha256.map(|d| format!(" (sha256 {d})")).unwrap_or_default();
        if refusal.is_refusal() {
            Failure::Refused(format!(
                "{}: refused: {refusal}{hint}{digest}",
                origin.display()
            ))
        } else {
            Failure::Usage(format!("{}: {refusal}{hint}{digest}", origin.display()))
        }
    }

    /// The `--json` document of a launch that produced no report (docs/json.md).
    pub fn document(&self, site: Option<&Path>) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "outcome": self.outcome(),
            "exit_code": self.exit_code(),
            "error": self.to_string(),
        });
        if let Some(site) = site {
            doc["site"] = site.display().to_string().into();
        }
        doc
    }

    /// Prints the failure and returns its exit code.
    pub fn report(&self) -> u8 {
        ui::error(self.exit_code(), self)
    }
}

impl From<SiteError> for Failure {
    fn from(e: SiteError) -> Failure {
        Failure::InvalidSite(e.to_string())
    }
}

/// How a component is admitted and loaded: what `run` was told about signatures
/// and the precompile cache.
#[derive(Debug, Default)]
pub struct Launch<'a> {
    pub trust: trust::Request<'a>,
    /// `None`: compile every time (`--no-cache`, or no usable cache directory).
    pub cache: Option<Cache>,
}

/// The precompile cache a run uses; a directory that cannot be used is warned
/// about and the run goes on without a cache.
pub fn open_cache(no_cache: bool, dir: Option<PathBuf>) -> Option<Cache> {
    if no_cache {
        return None;
    }
    let dir = dir.or_else(default_cache_dir)?;
    match Cache::open(&dir) {
        Ok(cache) => Some(cache),
        Err(e) => {
            tracing::warn!("cache: off: {e}");
            None
        }
    }
}

/// `$XDG_CACHE_HOME/cmk-host`, else `~/.cache/cmk-host`.
fn default_cache_dir() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_CACHE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".cache"))
        })
        .map(|d| d.join("cmk-host"))
}

/// Where a site's journal and default audit trail live: its `[state] dir`, else
/// `$XDG_STATE_HOME/cmk-host`, else `~/.local/state/cmk-host`.
pub fn state_dir(site: &Site) -> Result<PathBuf, Failure> {
    site.state
        .dir
        .clone()
        .or_else(|| crate::caps::journal::default_dir(|k| std::env::var(k).ok()))
        .ok_or_else(|| {
            Failure::InvalidSite(format!(
                "site file {}: [state] dir: not set, and neither XDG_STATE_HOME nor HOME is",
                site.path.display()
            ))
        })
}

/// A file's bytes, exactly as read (they are what is verified and compiled).
pub fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|e| Failure::Usage(format!("cannot read {what} {}: {e}", path.display())))
}

/// Admit: verifies the verifier's bytes against the site's trust before anything
/// compiles them. `site_grants` are narrowed to the grants of the signer that
/// verified them.
pub fn admit(
    verifier: &Verifier<'_>,
    origin: &Path,
    site: &Site,
    launch: &Launch<'_>,
    site_grants: &crate::grants::Grants,
) -> Result<Admitted, Failure> {
    if launch.trust.allow_unsigned {
        if site.trust.allow_unsigned {
            tracing::warn!(
                site = %site.path.display(),
                "--allow-unsigned: a component without a signature will run, with the site's grants; nobody vouches for its code"
            );
        } else {
            tracing::warn!(
                site = %site.path.display(),
                "--allow-unsigned has no effect: the site file does not set [trust] allow_unsigned = true"
            );
        }
    }
    let sha256 = verifier.sha256();
    let admitted = trust::admit_with(verifier, &site.trust, site_grants, &launch.trust).map_err(
        |refusal| {
            let hint = match refusal {
                Refusal::NotSigned => trust::unsigned_hint(&site.trust, &launch.trust),
                _ => "",
            };
            tracing::debug!(component = %origin.display(), %sha256, "refused: {refusal}");
            Failure::refusal(origin, &refusal, hint, Some(sha256))
        },
    )?;
    match (&admitted.signer, &admitted.key_id) {
        (Some(signer), Some(key_id)) => tracing::info!(
            component = %origin.display(),
            %sha256,
            %signer,
            %key_id,
            "verified"
        ),
        _ => tracing::warn!(
            component = %origin.display(),
            %sha256,
            "running an UNSIGNED component (--allow-unsigned)"
        ),
    }
    Ok(admitted)
}

/// Compile and link-check: compiles (or loads from the cache) admitted bytes and
/// refuses imports outside the world before anything is instantiated, whether the
/// component was compiled now or loaded from the cache.
pub fn compile(
    runtime: &Runtime,
    bytes: &[u8],
    origin: &Path,
    launch: &Launch<'_>,
) -> Result<(Loaded, cache::CacheStatus), Failure> {
    let (loaded, status) = match &launch.cache {
        Some(cache) => cache.load(runtime, bytes),
        None => cache::load_uncached(runtime, bytes),
    }
    .map_err(|e| Failure::Usage(format!("{}: {e}", origin.display())))?;
    tracing::info!("cache: {status}");
    runtime
        .interfaces(&loaded)
        .check()
        .map_err(|e| Failure::Refused(format!("{}: {}", origin.display(), RunError::Refused(e))))?;
    Ok((loaded, status))
}

/// The whole pipeline for one component: admit, compile, link the site's hooks,
/// run. `options.grants` are the site's; the component receives them narrowed to
/// its signer's.
pub async fn execute(
    bytes: &[u8],
    origin: &Path,
    site: &Site,
    launch: &Launch<'_>,
    options: RunOptions,
) -> Result<RunReport, Failure> {
    // Verify before compile: wasmtime only ever sees bytes a trusted key signed.
    let verifier = Verifier::new(bytes, launch.trust.detached);
    let admitted = admit(&verifier, origin, site, launch, &options.grants)?;
    let runtime =
        Runtime::new().map_err(|e| Failure::Failed(format!("cannot start wasmtime: {e:#}")))?;
    let (loaded, cache_status) = compile(&runtime, bytes, origin, launch)?;
    let ready = link(&runtime, site, launch, admitted)?;
    run(
        &runtime,
        &loaded,
        cache_status,
        ready,
        origin,
        site,
        options,
    )
    .await
}

/// A component admitted for one site, with that site's hooks verified and compiled:
/// what [`run`] needs besides the compiled component, which many sites may share
/// (`fleet`).
pub struct Ready {
    pub admitted: Admitted,
    pub hooks: Vec<PreparedHook>,
}

/// Link: prepares the site's hooks for a component `admitted` by the site.
pub fn link(
    runtime: &Runtime,
    site: &Site,
    launch: &Launch<'_>,
    admitted: Admitted,
) -> Result<Ready, Failure> {
    let hooks = prepare_hooks(runtime, site, launch)?;
    Ok(Ready { admitted, hooks })
}

/// Run and report: runs `loaded` against `site` with what `ready` grants it (the
/// site's grants narrowed to its signer's, the site's hooks) in a store of its own.
pub async fn run(
    runtime: &Runtime,
    loaded: &Loaded,
    cache_status: cache::CacheStatus,
    ready: Ready,
    origin: &Path,
    site: &Site,
    mut options: RunOptions,
) -> Result<RunReport, Failure> {
    options.grants = ready.admitted.grants.clone();
    // Every audit record names who signed what runs.
    options.signer = ready.admitted.signer.clone();
    options.key_id = ready.admitted.key_id.as_ref().map(|id| id.0.clone());
    options.hooks = ready.hooks;
    tracing::info!(
        component = %origin.display(),
        sha256 = %loaded.sha256,
        cluster = %site.cluster.name,
        "running"
    );
    let mut report = runtime
        .run(loaded, site, options)
        .await
        .map_err(|e| run_failure(e, origin, site))?;
    report.signer = ready.admitted.signer;
    report.key_id = ready.admitted.key_id.map(|id| id.0);
    report.cache = Some(cache_status.to_string());
    Ok(report)
}

/// The pipeline for a component bundled in this binary (`status`): the binary is
/// its signature, so there is no admission; it runs with the site's grants made
/// read-only (`Grants::read_only`), whatever it imports, and without the site's
/// hooks (they guard a rotation's steps, and nothing here changes the cluster).
pub async fn execute_bundled(
    bytes: &[u8],
    origin: &Path,
    site: &Site,
    launch: &Launch<'_>,
    mut options: RunOptions,
) -> Result<RunReport, Failure> {
    options.grants = options.grants.read_only();
    options.hooks = Vec::new();
    // Compiled into this binary: the trail names the host as its signer.
    options.signer = Some("cmk-host (bundled)".into());
    options.key_id = None;
    let runtime =
        Runtime::new().map_err(|e| Failure::Failed(format!("cannot start wasmtime: {e:#}")))?;
    let (loaded, cache_status) = compile(&runtime, bytes, origin, launch)?;
    tracing::info!(component = %origin.display(), cluster = %site.cluster.name, grants = %options.grants, "running the bundled component");
    let mut report = runtime
        .run(&loaded, site, options)
        .await
        .map_err(|e| run_failure(e, origin, site))?;
    report.signer = Some("cmk-host (bundled)".into());
    report.cache = Some(cache_status.to_string());
    Ok(report)
}

/// Why a run could not start, in the operator's terms.
fn run_failure(e: RunError, origin: &Path, site: &Site) -> Failure {
    let message = format!("{}: {e}", origin.display());
    match e {
        RunError::Refused(_) => Failure::Refused(message),
        RunError::Invalid(_) | RunError::Setup(_) => Failure::Usage(message),
        RunError::Limit(_) => Failure::Failed(message),
        RunError::Cluster(_) => Failure::Failed(format!("cluster {:?}: {e}", site.cluster.name)),
        // About the cluster, not the component.
        RunError::Busy(_) => Failure::LeaseBusy(format!("cluster {:?}: {e}", site.cluster.name)),
    }
}

/// Link: reads, verifies (the site's trust, each hook's own signer), compiles and
/// import-checks every `[[hooks]]` component, before any pod is contacted. A hook
/// that is not signed by a trusted key is refused (exit 3), naming its file.
fn prepare_hooks(
    runtime: &Runtime,
    site: &Site,
    launch: &Launch<'_>,
) -> Result<Vec<PreparedHook>, Failure> {
    let allowed = crate::caps::hooks::hook_grants(&site.grants());
    let request = trust::Request {
        allow_unsigned: launch.trust.allow_unsigned,
        // A detached signature (`--signature`) is the procedure's, never a hook's.
        detached: None,
    };
    let mut prepared = Vec::new();
    for config in &site.hooks {
        let file = config.path.display();
        let bytes = std::fs::read(&config.path).map_err(|e| {
            Failure::InvalidSite(format!(
                "site file {}: [[hooks]] path: hook {file}: cannot read: {e}",
                site.path.display()
            ))
        })?;
        let sha256 = crate::digest::sha256_hex(&bytes);
        let admitted =
            trust::admit(&bytes, &site.trust, &allowed, &request).map_err(|refusal| {
                let message = format!("hook {file}: refused: {refusal} (sha256 {sha256})");
                if refusal.is_refusal() {
                    Failure::Refused(message)
                } else {
                    Failure::Usage(message)
                }
            })?;
        let loaded = runtime
            .load(&bytes)
            .map_err(|e| Failure::Usage(format!("hook {file}: {e}")))?;
        runtime
            .interfaces(&loaded)
            .check_hook()
            .map_err(|e| Failure::Refused(format!("hook {file}: {e}")))?;
        tracing::info!(
            hook = %config.name,
            file = %file,
            %sha256,
            signer = admitted.signer.as_deref().unwrap_or("(unsigned)"),
            grants = %admitted.grants,
            "hook verified"
        );
        prepared.push(PreparedHook {
            config: config.clone(),
            loaded,
            grants: admitted.grants,
            signer: admitted.signer,
        });
    }
    Ok(prepared)
}

/// Report, on every exit: the report of a run that happened, or the failure that
/// stopped it before; with `json`, one document on stdout either way (a failure's
/// message also goes to stderr). `events` gets the same document, last.
pub fn conclude(
    result: Result<RunReport, Failure>,
    json: bool,
    events: &Events,
    site: &Path,
) -> u8 {
    match result {
        Ok(report) => {
            events.emit_as("report", serde_json::to_value(&report).unwrap_or_default());
            finish(&report, json)
        }
        Err(failure) => {
            let doc = failure.document(Some(site));
            events.emit_as("report", doc.clone());
            if json {
                println!("{doc:#}");
            }
            failure.report()
        }
    }
}

/// Report: prints the report (summary or JSON) and returns its exit code.
pub fn finish(report: &RunReport, json: bool) -> u8 {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => return ui::error(exit::FAILED, format!("cannot render the report: {e}")),
        }
    } else {
        print!("{}", ui::summary(report));
    }
    report.exit_code
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature is a custom section: wasmtime compiles the signed bytes as they are.
    #[test]
    fn wasmtime_compiles_a_signed_component() {
        let key = crate::trust::keys::SigningKey::generate();
        let signed = crate::trust::verify::sign(crate::ROTATE_COMPONENT, &key).unwrap();
        Runtime::new().unwrap().load(&signed).unwrap();
    }

    #[test]
    fn every_failure_kind_has_its_exit_code_and_outcome() {
        let cases = [
            (Failure::InvalidSite("x".into()), 2, "invalid-site"),
            (Failure::Usage("x".into()), 2, "usage"),
            (Failure::Refused("x".into()), 3, "refused"),
            (Failure::LeaseBusy("x".into()), 1, "lease-busy"),
            (Failure::Failed("x".into()), 1, "failed"),
        ];
        for (failure, code, outcome) in cases {
            assert_eq!(failure.exit_code(), code, "{failure:?}");
            assert_eq!(failure.outcome(), outcome, "{failure:?}");
        }
    }
}
