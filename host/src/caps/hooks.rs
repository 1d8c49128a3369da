//! `hooks`: the site's own checks and actions around the rotation's steps.
//!
//! The site file names hook components (`[[hooks]]`); each is verified with the
//! site's trust, compiled, and instantiated in its own store, with its own grants
//! (`pods`, `http`, `log` at most), memory limit and per-call time limit. The
//! rotation's `hooks` import is this capability: it calls every hook in order.
//! `before` stops at the first veto; a hook that traps or runs past its time limit
//! vetoes too, and a veto stops the run at the gate: every later mutating call is
//! refused. `after` cannot change the run: its failures are logged. With no hook
//! configured, every step is allowed.
//!
//! [`Guards`] is what the host checks itself, before every mutating call of the
//! procedure, whether or not the procedure calls its hooks: `[cluster] expect_pods`
//! against the latest pod list, then the `guard` of every hook that exports one
//! (the `guarded-hook` world). A guard's refusal, trap or timeout denies the call
//! and stops the run at the gate.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::caps::Denials;
use crate::caps::gate::{Guard, Mutating};
use crate::caps::http::HttpCap;
use crate::caps::log::{LogCap, outcome_name};
use crate::caps::pods::{PodLister, PodView, PodsCap};
use crate::frame::{SiteError, SiteFile};
use crate::grants::{Capability, Grants};
use crate::limits::Enforcer;
use crate::limits::LimitHit;
use crate::stop::Stop;
use crate::wasi::CapturedOutput;
use crate::wit::cmk::procedure::hooks::Host;
use crate::wit::cmk::procedure::types::Outcome;
use crate::wit::guarded_hook::exports::cmk::procedure::guard::{
    Guest as GuardExport, MutatingCall,
};
use crate::wit::hook::Hook;

/// A hook's time limit per call when `[[hooks]] timeout_secs` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TIMEOUT_SECS: u64 = 600;

/// The capabilities a hook can be granted, whatever its signer's grants say.
pub const HOOK_CAPABILITIES: [Capability; 3] =
    [Capability::Pods, Capability::Http, Capability::Log];

/// The export a hook must have (besides `init`); the import a procedure must have
/// when the site configures hooks.
pub const HOOKS_EXPORT: &str = "cmk:procedure/hooks@0.1.0";

/// The export of a hook with a guard (the `guarded-hook` world).
pub const GUARD_EXPORT: &str = "cmk:procedure/guard@0.1.0";

/// With `[[hooks]]` configured, a procedure must import `hooks`: one that does not
/// could never let the site's hooks see its steps. `Err` (exit 3) names `[[hooks]]`.
pub fn require_hooks_import(hooks: &[&HookConfig], imports: &[String]) -> Result<(), String> {
    if hooks.is_empty() || imports.iter().any(|i| i == HOOKS_EXPORT) {
        return Ok(());
    }
    let names: Vec<&str> = hooks.iter().map(|h| h.name.as_str()).collect();
    Err(format!(
        "refused: the site file configures [[hooks]] ({}), and the component does not import \
         {HOOKS_EXPORT}: a procedure run with site hooks must call them",
        names.join(", ")
    ))
}

/// One `[[hooks]]` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHook {
    path: PathBuf,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
    timeout_secs: Option<u64>,
}

/// One validated `[[hooks]]` entry.
#[derive(Debug, Clone)]
pub struct HookConfig {
    /// The file's stem (`hook-quorum` for `hooks/hook-quorum.wasm`): how vetoes,
    /// logs and the audit trail name it.
    pub name: String,
    /// Resolved against the site file's folder.
    pub path: PathBuf,
    /// Passed to this hook only, by its `init`.
    pub params: Vec<(String, String)>,
    /// The wall-clock limit of each call into the hook.
    pub timeout: Duration,
}

/// Validates every `[[hooks]]` entry; errors name the entry's key.
pub fn validate(raw: Vec<RawHook>, file: &SiteFile<'_>) -> Result<Vec<HookConfig>, SiteError> {
    let mut hooks: Vec<HookConfig> = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let at = |key: &str| format!("[[hooks]] {key}");
        let which = format!("hook {} ({})", i + 1, raw.path.display());
        if raw.path.as_os_str().is_empty() {
            return Err(file.error(at("path"), format!("{which}: must not be empty")));
        }
        let path = file.resolve(&raw.path);
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if hooks.iter().any(|h| h.name == name) {
            return Err(file.error(
                at("path"),
                format!("{which}: a hook named {name:?} is listed twice"),
            ));
        }
        let timeout = match raw.timeout_secs {
            None => DEFAULT_TIMEOUT,
            Some(s) if (1..=MAX_TIMEOUT_SECS).contains(&s) => Duration::from_secs(s),
            Some(s) => {
                return Err(file.error(
                    at("timeout_secs"),
                    format!("{which}: {s} is outside 1..={MAX_TIMEOUT_SECS}"),
                ));
            }
        };
        let mut params = Vec::new();
        for (key, value) in raw.params {
            let value = crate::frame::param_value(value).map_err(|why| {
                file.error(at(&format!("params.{key}")), format!("{which}: {why}"))
            })?;
            params.push((key, value));
        }
        hooks.push(HookConfig {
            name,
            path,
            params,
            timeout,
        });
    }
    Ok(hooks)
}

/// What a hook may be granted: the site's grants, without what only a procedure
/// may have (restart, journal, confirm).
pub fn hook_grants(site: &Grants) -> Grants {
    let mut grants = site.clone();
    grants
        .capabilities
        .retain(|c| HOOK_CAPABILITIES.contains(c));
    grants
}

/// The store state of one hook: the deny-all WASI and its own capabilities.
pub struct HookState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub enforcer: Enforcer,
    pub pods: PodsCap,
    pub http: HttpCap,
    pub log: LogCap,
    /// When the current call's guest code stops (set by [`HookInstance::arm`]).
    pub deadline: Instant,
}

impl WasiView for HookState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// One instantiated hook, in its own store.
pub struct HookInstance {
    pub name: String,
    pub store: Store<HookState>,
    pub hook: Hook,
    pub timeout: Duration,
    pub output: CapturedOutput,
    /// Set when a call trapped or timed out: the instance is not entered again.
    pub failed: Option<String>,
    /// Its `guard` export, when it has one (the `guarded-hook` world).
    pub guard: Option<GuardExport>,
}

/// Host calls get this long past the epoch deadline (which stops guest code only).
const GRACE: Duration = Duration::from_secs(2);

impl HookInstance {
    /// Starts a call's time limit. Its guest code yields at each epoch tick
    /// ([`crate::limits::enforce`]), so a spinning hook holds no worker.
    fn arm(&mut self) {
        self.store.data_mut().deadline = Instant::now() + self.timeout;
    }

    /// Calls `init` with the hook's params; `Err` names the hook.
    pub async fn init(&mut self, params: &[(String, String)]) -> Result<(), String> {
        self.arm();
        let call = self.hook.call_init(&mut self.store, params);
        let answer = tokio::time::timeout(self.timeout + GRACE, call).await;
        self.settle(answer.map(|r| r.map(|r| r.map_err(|e| format!("{}: {e}", self.name)))))
    }

    async fn before(&mut self, step: &str, observed: &[(String, String)]) -> Result<(), String> {
        if let Some(why) = &self.failed {
            return Err(format!("{} failed earlier: {why}", self.name));
        }
        self.arm();
        let call = self
            .hook
            .cmk_procedure_hooks()
            .call_before(&mut self.store, step, observed);
        let answer = tokio::time::timeout(self.timeout + GRACE, call).await;
        self.settle(answer.map(|r| r.map(|r| r.map_err(|e| format!("{}: {e}", self.name)))))
    }

    /// Asks the hook's guard about `call`; `Ok` when it has none.
    async fn guard(&mut self, call: &MutatingCall) -> Result<(), String> {
        if self.guard.is_none() {
            return Ok(());
        }
        if let Some(why) = &self.failed {
            return Err(format!("{} failed earlier: {why}", self.name));
        }
        self.arm();
        let guard = self.guard.as_ref().expect("checked above");
        let call = guard.call_check(&mut self.store, call);
        let answer = tokio::time::timeout(self.timeout + GRACE, call).await;
        self.settle(answer.map(|r| r.map(|r| r.map_err(|e| format!("{}: {e}", self.name)))))
    }

    async fn after(
        &mut self,
        step: &str,
        outcome: Outcome,
        observed: &[(String, String)],
    ) -> Result<(), String> {
        if let Some(why) = &self.failed {
            return Err(format!("{} failed earlier: {why}", self.name));
        }
        self.arm();
        let call =
            self.hook
                .cmk_procedure_hooks()
                .call_after(&mut self.store, step, outcome, observed);
        let answer = tokio::time::timeout(self.timeout + GRACE, call).await;
        self.settle(answer.map(|r| r.map(Ok)))
    }

    /// A call's answer: the hook's own `Err` as is; a trap or a timeout becomes
    /// `"<name> failed: ..."`, and the hook is not entered again.
    fn settle<E>(
        &mut self,
        answer: Result<wasmtime::Result<Result<(), String>>, E>,
    ) -> Result<(), String> {
        let why = match answer {
            Ok(Ok(result)) => return result,
            Ok(Err(trap)) => self.describe(&trap),
            Err(_) => format!(
                "no answer within its time limit of {}s",
                self.timeout.as_secs()
            ),
        };
        self.failed = Some(why.clone());
        Err(format!("{} failed: {why}", self.name))
    }

    fn describe(&self, trap: &wasmtime::Error) -> String {
        let what = if let Some(hit) = LimitHit::find(trap) {
            hit.to_string()
        } else {
            match trap.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::Interrupt) => format!(
                    "stopped: it ran past its time limit of {}s",
                    self.timeout.as_secs()
                ),
                Some(t) => format!("it trapped: {t}"),
                None => format!("{trap:#}"),
            }
        };
        // The panic message, without std's backtrace hint.
        let output = self.output.text();
        let lines: Vec<&str> = output
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("note: "))
            .collect();
        let last = &lines[lines.len().saturating_sub(2)..];
        if last.is_empty() {
            what
        } else {
            format!("{what}; its last output: {}", last.join(" | "))
        }
    }
}

/// The hooks of one run, shared by the `hooks` capability (the procedure's step
/// calls) and the run's [`Guards`] (the host's own calls). One call at a time.
pub type SharedHooks = Arc<tokio::sync::Mutex<Vec<HookInstance>>>;

/// The `hooks` capability of one run: the site's hooks, in the site file's order.
pub struct HooksCap {
    hooks: SharedHooks,
    /// A veto stops the run at the gate.
    stop: Stop,
    audit: crate::audit::Audit,
    /// Passes every call, as every capability call does (the registry's row).
    gate: crate::caps::gate::Gate,
}

impl HooksCap {
    pub fn new(hooks: SharedHooks, stop: Stop, gate: crate::caps::gate::Gate) -> Self {
        HooksCap {
            gate,
            hooks,
            stop,
            audit: crate::audit::Audit::default(),
        }
    }

    /// Every call into a hook, and its answer, is recorded in `audit`.
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = audit;
        self
    }

    fn record(
        &self,
        hook: &str,
        call: &str,
        outcome: &str,
        started: Instant,
        detail: Option<String>,
    ) {
        record(&self.audit, hook, call, outcome, started, detail);
    }
}

fn record(
    audit: &crate::audit::Audit,
    hook: &str,
    call: &str,
    outcome: &str,
    started: Instant,
    detail: Option<String>,
) {
    let target = format!("{hook} {call}");
    audit.record(
        crate::audit::Entry::call(
            "hooks",
            &target,
            outcome,
            started.elapsed().as_millis() as u64,
        )
        .detail(detail),
    );
}

impl Host for HooksCap {
    async fn before(
        &mut self,
        step: String,
        observed: Vec<(String, String)>,
    ) -> Result<(), String> {
        let call = crate::caps::gate::Call::Plain {
            interface: "hooks",
            function: "before",
            target: &step,
        };
        if let Err(refusal) = self.gate.decide(call).await {
            return Err(refusal.message().to_string());
        }
        let hooks = self.hooks.clone();
        let mut hooks = hooks.lock().await;
        for hook in hooks.iter_mut() {
            let started = Instant::now();
            let answer = hook.before(&step, &observed).await;
            let name = hook.name.clone();
            // The step is the procedure's words, the reason the hook's: both escaped.
            let call = format!("before {}", crate::text::escape(&step));
            match answer.map_err(|r| crate::text::ComponentText::new(&r).into_string()) {
                Ok(()) => self.record(&name, &call, "allowed", started, None),
                Err(reason) => {
                    let step = crate::text::escape(&step);
                    tracing::warn!(hook = %name, %step, "vetoed: {reason}");
                    self.record(&name, &call, "vetoed", started, Some(reason.clone()));
                    // Whether or not the procedure heeds the veto, nothing more
                    // changes the cluster in this run.
                    self.stop
                        .request(format!("a site hook vetoed {step}: {reason}"));
                    return Err(reason);
                }
            }
        }
        Ok(())
    }

    async fn after(&mut self, step: String, outcome: Outcome, observed: Vec<(String, String)>) {
        let call = crate::caps::gate::Call::Plain {
            interface: "hooks",
            function: "after",
            target: &step,
        };
        if self.gate.decide(call).await.is_err() {
            return;
        }
        let hooks = self.hooks.clone();
        let mut hooks = hooks.lock().await;
        for hook in hooks.iter_mut() {
            let started = Instant::now();
            let answer = hook.after(&step, outcome, &observed).await;
            let name = hook.name.clone();
            let call = format!(
                "after {} {}",
                crate::text::escape(&step),
                outcome_name(outcome)
            );
            match answer.map_err(|r| crate::text::ComponentText::new(&r).into_string()) {
                Ok(()) => self.record(&name, &call, "done", started, None),
                Err(reason) => {
                    let step = crate::text::escape(&step);
                    tracing::warn!(hook = %name, %step, "a hook's after-step call failed: {reason}");
                    self.record(&name, &call, "failed", started, Some(reason));
                }
            }
        }
    }
}

/// The host's own checks before every mutating call of a run ([`Guard`]):
/// `[cluster] expect_pods` against the procedure's latest pod list, then, in the
/// site file's order, every hook's `guard`. A denial is recorded and returned as
/// the procedure's `denied` error; a guard's refusal also stops the run.
#[derive(Clone)]
pub struct Guards {
    hooks: SharedHooks,
    pods: PodView,
    lister: PodLister,
    stop: Stop,
    denials: Denials,
    audit: crate::audit::Audit,
    /// False for a hook's own calls: a guard is not asked about them (that could
    /// re-enter the very hook that is making the call).
    ask_hooks: bool,
}

impl Guards {
    pub fn new(
        hooks: SharedHooks,
        pods: PodView,
        lister: PodLister,
        stop: Stop,
        denials: Denials,
        audit: crate::audit::Audit,
    ) -> Guards {
        Guards {
            hooks,
            pods,
            lister,
            stop,
            denials,
            audit,
            ask_hooks: true,
        }
    }

    /// The checks of a hook's own mutating calls: `expect_pods`, no guard.
    pub fn for_hook_calls(&self) -> Guards {
        Guards {
            ask_hooks: false,
            ..self.clone()
        }
    }

    fn deny(&self, call: &Mutating<'_>, rule: String) -> String {
        self.denials.deny(call.capability, call.target, rule)
    }

    async fn check_call(&self, call: &Mutating<'_>) -> Result<(), String> {
        self.check_unstopped(call).await?;
        // A call of a batch that passed the gate's stop check while another call's
        // guard was refusing (and stopping the run) is refused now.
        match self.stop.reason() {
            Some(why) => Err(format!("{why}: not sent")),
            None => Ok(()),
        }
    }

    async fn check_unstopped(&self, call: &Mutating<'_>) -> Result<(), String> {
        let hooks = self.hooks.clone();
        let mut hooks = if self.ask_hooks {
            Some(hooks.lock().await)
        } else {
            None
        };
        let guarded = hooks
            .as_ref()
            .is_some_and(|h| h.iter().any(|h| h.guard.is_some()));
        if !guarded && self.pods.expect().is_none() {
            return Ok(());
        }
        let pods = match self.pods.latest() {
            Some(pods) => pods,
            // Before the procedure's first list (a restart first): the host's own.
            None => self.lister.list().await.map_err(|e| {
                self.deny(
                    call,
                    format!("the host could not list the pods to check it: {e}"),
                )
            })?,
        };
        self.pods
            .check_expected(&pods)
            .map_err(|rule| self.deny(call, rule))?;
        let Some(hooks) = hooks.as_mut().filter(|_| guarded) else {
            return Ok(());
        };
        let target_pod = call.ip.and_then(|ip| {
            pods.iter()
                .find(|p| p.ip.as_deref().and_then(|s| s.parse::<IpAddr>().ok()) == Some(ip))
                .cloned()
        });
        let ready = pods.iter().filter(|p| p.ready).count() as u32;
        let asked = MutatingCall {
            call: call.call.clone(),
            target_pod,
            pods,
            ready,
        };
        for hook in hooks.iter_mut().filter(|h| h.guard.is_some()) {
            let started = Instant::now();
            let what = format!("guard {}", call.call);
            // The reason is the hook's words: escaped and bounded.
            match hook
                .guard(&asked)
                .await
                .map_err(|r| crate::text::ComponentText::new(&r).into_string())
            {
                Ok(()) => record(&self.audit, &hook.name, &what, "allowed", started, None),
                Err(reason) => {
                    tracing::warn!(hook = %hook.name, call = %call.target, "a site hook's guard refused: {reason}");
                    record(
                        &self.audit,
                        &hook.name,
                        &what,
                        "refused",
                        started,
                        Some(reason.clone()),
                    );
                    self.stop.request(format!(
                        "a site hook's guard refused {}: {reason}",
                        call.call
                    ));
                    return Err(
                        self.deny(call, format!("a site hook's guard refused it: {reason}"))
                    );
                }
            }
        }
        Ok(())
    }
}

impl Guard for Guards {
    fn check<'a>(
        &'a self,
        call: &'a Mutating<'a>,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(self.check_call(call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<HookConfig>, SiteError> {
        #[derive(Deserialize)]
        struct Doc {
            hooks: Vec<RawHook>,
        }
        let doc: Doc = toml::from_str(text).unwrap();
        validate(
            doc.hooks,
            &SiteFile {
                path: std::path::Path::new("/etc/cmk/site.toml"),
            },
        )
    }

    #[test]
    fn entries_resolve_paths_and_take_params_and_timeouts() {
        let hooks = parse(
            "[[hooks]]\npath = \"hooks/hook-quorum.wasm\"\nparams = { min_pods = 3 }\n\
             [[hooks]]\npath = \"/opt/dr.wasm\"\ntimeout_secs = 30\n",
        )
        .unwrap();
        assert_eq!(hooks[0].name, "hook-quorum");
        assert_eq!(
            hooks[0].path,
            PathBuf::from("/etc/cmk/hooks/hook-quorum.wasm")
        );
        assert_eq!(
            hooks[0].params,
            vec![("min_pods".to_string(), "3".to_string())]
        );
        assert_eq!(hooks[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(hooks[1].timeout, Duration::from_secs(30));
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("[[hooks]]\npath = \"a.wasm\"\ntimeout_secs = 0\n").unwrap_err();
        assert_eq!(e.key, "[[hooks]] timeout_secs");
        let e = parse("[[hooks]]\npath = \"a.wasm\"\nparams = { x = [1] }\n").unwrap_err();
        assert_eq!(e.key, "[[hooks]] params.x");
        let e =
            parse("[[hooks]]\npath = \"a.wasm\"\n[[hooks]]\npath = \"b/a.wasm\"\n").unwrap_err();
        assert!(e.message.contains("listed twice"), "{}", e.message);
    }

    #[test]
    fn with_hooks_configured_a_procedure_must_import_hooks() {
        let hooks = parse("[[hooks]]\npath = \"hook-quorum.wasm\"\n").unwrap();
        let refs: Vec<&HookConfig> = hooks.iter().collect();
        let imports = vec!["cmk:procedure/http@0.1.0".to_string()];
        let e = require_hooks_import(&refs, &imports).unwrap_err();
        assert!(e.contains("[[hooks]] (hook-quorum)"), "{e}");
        assert!(e.contains(HOOKS_EXPORT), "{e}");
        assert_eq!(require_hooks_import(&[], &imports), Ok(()));
        let with = vec![HOOKS_EXPORT.to_string()];
        assert_eq!(require_hooks_import(&refs, &with), Ok(()));
    }

    #[test]
    fn a_hook_is_never_granted_restart_journal_or_confirm() {
        let site = Grants::none()
            .allow(Capability::Pods)
            .allow(Capability::Log)
            .allow(Capability::Restart)
            .allow(Capability::Journal)
            .allow(Capability::Confirm);
        let g = hook_grants(&site);
        assert!(g.allows(Capability::Pods) && g.allows(Capability::Log));
        assert!(!g.allows(Capability::Restart));
        assert!(!g.allows(Capability::Journal));
        assert!(!g.allows(Capability::Confirm));
    }
}
