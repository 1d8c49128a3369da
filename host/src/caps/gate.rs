//! The gate every mutating call passes (`http` POST, `restart`): in plan mode it
//! records the call instead of executing it; once the run was asked to stop (SIGINT,
//! or the Lease was lost) it refuses new ones, so the procedure fails at its next
//! change, before making it. A call already under way (a rolling restart) is never
//! cut short: that is the safe point.

use std::sync::{Arc, Mutex};

use crate::stop::Stop;

/// The gate of one run.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    plan: bool,
    stop: Stop,
    planned: Arc<Mutex<Vec<String>>>,
}

impl Gate {
    pub fn new(plan: bool, stop: Stop) -> Gate {
        Gate {
            plan,
            stop,
            planned: Arc::default(),
        }
    }

    /// `Ok` when `call` (e.g. `POST https://10.0.0.1:4444/cluster/v1/key/propose`)
    /// may go out; else the message the procedure receives.
    pub fn check(&self, call: &str) -> Result<(), String> {
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
}
