//! The runtime: compiles a component, grants it the run's capabilities, runs its
//! `procedure.run` within the run's limits, and turns what happened into a report.
//!
//! A [`Runtime`] holds no run's state: one process can run many rotations at once,
//! each with its own store, capabilities and limits.

pub mod imports;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::audit::{Audit, Entry, RunContext};
use crate::caps::confirm::{Answerer, ConfirmCap, Confirmations};
use crate::caps::gate::{Gate, GateConfig};
use crate::caps::hooks::{Guards, HookConfig, HookInstance, HookState, HooksCap, SharedHooks};
use crate::caps::http::{HttpCap, HttpPolicy};
use crate::caps::journal::{Journal, JournalCap};
use crate::caps::log::{LogCap, Progress, StepRecord, outcome_name};
use crate::caps::pods::{PodLister, PodView, PodsCap};
use crate::caps::restart::RestartCap;
use crate::caps::restart::running::Running;
use crate::caps::{Denials, PodAddresses};
use crate::grants::{Capability, Grants};
use crate::lease::{Fence, HeldLease};
use crate::limits::{self, LimitHit, Limits};
use crate::report::{FailureInfo, RunOutcome, RunReport};
use crate::site::Site;
use crate::stop::Stop;
use crate::wasi;
use crate::wit::Rotation;
use crate::wit::cmk::procedure as api;
use crate::wit::exports::cmk::procedure::procedure::{Context, Grants as WitGrants, Mode};

/// How often the engine's epoch advances; the wall-clock limit is counted in these.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The guest's native (wasm) stack: deep enough for any real procedure; unbounded
/// recursion traps here instead of taking the host thread's stack.
const MAX_WASM_STACK: usize = 512 << 10;

/// What a run is asked to do.
pub struct RunOptions {
    pub plan: bool,
    /// Parameters after the site's `[params]`: later entries win.
    pub params: Vec<(String, String)>,
    pub limits: Limits,
    /// What the component may use (the site's grants, narrowed by its signer's).
    pub grants: Grants,
    pub progress: Arc<dyn Progress>,
    /// Where the cluster's journal lives (the site's `[state] dir`, or the default).
    pub state_dir: std::path::PathBuf,
    /// Who answers the procedure's confirmations (`--yes`, a terminal, or nobody).
    pub answerer: Answerer,
    /// Requested (e.g. on SIGINT): the run makes no further change and ends.
    pub stop: Stop,
    /// The site's hooks, verified and compiled (`launch`), in order.
    pub hooks: Vec<PreparedHook>,
    /// Who signed the component, as its verification found (`None`: unsigned);
    /// every audit record names them.
    pub signer: Option<String>,
    pub key_id: Option<String>,
    /// `--events`: every audit record of the run, as it is written.
    pub events: crate::events::Events,
}

/// A hook component admitted by the site's trust and compiled, not yet instantiated.
pub struct PreparedHook {
    pub config: HookConfig,
    pub loaded: Loaded,
    /// Its signer's grants within what a hook may have (`pods`, `http`, `log`).
    pub grants: Grants,
    pub signer: Option<String>,
}

/// Why a run could not start. Failures of the procedure itself are not errors:
/// they are in the [`RunReport`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The file is not a WebAssembly component wasmtime can compile (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// The component needs something this host does not grant (exit 3).
    #[error("{0}")]
    Refused(String),
    /// The site's configuration could not be turned into a client (exit 2).
    #[error("{0}")]
    Setup(String),
    /// A `[limits]` value too small for the component even to start (exit 1).
    #[error("{0}")]
    Limit(String),
    /// Another run holds the cluster's Lease (exit 1).
    #[error("{0}")]
    Busy(String),
    /// The cluster's Kubernetes API could not be used (exit 1).
    #[error("{0}")]
    Cluster(String),
}

/// A compiled component and the digest of the exact bytes it was compiled from.
pub struct Loaded {
    pub component: Component,
    pub sha256: String,
}

/// The engine and the linker, shared by every run of the process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RunState>,
    /// The `hook` world: the deny-all WASI, `pods`, `http` and `log`.
    hook_linker: Linker<HookState>,
}

/// The state of one run's store: the deny-all WASI and the four capabilities.
pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    enforcer: limits::Enforcer,
    pods: PodsCap,
    http: HttpCap,
    restart: RestartCap,
    log: LogCap,
    journal: JournalCap,
    confirm: ConfirmCap,
    hooks: HooksCap,
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Runtime {
    pub fn new() -> wasmtime::Result<Runtime> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK);
        let engine = Engine::new(&config)?;
        spawn_epoch_ticker(&engine);

        let mut linker: Linker<RunState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        api::types::add_to_linker::<_, HasSelf<LogCap>>(&mut linker, |s| &mut s.log)?;
        api::log::add_to_linker::<_, HasSelf<LogCap>>(&mut linker, |s| &mut s.log)?;
        api::pods::add_to_linker::<_, HasSelf<PodsCap>>(&mut linker, |s| &mut s.pods)?;
        api::http::add_to_linker::<_, HasSelf<HttpCap>>(&mut linker, |s| &mut s.http)?;
        api::restart::add_to_linker::<_, HasSelf<RestartCap>>(&mut linker, |s| &mut s.restart)?;
        api::journal::add_to_linker::<_, HasSelf<JournalCap>>(&mut linker, |s| &mut s.journal)?;
        api::confirm::add_to_linker::<_, HasSelf<ConfirmCap>>(&mut linker, |s| &mut s.confirm)?;
        api::hooks::add_to_linker::<_, HasSelf<HooksCap>>(&mut linker, |s| &mut s.hooks)?;

        let mut hook_linker: Linker<HookState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut hook_linker)?;
        api::types::add_to_linker::<_, HasSelf<LogCap>>(&mut hook_linker, |s| &mut s.log)?;
        api::log::add_to_linker::<_, HasSelf<LogCap>>(&mut hook_linker, |s| &mut s.log)?;
        api::pods::add_to_linker::<_, HasSelf<PodsCap>>(&mut hook_linker, |s| &mut s.pods)?;
        api::http::add_to_linker::<_, HasSelf<HttpCap>>(&mut hook_linker, |s| &mut s.http)?;
        Ok(Runtime {
            engine,
            linker,
            hook_linker,
        })
    }

    /// The engine, for the precompile cache (`crate::cache`).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `bytes` (the exact bytes that were read, so the digest is theirs).
    /// Does not judge its imports: see [`Runtime::load_checked`].
    pub fn load(&self, bytes: &[u8]) -> Result<Loaded, RunError> {
        let sha256 = crate::digest::sha256_hex(bytes);
        let component = Component::new(&self.engine, bytes).map_err(|e| {
            RunError::Invalid(format!(
                "not a WebAssembly component this host can run: {e:#}"
            ))
        })?;
        Ok(Loaded { component, sha256 })
    }

    /// Compiles `bytes` and refuses (exit 3) a component that imports anything
    /// outside the world and the WASI of std, before it can be instantiated.
    pub fn load_checked(&self, bytes: &[u8]) -> Result<Loaded, RunError> {
        let loaded = self.load(bytes)?;
        self.interfaces(&loaded)
            .check()
            .map_err(RunError::Refused)?;
        Ok(loaded)
    }

    /// The component's imports and exports, and the imports this host refuses.
    pub fn interfaces(&self, loaded: &Loaded) -> imports::Interfaces {
        imports::Interfaces::of(&self.engine, &loaded.component)
    }

    /// Runs `loaded` against `site`. Returns `Err` only when the run could not start.
    pub async fn run(
        &self,
        loaded: &Loaded,
        site: &Site,
        options: RunOptions,
    ) -> Result<RunReport, RunError> {
        let started = Instant::now();
        let configs: Vec<&HookConfig> = options.hooks.iter().map(|h| &h.config).collect();
        crate::caps::hooks::require_hooks_import(&configs, &self.interfaces(loaded).imports)
            .map_err(RunError::Refused)?;
        let lister = PodLister::connect(&site.cluster)
            .await
            .map_err(|e| RunError::Setup(format!("cannot use the Kubernetes API: {e}")))?;
        let policy = HttpPolicy::new(&site.http, site.cluster.port);
        let client = crate::caps::http::client(&site.tls, &policy)
            .map_err(|e| RunError::Setup(format!("cannot build the HTTPS client: {e:#}")))?;
        if matches!(site.tls, crate::caps::http::tls::Tls::Insecure) {
            tracing::warn!(
                site = %site.path.display(),
                "[tls] insecure = true: pod certificates are NOT verified; anyone on the path can impersonate a pod"
            );
        }

        let journal =
            Journal::open(&options.state_dir, &site.cluster.name).map_err(RunError::Setup)?;
        tracing::debug!(journal = %journal.path().display(), "journal");
        let run_id = new_run_id();
        let audit_path = site.audit.trail(&options.state_dir, &site.cluster.name);
        let audit = Audit::open(
            &audit_path,
            RunContext {
                run_id: run_id.clone(),
                cluster: site.cluster.name.clone(),
                component_sha256: loaded.sha256.clone(),
                signer: options.signer.clone(),
                key_id: options.key_id.clone(),
            },
        )
        .map_err(RunError::Setup)?
        .with_events(options.events.clone());
        audit.record(
            Entry::run(if options.plan { "plan" } else { "apply" }, "started", 0)
                .detail(format!("site {}", site.path.display())),
        );
        let denials = Denials::default();
        let grants = &options.grants;
        // The procedure's latest pod list: what the guards, the confirmations and the
        // gate know of the cluster.
        let view = PodView::new(site.cluster.expect_pods);
        let latest = view.latest_pods();
        let fence = Fence::default();
        let enforcer = limits::Enforcer::new(&options.limits);
        // The run's one decision point, as the procedure's store sees it; each hook's
        // store gets its own view (`Gate::for_store`) of the same state.
        let confirmations = Confirmations::new(
            options.answerer,
            options.plan,
            grants.allows(Capability::Confirm),
            &site.cluster.name,
            latest.clone(),
            denials.clone(),
            audit.clone(),
            options.stop.clone(),
        );
        let gate = Gate::new(
            GateConfig {
                plan: options.plan,
                stop: options.stop.clone(),
                fence: fence.clone(),
                denials: denials.clone(),
                confirmations: Some(confirmations.clone()),
                pods: latest.clone(),
                irreversible: site.http.irreversible.clone(),
                max_restarts: site.restart.as_ref().map_or(0, |r| r.max_per_run),
            },
            grants.clone(),
            enforcer.budget(),
        );
        // The host's own checks before every mutating call: `[cluster] expect_pods`
        // and the hooks' guards (a hook's own calls: expect_pods only).
        let hooks = SharedHooks::default();
        let guards = Guards::new(
            hooks.clone(),
            view.clone(),
            lister.clone(),
            options.stop.clone(),
            denials.clone(),
            audit.clone(),
        );
        let hook_gate = gate.clone().with_guard(Arc::new(guards.for_hook_calls()));
        let gate = gate.with_guard(Arc::new(guards));
        // Every hook is instantiated, and has accepted its params, before the run
        // takes the Lease or the rotation is instantiated.
        for prepared in &options.hooks {
            let shared = HookShared {
                lister: &lister,
                client: &client,
                policy: &policy,
                gate: &hook_gate,
                denials: &denials,
                audit: &audit,
                progress: &options.progress,
                limits: &options.limits,
            };
            let instance = self.instantiate_hook(prepared, shared).await?;
            hooks.lock().await.push(instance);
        }
        // Plan mode changes nothing, and neither does a run granted no POST and no
        // restart (a status check): neither excludes other runs.
        let lease = if options.plan || !options.grants.can_change_cluster() {
            None
        } else {
            let holder = crate::lease::identity(&run_id);
            let held = HeldLease::acquire(
                lister.client(),
                &site.cluster.namespace,
                &site.lease,
                &holder,
                options.stop.clone(),
                fence,
            )
            .await;
            let outcome = if held.is_ok() { "taken" } else { "refused" };
            audit.record(
                Entry::call("lease", &site.lease.name, outcome, 0).detail(match &held {
                    Ok(_) => format!("holder {holder}"),
                    Err(e) => e.to_string(),
                }),
            );
            Some(held.map_err(|e| match e {
                crate::lease::LeaseError::Busy { .. } => RunError::Busy(e.to_string()),
                // The API itself failed: say which API and where it came from.
                crate::lease::LeaseError::Api { .. } => RunError::Cluster(format!(
                    "{e} (the Kubernetes API {}); check with: kubectl get lease -n {} {}",
                    lister.describe(),
                    site.cluster.namespace,
                    site.lease.name
                )),
            })?)
        };
        // A restart command of an earlier run on this host that died (its Lease just
        // taken over) may still be replacing pods: the cluster is read after it ends.
        let running = Running::at(&options.state_dir, &site.cluster.name);
        if lease.is_some() {
            let timeout = site
                .restart
                .as_ref()
                .map_or(crate::caps::restart::DEFAULT_TIMEOUT, |r| r.timeout);
            running
                .wait_for_earlier(timeout)
                .await
                .map_err(RunError::Busy)?;
        }
        tracing::info!(grants = %grants, limits = %options.limits, "granted");
        let addresses = PodAddresses::default();
        let (wasi, output) = wasi::deny_all();
        let state = RunState {
            wasi,
            table: ResourceTable::new(),
            enforcer,
            pods: PodsCap::new(lister.clone(), addresses.clone(), gate.clone())
                .with_view(view)
                .with_audit(audit.clone()),
            http: HttpCap::new(client, policy, gate.clone(), addresses, denials.clone())
                .with_audit(audit.clone()),
            restart: RestartCap::new(
                site.restart.clone(),
                lister,
                gate.clone(),
                denials.clone(),
                running,
            )
            .with_audit(audit.clone()),
            log: LogCap::new(options.progress.clone(), gate.clone(), denials.clone())
                .with_audit(audit.clone()),
            journal: JournalCap::new(journal, options.plan, gate.clone(), denials.clone())
                .with_audit(audit.clone()),
            confirm: ConfirmCap::new(confirmations, gate.clone()),
            hooks: HooksCap::new(hooks, options.stop.clone(), gate.clone())
                .with_audit(audit.clone()),
        };
        let mut store = Store::new(&self.engine, state);
        let deadline = Instant::now() + options.limits.wall_clock;
        limits::enforce(&mut store, |s| &mut s.enforcer, move |_| deadline);

        let rotation =
            match Rotation::instantiate_async(&mut store, &loaded.component, &self.linker).await {
                Ok(r) => r,
                Err(e) => {
                    if let Some(lease) = lease {
                        lease.release().await;
                    }
                    return Err(match LimitHit::find(&e) {
                        // Over a limit already while starting (its initial memory): the
                        // limit's message, not a policy refusal.
                        Some(hit) => RunError::Limit(hit.to_string()),
                        None => RunError::Refused(format!(
                            "the component cannot be instantiated with the rotation world: {e:#}"
                        )),
                    });
                }
            };

        // The site's port first: the procedure reaches the pods where the allow-list
        // lets it, and a `[params] port` or `--param port=` still overrides it.
        // `[cluster] expect_pods` is the host's check (the gate's guards), not a
        // parameter: a procedure that does not know it must still run.
        let mut params = vec![("port".to_string(), site.cluster.port.to_string())];
        params.extend(site.params.iter().cloned());
        params.extend(options.params);
        let context = Context {
            mode: if options.plan {
                Mode::Plan
            } else {
                Mode::Apply
            },
            params,
            cluster: site.cluster.name.clone(),
            grants: context_grants(&options.grants, options.answerer),
        };
        // The epoch deadline stops guest code; this also bounds time spent in host calls.
        let grace = Duration::from_secs(5);
        let call = rotation
            .cmk_procedure_procedure()
            .call_run(&mut store, &context);
        let result = tokio::time::timeout(options.limits.wall_clock + grace, call).await;
        if let Some(lease) = lease {
            lease.release().await;
        }

        let mut report = RunReport::new(site, &loaded.sha256, started);
        report.plan = options.plan;
        report.denials = denials.snapshot();
        let host_steps = store.data().log.steps().to_vec();
        tracing::debug!(
            host_calls = store.data().enforcer.host_calls(),
            limit = options.limits.host_calls,
            "component finished"
        );
        match result {
            Ok(Ok(Ok(done))) if !options.plan && gate.halted().is_some() => {
                // The gate refused a change to a stopped run; a procedure that went on
                // and reported success did not finish what it set out to do.
                report.set_outcome(RunOutcome::Failed);
                report.pods = done.pods;
                report.steps = reported_steps(done.steps, &host_steps);
                report.failure = Some(FailureInfo::from_host(
                    "gate",
                    format!(
                        "the host stopped the run ({}); the component reported success anyway",
                        crate::text::escape(&gate.halted().unwrap_or_default())
                    ),
                    false,
                ));
            }
            Ok(Ok(Ok(done))) => {
                report.set_outcome(RunOutcome::Succeeded);
                report.steps = reported_steps(done.steps, &host_steps);
                report.version_before = done.version_before;
                report.version_after = done.version_after;
                report.pods = done.pods;
            }
            Ok(Ok(Err(failure))) => {
                report.set_outcome(RunOutcome::Failed);
                report.pods = store.data().pods.last_count().unwrap_or(0);
                report.steps = host_steps;
                report.failure = Some(FailureInfo::from_procedure(
                    &failure.step,
                    &failure.reason,
                    failure.safe_to_resume,
                ));
            }
            Ok(Err(trap)) => {
                report.set_outcome(RunOutcome::Trapped);
                report.steps = host_steps;
                let reason = describe_trap(&trap, &options.limits, &output.text());
                report.failure = Some(FailureInfo::from_host("component", reason, false));
            }
            Err(_) => {
                report.set_outcome(RunOutcome::Trapped);
                report.steps = host_steps;
                report.failure = Some(FailureInfo::from_host(
                    "component",
                    format!(
                        "stopped: the run exceeded its wall-clock limit of {}s",
                        options.limits.wall_clock.as_secs()
                    ),
                    false,
                ));
            }
        }
        report.guest_output =
            crate::text::ComponentText::with_limit(&output.text(), wasi::OUTPUT_LIMIT);
        report.run_id = run_id;
        report.planned = gate.planned();
        report.irreversible_sent = gate.irreversible_sent();
        report.stopped = gate.stopped();
        report.interrupted = gate.interrupted();
        report.unconfirmed = store.data().confirm.unconfirmed();
        report.conclude();
        record_end(&audit, &report);
        report.audit_head = audit.head();
        report.audit_path = audit.path().map(|p| p.display().to_string());
        report.finish(started);
        Ok(report)
    }
}

/// What a run's hooks share with the rotation: the Kubernetes client, the HTTPS
/// client and policy, plan mode and stop requests, the denials, audit and progress.
struct HookShared<'a> {
    lister: &'a PodLister,
    client: &'a reqwest::Client,
    policy: &'a HttpPolicy,
    gate: &'a Gate,
    denials: &'a Denials,
    audit: &'a Audit,
    progress: &'a Arc<dyn Progress>,
    limits: &'a Limits,
}

impl Runtime {
    /// One hook in its own store: its own grants, memory and host-call limits, a
    /// per-call deadline, its own pod allow-list for `http`; then its `init`.
    async fn instantiate_hook(
        &self,
        prepared: &PreparedHook,
        shared: HookShared<'_>,
    ) -> Result<HookInstance, RunError> {
        let config = &prepared.config;
        let grants = &prepared.grants;
        let addresses = PodAddresses::default();
        let (wasi, output) = wasi::deny_all();
        tracing::info!(hook = %config.name, grants = %grants, timeout_secs = config.timeout.as_secs(), "hook granted");
        let enforcer = limits::Enforcer::new(shared.limits);
        let gate = shared.gate.for_store(grants.clone(), enforcer.budget());
        let state = HookState {
            wasi,
            table: ResourceTable::new(),
            enforcer,
            pods: PodsCap::new(shared.lister.clone(), addresses.clone(), gate.clone())
                .with_audit(shared.audit.clone()),
            http: HttpCap::new(
                shared.client.clone(),
                shared.policy.clone(),
                gate.clone(),
                addresses,
                shared.denials.clone(),
            )
            .with_audit(shared.audit.clone()),
            log: LogCap::new(
                shared.progress.clone(),
                gate.clone(),
                shared.denials.clone(),
            )
            .for_hook(&config.name),
            deadline: Instant::now() + config.timeout,
        };
        let mut store = Store::new(&self.engine, state);
        // Each call sets its own deadline (`HookInstance::arm`); the first bounds
        // the instantiation.
        limits::enforce(&mut store, |s| &mut s.enforcer, |s: &HookState| s.deadline);
        let refused = |e: wasmtime::Error| {
            RunError::Refused(format!(
                "hook {} ({}) cannot be instantiated with the hook world: {e:#}",
                config.name,
                config.path.display()
            ))
        };
        let pre = self
            .hook_linker
            .instantiate_pre(&prepared.loaded.component)
            .map_err(refused)?;
        let instance = pre.instantiate_async(&mut store).await.map_err(refused)?;
        let hook = crate::wit::hook::Hook::new(&mut store, &instance).map_err(refused)?;
        // The `guard` export is optional: a hook of the plain `hook` world has none.
        let guard =
            match crate::wit::guarded_hook::exports::cmk::procedure::guard::GuestIndices::new(&pre)
            {
                Ok(indices) => Some(indices.load(&mut store, &instance).map_err(refused)?),
                Err(_) => None,
            };
        let mut instance = HookInstance {
            name: config.name.clone(),
            store,
            hook,
            timeout: config.timeout,
            output,
            failed: None,
            guard,
        };
        instance.init(&config.params).await.map_err(|e| {
            RunError::Setup(format!(
                "hook {} ({}) refused its [[hooks]] params: {}",
                config.name,
                config.path.display(),
                crate::text::ComponentText::new(&e)
            ))
        })?;
        Ok(instance)
    }
}

/// The run's last records: how it ended, and, after a rotation, the reminder that
/// DR and cold-standby nodes must rejoin.
fn record_end(audit: &Audit, report: &RunReport) {
    let outcome = report.outcome_text();
    audit.record(
        Entry::run("end", &outcome, report.duration_ms).detail(match &report.failure {
            Some(f) => format!(
                "failed at {}: {} (safe to resume: {})",
                f.step, f.reason, f.safe_to_resume
            ),
            None => format!(
                "version {} -> {}{}",
                report.version_before.map_or("?".into(), |v| v.to_string()),
                report.version_after.map_or("?".into(), |v| v.to_string()),
                report
                    .version_note()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
        }),
    );
    if report.failure.is_none() && report.version_after > report.version_before {
        audit.record(
            Entry::run("reminder", "notice", 0)
                .detail("DR and cold-standby nodes must now rejoin the cluster".to_string()),
        );
    }
}

/// The steps the procedure reported, with the durations the host measured
/// between its `step-begin` and `step-end`.
fn reported_steps(
    steps: Vec<crate::wit::exports::cmk::procedure::procedure::Step>,
    seen: &[StepRecord],
) -> Vec<StepRecord> {
    steps
        .into_iter()
        .map(|step| {
            let mut record =
                StepRecord::new(&step.name, outcome_name(step.outcome), &step.detail, 0);
            record.duration_ms = seen
                .iter()
                .find(|s| s.name == record.name)
                .map_or(0, |s| s.duration_ms);
            record
        })
        .collect()
}

/// A trap in words an operator can act on, with the guest's last output (a panic
/// message, an allocation failure).
fn describe_trap(trap: &wasmtime::Error, limits: &Limits, output: &str) -> String {
    if let Some(hit) = LimitHit::find(trap) {
        return with_output(hit.to_string(), output);
    }
    let what = match trap.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "stopped: the run exceeded its wall-clock limit of {}s",
            limits.wall_clock.as_secs()
        ),
        Some(wasmtime::Trap::StackOverflow) => format!(
            "stopped: the component overflowed its stack limit of {} KiB",
            MAX_WASM_STACK >> 10
        ),
        Some(t) => format!("the component trapped: {t}"),
        None => format!("the component failed: {trap:#}"),
    };
    with_output(what, output)
}

/// `what`, followed by the guest's last lines of output, if any.
fn with_output(what: String, output: &str) -> String {
    // The component's words: each line escaped and bounded.
    let last = output
        .trim_end()
        .lines()
        .rev()
        .take(5)
        .map(|l| crate::text::ComponentText::new(l).into_string())
        .collect::<Vec<_>>();
    if last.is_empty() {
        what
    } else {
        let last: Vec<_> = last.into_iter().rev().collect();
        format!("{what}; its last output: {}", last.join(" | "))
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
/// A thread, not a task: a guest spinning on a runtime worker must not stop it.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    thread::Builder::new()
        .name("cmk-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch thread");
}

/// A run id: 16 hex digits from the time, the process and a counter (unique enough
/// to tell runs apart in logs, Leases and the audit trail; not a secret).
fn new_run_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{:?}/{}/{}",
        std::time::SystemTime::now(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    crate::digest::hex(&Sha256::digest(seed.as_bytes())[..8])
}

/// The run's grants as the procedure's `context` shows them, so that it can refuse
/// before changing anything. Only a description: every call is still checked by its
/// capability. A confirmation is answerable when `confirm` is granted and `--yes` or
/// a terminal will answer it.
fn context_grants(grants: &Grants, answerer: Answerer) -> WitGrants {
    WitGrants {
        capabilities: grants
            .capabilities
            .iter()
            .map(|c| c.name().to_string())
            .collect(),
        http_methods: grants
            .http_methods
            .iter()
            .map(|m| m.name().to_string())
            .collect(),
        http_paths: grants.http_paths.clone(),
        confirm_answerable: grants.allows(Capability::Confirm) && answerer != Answerer::Nobody,
    }
}
