//! The gate: the one decision point of a run. Every capability call that costs, changes
//! the cluster or writes the host's records passes [`Gate::decide`], which holds the
//! run's grants, limits, confirmations, hook guards, Lease fence, plan mode and stop
//! requests, and answers with a [`Permit`] or a [`Refusal`].
//!
//! A capability module implements its interface and states its policy (which URLs,
//! which restart mechanism, which sizes), but the code that sends a request, starts a
//! restart or writes the journal takes a [`Permit`], and only this module can make
//! one. The grant a call needs is looked up in the registry (`caps/registry.rs`).
//!
//! For a mutating call the decision is, in order: the grant; a stop (SIGINT, a lost
//! Lease) or a Lease that could not be renewed within its duration; the per-run
//! restart limit; plan mode (recorded, not sent); the store's [`Guard`] (the site
//! hooks' guards and `[cluster] expect_pods`); and, for a request the site lists as
//! irreversible, a confirmation the host holds. A call already
//! under way (a rolling restart) is never cut short: that is the safe point.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::confirm::Confirmations;
use super::registry::{self, Row};
use super::{Denials, LatestPods};
use crate::grants::{Capability, Grants, HttpMethod};
use crate::lease::Fence;
use crate::limits::CallBudget;
use crate::stop::Stop;

/// Proof that the gate allowed one call. Only this module constructs one; the code
/// that sends, restarts or writes takes it by value.
#[must_use]
#[derive(Debug)]
pub struct Permit {
    irreversible: bool,
}

impl Permit {
    /// The call is one of `[http] irreversible`, let through with the host's
    /// confirmation: what the report lists as sent ([`Gate::sent_irreversible`]).
    pub fn irreversible(&self) -> bool {
        self.irreversible
    }

    /// For the unit tests of the capabilities' own code.
    #[cfg(test)]
    pub fn for_tests() -> Permit {
        Permit {
            irreversible: false,
        }
    }
}

/// Why the gate did not let a call through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Refused: the message the procedure receives (recorded in the denials).
    Denied(String),
    /// Plan mode: recorded in the plan, not executed.
    Planned(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::Denied(m) | Refusal::Planned(m) => m,
        }
    }

    /// The outcome the audit trail records.
    pub fn outcome(&self) -> &'static str {
        match self {
            Refusal::Denied(_) => "denied",
            Refusal::Planned(_) => "planned",
        }
    }

    pub fn into_message(self) -> String {
        match self {
            Refusal::Denied(m) | Refusal::Planned(m) => m,
        }
    }
}

/// A call put to the gate.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    /// An HTTP request that passed `http`'s URL allow-list. `path` is the URL's path;
    /// `target` is `METHOD URL`.
    Http {
        function: &'static str,
        method: HttpMethod,
        path: &'a str,
        target: &'a str,
        /// The pod the request goes to.
        ip: Option<IpAddr>,
    },
    /// `restart.rolling-restart`; `target` names the site's mechanism.
    Restart { target: &'a str },
    /// `pods.list`.
    ListPods,
    /// A `journal` function (`entries`, `set`, `remove`) on `key`.
    Journal {
        function: &'static str,
        key: &'a str,
    },
    /// Any other function of the registry (`log.*`, `confirm.ask`, `hooks.*`): the
    /// gate checks its grant; its room does the rest.
    Plain {
        interface: &'static str,
        function: &'static str,
        target: &'a str,
    },
}

impl Call<'_> {
    fn row(&self) -> &'static Row {
        match self {
            Call::Http { function, .. } => registry::row("http", function),
            Call::Restart { .. } => registry::row("restart", "rolling-restart"),
            Call::ListPods => registry::row("pods", "list"),
            Call::Journal { function, .. } => registry::row("journal", function),
            Call::Plain {
                interface,
                function,
                ..
            } => registry::row(interface, function),
        }
    }

    fn target(&self) -> String {
        match self {
            Call::Http { target, .. } | Call::Restart { target } => target.to_string(),
            Call::ListPods => "list".into(),
            Call::Journal { key, .. } => key.chars().take(64).collect(),
            Call::Plain { target, .. } => target.chars().take(64).collect(),
        }
    }
}

/// A mutating call, as a [`Guard`] sees it.
#[derive(Debug, Clone)]
pub struct Mutating<'a> {
    /// The capability that makes it (`http`, `restart`): how a denial is recorded.
    pub capability: &'static str,
    /// How the log and the audit trail name it
    /// (`POST https://10.0.0.1:4444/cluster/v1/key/propose`, `rolling-restart`).
    pub target: &'a str,
    /// The method and path of a request (`POST /cluster/v1/key/propose`), or
    /// `rolling-restart`.
    pub call: String,
    /// The IP a request goes to; none for a restart.
    pub ip: Option<IpAddr>,
}

/// Checks the host runs before every mutating call that plan mode and stop
/// requests let through (the site hooks' guards and `[cluster] expect_pods`, in
/// `caps::hooks::Guards`), whatever the procedure does. `Err` is the message the
/// procedure receives (the guard records the denial, and stops the run when it
/// must).
pub trait Guard: Send + Sync {
    fn check<'a>(&'a self, call: &'a Mutating<'a>) -> BoxFuture<'a, Result<(), String>>;
}

/// What every store of a run shares.
struct Shared {
    plan: bool,
    stop: Stop,
    fence: Fence,
    denials: Denials,
    confirmations: Option<Confirmations>,
    pods: LatestPods,
    irreversible: Vec<(HttpMethod, String)>,
    max_restarts: u32,
    restarts: AtomicU32,
    planned: Mutex<Vec<String>>,
    /// Every `[http] irreversible` request sent, with how it ended.
    irreversible_sent: Mutex<Vec<String>>,
    /// A mutating call was refused because the run is stopped: the run cannot end
    /// as done, whatever the procedure reports.
    halted: Mutex<Option<String>>,
}

/// The gate of one run, as one store (the procedure's, or a hook's) sees it: the run's
/// shared state, with the store's own grants and host-call budget.
#[derive(Clone)]
pub struct Gate {
    shared: Arc<Shared>,
    grants: Grants,
    budget: CallBudget,
    /// The host's own checks of this store's mutating calls.
    guard: Option<Arc<dyn Guard>>,
}

/// What a run's gate is built from.
pub struct GateConfig {
    pub plan: bool,
    pub stop: Stop,
    pub fence: Fence,
    pub denials: Denials,
    /// `None`: nothing this run does is irreversible-capable with a confirmation
    /// (every irreversible request is denied).
    pub confirmations: Option<Confirmations>,
    pub pods: LatestPods,
    /// `[http] irreversible`.
    pub irreversible: Vec<(HttpMethod, String)>,
    /// `[restart] max_per_run`.
    pub max_restarts: u32,
}

impl Gate {
    /// The run's gate, for the store with `grants` and `budget`.
    pub fn new(config: GateConfig, grants: Grants, budget: CallBudget) -> Gate {
        Gate {
            shared: Arc::new(Shared {
                plan: config.plan,
                stop: config.stop,
                fence: config.fence,
                denials: config.denials,
                confirmations: config.confirmations,
                pods: config.pods,
                irreversible: config.irreversible,
                max_restarts: config.max_restarts,
                restarts: AtomicU32::new(0),
                planned: Mutex::default(),
                irreversible_sent: Mutex::default(),
                halted: Mutex::default(),
            }),
            grants,
            budget,
            guard: None,
        }
    }

    /// A gate of a run with no Lease, no confirmations and default limits, for the
    /// unit tests of the rooms.
    #[cfg(test)]
    pub fn for_tests(grants: Grants, denials: Denials) -> Gate {
        Gate::new(
            GateConfig {
                plan: false,
                stop: Stop::default(),
                fence: Fence::default(),
                denials,
                confirmations: None,
                pods: LatestPods::default(),
                irreversible: Vec::new(),
                max_restarts: 2,
            },
            grants,
            CallBudget::new(u64::MAX),
        )
    }

    /// The same run's gate (and guard) for another store (a hook), with its grants
    /// and budget.
    pub fn for_store(&self, grants: Grants, budget: CallBudget) -> Gate {
        Gate {
            shared: self.shared.clone(),
            grants,
            budget,
            guard: self.guard.clone(),
        }
    }

    /// This store's gate, consulting `guard` before every mutating call that plan
    /// mode and stop requests let through.
    pub fn with_guard(mut self, guard: Arc<dyn Guard>) -> Gate {
        self.guard = Some(guard);
        self
    }

    /// The store's host-call budget: a batch charges it one call per request.
    pub fn budget(&self) -> &CallBudget {
        &self.budget
    }

    /// Counts the `n` requests of one batch as host calls (the batch's own call
    /// counted as the first) and returns how many of them may go.
    pub fn charge_batch(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        1 + self.budget.take(n as u64 - 1) as usize
    }

    /// Whether `call` may go: the [`Permit`] to make it, or why not.
    pub async fn decide(&self, call: Call<'_>) -> Result<Permit, Refusal> {
        let row = call.row();
        let target = call.target();
        if let Err(rule) = self.granted(&call, row) {
            return Err(Refusal::Denied(self.shared.denials.deny(
                row.interface,
                &target,
                rule,
            )));
        }
        if !row.effect.mutating() {
            return Ok(Permit {
                irreversible: false,
            });
        }
        if let Err(why) = self.shared.fence.check() {
            self.shared.stop.request(why);
        }
        if let Some(why) = self.shared.stop.reason() {
            tracing::warn!(call = %target, "not sent: {why}");
            self.halt(&why);
            return Err(Refusal::Denied(format!("{why}: not sent")));
        }
        // A hold (`fleet --stop-before activate`) refuses the point of no return
        // itself, whether or not the component asked for a confirmation first.
        if let Call::Http { method, path, .. } = call
            && self.irreversible(method, path)
            && let Some(why) = self.shared.stop.withheld()
        {
            tracing::warn!(call = %target, "not sent: {why}");
            return Err(Refusal::Denied(format!("{why}: not sent")));
        }
        let restart = matches!(call, Call::Restart { .. });
        if restart {
            let max = self.shared.max_restarts;
            let n = self.shared.restarts.load(Ordering::SeqCst);
            if n >= max {
                return Err(Refusal::Denied(self.shared.denials.deny(
                    "restart",
                    &target,
                    format!(
                        "the site allows {max} rolling restart{} per run ([restart] max_per_run); \
                         this run has had {n}",
                        if max == 1 { "" } else { "s" }
                    ),
                )));
            }
        }
        if self.shared.plan {
            if restart {
                // Planned restarts count: the plan shows what the run would be allowed.
                self.shared.restarts.fetch_add(1, Ordering::SeqCst);
            }
            tracing::info!(call = %target, "plan: recorded, not sent");
            self.shared
                .planned
                .lock()
                .expect("plan lock")
                .push(target.clone());
            return Err(Refusal::Planned("plan mode: recorded, not sent".into()));
        }
        self.ask_guard(&call, &target).await?;
        if restart {
            self.shared.restarts.fetch_add(1, Ordering::SeqCst);
        }
        let irreversible =
            matches!(call, Call::Http { method, path, .. } if self.irreversible(method, path));
        if irreversible {
            // A store without the grant (a hook's never has it) cannot use the
            // procedure's confirmations.
            let authorised = match &self.shared.confirmations {
                Some(c) if self.grants.allows(Capability::Confirm) => c.authorise(&target).await,
                _ => Err(
                    "an irreversible request ([http] irreversible), and this component is not \
                     granted `confirm`: the host sends none for it"
                        .into(),
                ),
            };
            if let Err(rule) = authorised {
                return Err(Refusal::Denied(
                    self.shared.denials.deny("http", &target, rule),
                ));
            }
        }
        Ok(Permit { irreversible })
    }

    /// The grant of `call`'s registry row, and for `http` its method and path.
    fn granted(&self, call: &Call<'_>, row: &Row) -> Result<(), String> {
        match call {
            Call::Http { method, path, .. } => self.grants.allows_http(*method, path),
            _ => match row.grant {
                Some(cap) if !self.grants.allows(cap) => {
                    Err(format!("{} is not granted to this component", cap.name()))
                }
                _ => Ok(()),
            },
        }
    }

    /// The store's guard, for a call that plan mode and stop requests let through.
    async fn ask_guard(&self, call: &Call<'_>, target: &str) -> Result<(), Refusal> {
        let Some(guard) = &self.guard else {
            return Ok(());
        };
        let asked = match call {
            Call::Http {
                method, path, ip, ..
            } => Mutating {
                capability: "http",
                target,
                call: format!("{} {path}", method.name()),
                ip: *ip,
            },
            _ => Mutating {
                capability: "restart",
                target,
                call: "rolling-restart".into(),
                ip: None,
            },
        };
        if let Err(why) = guard.check(&asked).await {
            if let Some(stopped) = self.shared.stop.reason() {
                self.halt(&stopped);
            }
            return Err(Refusal::Denied(why));
        }
        Ok(())
    }

    /// Whether the site lists `method path` in `[http] irreversible`. Compared after
    /// decoding percent-escapes, ignoring case, repeated and trailing slashes, so
    /// that a spelling a server may read as the same endpoint is treated as it.
    pub fn irreversible(&self, method: HttpMethod, path: &str) -> bool {
        let path = loose_path(path);
        self.shared
            .irreversible
            .iter()
            .any(|(m, p)| *m == method && loose_path(p) == path)
    }

    /// Records that an irreversible request was sent and how it ended (`204`, or a
    /// timeout: it may have landed all the same). What the run's report says of the
    /// point of no return is this, never the procedure's account.
    pub fn sent_irreversible(&self, target: &str, outcome: &str) {
        self.shared
            .irreversible_sent
            .lock()
            .expect("irreversible lock")
            .push(format!("{target}: {outcome}"));
    }

    /// The irreversible requests this run sent (every store's), in order.
    pub fn irreversible_sent(&self) -> Vec<String> {
        self.shared
            .irreversible_sent
            .lock()
            .expect("irreversible lock")
            .clone()
    }

    fn halt(&self, why: &str) {
        let mut halted = self.shared.halted.lock().expect("halted lock");
        if halted.is_none() {
            *halted = Some(why.to_string());
        }
    }

    /// Why a mutating call was refused to a stopped run, if one was.
    pub fn halted(&self) -> Option<String> {
        self.shared.halted.lock().expect("halted lock").clone()
    }

    /// The calls plan mode recorded instead of executing.
    pub fn planned(&self) -> Vec<String> {
        self.shared.planned.lock().expect("plan lock").clone()
    }

    pub fn stopped(&self) -> Option<String> {
        self.shared.stop.reason()
    }

    /// Whether the run was stopped by the operator's interrupt.
    pub fn interrupted(&self) -> bool {
        self.shared.stop.interrupted()
    }

    /// The run's latest pod list, as the host saw it.
    pub fn latest_pods(&self) -> &LatestPods {
        &self.shared.pods
    }
}

/// `path` decoded (`%61` is `a`), lowercased, without empty segments.
fn loose_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            decoded.push((h * 16 + l) as u8);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8_lossy(&decoded).to_lowercase();
    let segments: Vec<&str> = text.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(plan: bool, stop: Stop) -> Gate {
        Gate::new(
            GateConfig {
                plan,
                stop,
                fence: Fence::default(),
                denials: Denials::default(),
                confirmations: None,
                pods: LatestPods::default(),
                irreversible: vec![(HttpMethod::Post, "/cluster/v1/key/activate".into())],
                max_restarts: 2,
            },
            Grants::none()
                .allow(Capability::Restart)
                .allow_http([HttpMethod::Post], ["/cluster/v1/key".to_string()]),
            CallBudget::new(10),
        )
    }

    fn post(target: &str) -> Call<'_> {
        Call::Http {
            function: "post",
            method: HttpMethod::Post,
            path: "/cluster/v1/key/propose",
            target,
            ip: None,
        }
    }

    const RESTART: Call<'static> = Call::Restart {
        target: "rolling-restart",
    };

    #[tokio::test]
    async fn a_hold_refuses_every_spelling_of_an_irreversible_request_and_only_it() {
        let stop = Stop::default();
        stop.hold_before("activate");
        let gate = gate(false, stop.clone());
        for path in [
            "/cluster/v1/key/activate",
            "/cluster/v1/key/activate/",
            "/cluster/v1/key/%61ctivate",
            "/cluster/v1/key/ACTIVATE",
        ] {
            let call = Call::Http {
                function: "post",
                method: HttpMethod::Post,
                path,
                target: "POST x",
                ip: None,
            };
            let refused = gate.decide(call).await.unwrap_err();
            assert!(
                refused
                    .message()
                    .contains("stopped before activate (--stop-before activate)"),
                "{path}: {refused:?}"
            );
        }
        assert!(stop.hold().unwrap().reached);
        // Everything before the point of no return goes.
        assert!(gate.decide(post("POST p")).await.is_ok());
        assert!(gate.decide(RESTART).await.is_ok());
    }

    #[tokio::test]
    async fn plan_records_and_refuses() {
        let gate = gate(true, Stop::default());
        assert!(matches!(
            gate.decide(post("POST a")).await,
            Err(Refusal::Planned(_))
        ));
        assert!(gate.decide(RESTART).await.is_err());
        assert_eq!(gate.planned(), ["POST a", "rolling-restart"]);
    }

    #[tokio::test]
    async fn a_stop_refuses_every_later_call_and_keeps_the_first_reason() {
        let stop = Stop::default();
        let gate = gate(false, stop.clone());
        assert!(gate.decide(post("POST a")).await.is_ok());
        stop.request("interrupted");
        stop.request("later");
        assert_eq!(
            gate.decide(post("POST b")).await.unwrap_err(),
            Refusal::Denied("interrupted: not sent".into())
        );
        assert!(gate.planned().is_empty());
    }

    #[tokio::test]
    async fn restarts_past_the_per_run_limit_are_refused() {
        let gate = gate(false, Stop::default());
        assert!(gate.decide(RESTART).await.is_ok());
        assert!(gate.decide(RESTART).await.is_ok());
        let refused = gate.decide(RESTART).await.unwrap_err();
        assert!(
            refused.message().contains("([restart] max_per_run)"),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn an_irreversible_request_without_a_confirmation_is_denied() {
        let gate = gate(false, Stop::default());
        let activate = Call::Http {
            function: "post",
            method: HttpMethod::Post,
            path: "/cluster/v1/key/%61ctivate/",
            target: "POST x",
            ip: None,
        };
        assert!(matches!(
            gate.decide(activate).await,
            Err(Refusal::Denied(_))
        ));
        assert!(gate.irreversible(HttpMethod::Post, "//Cluster/v1/key/activate"));
        assert!(!gate.irreversible(HttpMethod::Get, "/cluster/v1/key/activate"));
        assert!(!gate.irreversible(HttpMethod::Post, "/cluster/v1/key/propose"));
    }

    #[tokio::test]
    async fn grants_are_checked_first() {
        let gate = gate(false, Stop::default());
        let get = Call::Http {
            function: "get",
            method: HttpMethod::Get,
            path: "/cluster/v1/key",
            target: "GET x",
            ip: None,
        };
        assert_eq!(
            gate.decide(get).await.unwrap_err(),
            Refusal::Denied("GET x: method GET is not granted".into())
        );
        let journal = Call::Journal {
            function: "remove",
            key: "k",
        };
        assert_eq!(
            gate.decide(journal).await.unwrap_err(),
            Refusal::Denied("k: journal is not granted to this component".into())
        );
    }

    #[tokio::test]
    async fn a_store_without_confirm_never_sends_an_irreversible_request() {
        use crate::caps::confirm::{Answerer, Confirmations};
        let latest = LatestPods::default();
        let confirmations = Confirmations::new(
            Answerer::Yes,
            false,
            true,
            "c",
            latest.clone(),
            Denials::default(),
            crate::audit::Audit::default(),
            Stop::default(),
        );
        let grants = Grants::none()
            .allow(Capability::Confirm)
            .allow_http([HttpMethod::Post], ["/cluster/v1/key".to_string()]);
        let procedure = Gate::new(
            GateConfig {
                plan: false,
                stop: Stop::default(),
                fence: Fence::default(),
                denials: Denials::default(),
                confirmations: Some(confirmations),
                pods: latest,
                irreversible: vec![(HttpMethod::Post, "/cluster/v1/key/activate".into())],
                max_restarts: 2,
            },
            grants,
            CallBudget::new(10),
        );
        let hook = procedure.for_store(
            Grants::none().allow_http([HttpMethod::Post], ["/cluster/v1/key".to_string()]),
            CallBudget::new(10),
        );
        let activate = Call::Http {
            function: "post",
            method: HttpMethod::Post,
            path: "/cluster/v1/key/activate",
            target: "POST x",
            ip: None,
        };
        let refused = hook.decide(activate).await.unwrap_err();
        assert!(
            refused.message().contains("not granted `confirm`"),
            "{refused:?}"
        );
        // --yes is still unused: the procedure's one request goes.
        assert!(procedure.decide(activate).await.is_ok());
    }

    struct Refuse(Arc<Mutex<u32>>);

    impl Guard for Refuse {
        fn check<'a>(&'a self, call: &'a Mutating<'a>) -> BoxFuture<'a, Result<(), String>> {
            *self.0.lock().unwrap() += 1;
            let why = format!("{} refused", call.call);
            Box::pin(async move { Err(why) })
        }
    }

    #[tokio::test]
    async fn the_guard_is_asked_only_for_calls_that_may_go_out() {
        let asked = Arc::new(Mutex::new(0));
        let stop = Stop::default();
        let guarded = gate(false, stop.clone()).with_guard(Arc::new(Refuse(asked.clone())));
        assert_eq!(
            guarded.decide(RESTART).await.unwrap_err(),
            Refusal::Denied("rolling-restart refused".into())
        );
        let plan = gate(true, Stop::default()).with_guard(Arc::new(Refuse(asked.clone())));
        assert!(plan.decide(RESTART).await.is_err());
        assert_eq!(plan.planned(), ["rolling-restart"]);
        stop.request("interrupted");
        assert_eq!(
            guarded.decide(RESTART).await.unwrap_err(),
            Refusal::Denied("interrupted: not sent".into())
        );
        assert_eq!(
            *asked.lock().unwrap(),
            1,
            "asked once: not in plan mode, not after a stop"
        );
        // A refused restart is not one of the run's restarts.
        let guarded = gate(false, Stop::default());
        assert!(guarded.decide(RESTART).await.is_ok());
        assert!(guarded.decide(RESTART).await.is_ok());
    }

    #[test]
    fn a_batch_is_charged_one_call_per_request() {
        let gate = gate(false, Stop::default());
        // The batch's own call, counted by the call hook.
        assert!(gate.budget().take_one());
        assert_eq!(gate.charge_batch(5000), 10);
        assert!(!gate.budget().take_one());
    }
}
