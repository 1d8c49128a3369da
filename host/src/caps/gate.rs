//! The gate every mutating call passes (`http` POST, `restart`): in plan mode it
//! records the call instead of executing it; once the run was asked to stop (SIGINT,
//! or the Lease was lost) it refuses new ones, so the procedure fails at its next
//! change, before making it. A call already under way (a rolling restart) is never
//! cut short: that is the safe point.
//!
//! A gate may also hold a [`Guard`]: the checks the host itself runs before every
//! mutating call that plan mode and stop requests let through (the site hooks'
//! guards and `[cluster] expect_pods`, in `caps::hooks::Guards`), whatever the
//! procedure does.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::stop::Stop;

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
/// requests let through. `Err` is the message the procedure receives (the guard
/// records the denial).
pub trait Guard: Send + Sync {
    fn check<'a>(&'a self, call: &'a Mutating<'a>) -> BoxFuture<'a, Result<(), String>>;
}

#[derive(Clone)]
struct GuardRef(Arc<dyn Guard>);

impl std::fmt::Debug for GuardRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Guard")
    }
}

/// The gate of one run.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    plan: bool,
    stop: Stop,
    planned: Arc<Mutex<Vec<String>>>,
    guard: Option<GuardRef>,
}

impl Gate {
    pub fn new(plan: bool, stop: Stop) -> Gate {
        Gate {
            plan,
            stop,
            planned: Arc::default(),
            guard: None,
        }
    }

    /// This gate (its plan record and stop requests shared), consulting `guard`
    /// in [`Gate::check_guarded`].
    pub fn with_guard(mut self, guard: Arc<dyn Guard>) -> Gate {
        self.guard = Some(GuardRef(guard));
        self
    }

    /// [`Gate::check`], then, for a call that may go out, the gate's guard.
    pub async fn check_guarded(&self, call: &Mutating<'_>) -> Result<(), String> {
        self.check(call.target)?;
        match &self.guard {
            Some(guard) => guard.0.check(call).await,
            None => Ok(()),
        }
    }

    /// `Ok` when `call` (e.g. `POST https://10.0.0.1:4444/cluster/v1/key/propose`)
    /// may go out; else the message the procedure receives.
    pub fn check(&self, call: &str) -> Result<(), String> {
        // A hold (`fleet --stop-before`) refuses the point of no return itself,
        // whether or not the component asked for a confirmation first.
        if let Some(why) = self.stop.held(call) {
            tracing::warn!(call, "not sent: {why}");
            return Err(format!("{why}: not sent"));
        }
        if let Some(why) = self.stop.reason() {
            tracing::warn!(call, "not sent: {why}");
            return Err(format!("{why}: not sent"));
        }
        if self.plan {
            tracing::info!(call, "plan: recorded, not sent");
            self.planned
                .lock()
                .expect("plan lock")
                .push(call.to_string());
            return Err("plan mode: recorded, not sent".into());
        }
        Ok(())
    }

    /// The calls plan mode recorded instead of executing.
    pub fn planned(&self) -> Vec<String> {
        self.planned.lock().expect("plan lock").clone()
    }

    pub fn stopped(&self) -> Option<String> {
        self.stop.reason()
    }

    /// The run's hold, when it stops before the point of no return.
    pub fn hold(&self) -> Option<crate::stop::Hold> {
        self.stop.hold()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_records_and_refuses() {
        let gate = Gate::new(true, Stop::default());
        assert!(gate.check("POST a").is_err());
        assert!(gate.check("restart").is_err());
        assert_eq!(gate.planned(), ["POST a", "restart"]);
    }

    #[test]
    fn a_stop_refuses_every_later_call_and_keeps_the_first_reason() {
        let stop = Stop::default();
        let gate = Gate::new(false, stop.clone());
        assert!(gate.check("POST a").is_ok());
        stop.request("interrupted");
        stop.request("later");
        assert_eq!(gate.check("POST b").unwrap_err(), "interrupted: not sent");
        assert!(gate.planned().is_empty());
    }

    #[test]
    fn a_hold_refuses_the_held_call_and_lets_the_others_through() {
        let stop = Stop::default();
        stop.hold_before("activate", &["POST /cluster/v1/key/activate"]);
        let gate = Gate::new(false, stop);
        assert!(
            gate.check("POST https://1.2.3.4:4444/cluster/v1/key/propose")
                .is_ok()
        );
        assert!(gate.check("rolling-restart").is_ok());
        assert_eq!(
            gate.check("POST https://1.2.3.4:4444/cluster/v1/key/activate")
                .unwrap_err(),
            "stopped before activate (--stop-before activate): not sent"
        );
        assert!(gate.hold().unwrap().reached);
    }

    struct Refuse(Arc<Mutex<u32>>);

    impl Guard for Refuse {
        fn check<'a>(&'a self, call: &'a Mutating<'a>) -> BoxFuture<'a, Result<(), String>> {
            *self.0.lock().unwrap() += 1;
            let why = format!("{} refused", call.call);
            Box::pin(async move { Err(why) })
        }
    }

    fn restart() -> Mutating<'static> {
        Mutating {
            capability: "restart",
            target: "rolling-restart",
            call: "rolling-restart".into(),
            ip: None,
        }
    }

    #[tokio::test]
    async fn the_guard_is_asked_only_for_calls_that_may_go_out() {
        let asked = Arc::new(Mutex::new(0));
        let stop = Stop::default();
        let gate = Gate::new(false, stop.clone()).with_guard(Arc::new(Refuse(asked.clone())));
        assert_eq!(
            gate.check_guarded(&restart()).await.unwrap_err(),
            "rolling-restart refused"
        );
        let plan = Gate::new(true, Stop::default()).with_guard(Arc::new(Refuse(asked.clone())));
        assert!(plan.check_guarded(&restart()).await.is_err());
        assert_eq!(plan.planned(), ["rolling-restart"]);
        stop.request("interrupted");
        assert_eq!(
            gate.check_guarded(&restart()).await.unwrap_err(),
            "interrupted: not sent"
        );
        assert_eq!(
            *asked.lock().unwrap(),
            1,
            "asked once: not in plan mode, not after a stop"
        );
    }
}
