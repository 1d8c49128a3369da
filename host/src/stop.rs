//! A run's stop request (SIGINT, a lost Lease, a fleet's failure policy) and its
//! hold before the point of no return (`fleet --stop-before activate`): a leaf, so
//! the Lease keeper below the capabilities and the gate above them share one value.

use std::sync::{Arc, Mutex};

/// A request to stop the run at its next mutating call; the first reason wins.
///
/// A stop made with [`Stop::child`] also stops when its parent does (a fleet stops
/// every cluster; one cluster's lost Lease stops only that cluster).
#[derive(Debug, Clone, Default)]
pub struct Stop {
    own: Arc<Mutex<Option<Request>>>,
    parent: Option<Box<Stop>>,
    hold: Arc<Mutex<Option<Hold>>>,
}

/// Why a stop was asked for, and whether by the operator's interrupt.
#[derive(Debug, Clone)]
struct Request {
    why: String,
    interrupt: bool,
}

/// The run goes up to the point of no return and no further: every confirmation is
/// answered no, and every irreversible request (`[http] irreversible`, as the gate
/// matches it) is refused, whatever the component does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// What the run stops before, as the operator wrote it (`activate`).
    pub before: String,
    /// What the component and the report are told.
    pub reason: String,
    /// Set when the hold refused something: the run did reach the point of no return.
    pub reached: bool,
}

impl Stop {
    /// A stop for `why` (a lost Lease, a veto, a fleet's failure policy).
    pub fn request(&self, why: impl Into<String>) {
        self.ask(why.into(), false);
    }

    /// The operator's own stop (SIGINT): the run ends `interrupted`, not failed.
    pub fn interrupt(&self, why: impl Into<String>) {
        self.ask(why.into(), true);
    }

    fn ask(&self, why: String, interrupt: bool) {
        let mut own = self.own.lock().expect("stop lock");
        if own.is_none() {
            *own = Some(Request { why, interrupt });
        }
    }

    /// The request that stands: this stop's own first, else its parent's.
    fn first(&self) -> Option<Request> {
        let own = self.own.lock().expect("stop lock").clone();
        own.or_else(|| self.parent.as_ref().and_then(|p| p.first()))
    }

    pub fn reason(&self) -> Option<String> {
        self.first().map(|r| r.why)
    }

    /// Whether the stop that stands is the operator's interrupt.
    pub fn interrupted(&self) -> bool {
        self.first().is_some_and(|r| r.interrupt)
    }

    /// A stop of its own that also follows this one's requests (not its hold).
    pub fn child(&self) -> Stop {
        Stop {
            own: Arc::default(),
            parent: Some(Box::new(self.clone())),
            hold: Arc::default(),
        }
    }

    /// From now on, the run stops before `before`: its irreversible requests are
    /// refused and its confirmations answered no.
    pub fn hold_before(&self, before: &str) {
        *self.hold.lock().expect("hold lock") = Some(Hold {
            before: before.to_string(),
            reason: format!("stopped before {before} (--stop-before {before})"),
            reached: false,
        });
    }

    /// The hold, if any (and whether it refused something).
    pub fn hold(&self) -> Option<Hold> {
        self.hold.lock().expect("hold lock").clone()
    }

    /// `Some(reason)` when a hold is set: the run was about to cross the point of no
    /// return (an irreversible request, a confirmation), which is recorded as reached.
    pub fn withheld(&self) -> Option<String> {
        let mut hold = self.hold.lock().expect("hold lock");
        let hold = hold.as_mut()?;
        hold.reached = true;
        Some(hold.reason.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_follows_its_parent_but_not_the_other_way() {
        let fleet = Stop::default();
        let a = fleet.child();
        let b = fleet.child();
        a.request("lease lost");
        assert_eq!(a.reason().as_deref(), Some("lease lost"));
        assert_eq!(b.reason(), None);
        assert_eq!(fleet.reason(), None);
        fleet.request("2 clusters failed");
        assert_eq!(b.reason().as_deref(), Some("2 clusters failed"));
        assert_eq!(
            a.reason().as_deref(),
            Some("lease lost"),
            "first reason wins"
        );
    }

    #[test]
    fn only_an_interrupt_is_an_interrupt_whatever_a_reason_says() {
        let fleet = Stop::default();
        let a = fleet.child();
        a.request("interrupted, says a hook's veto");
        assert!(!a.interrupted());
        let b = fleet.child();
        fleet.interrupt("interrupted (SIGINT)");
        assert!(b.interrupted(), "a child follows its parent's interrupt");
        assert!(!a.interrupted(), "its own first request still stands");
        assert!(fleet.interrupted());
    }

    #[test]
    fn withholding_a_confirmation_marks_the_hold_reached() {
        let stop = Stop::default();
        assert_eq!(stop.withheld(), None);
        stop.hold_before("activate");
        assert!(!stop.hold().unwrap().reached);
        assert!(stop.withheld().is_some());
        assert!(stop.hold().unwrap().reached);
    }
}
