//! The table of phases: for each phase the reconcile can observe ([`Phase`]), the
//! steps after `preflight`, each either taken (and verified by its check before the
//! next begins) or skipped because the cluster is already past it. Apply walks a
//! phase's rows and acts; plan walks the same rows and only reports. What each step
//! needs of the run's grants is here too, so that both can tell before acting.

use guest_kit::grants::Need;
use guest_kit::status::STATUS_PATH;
use guest_kit::types::Method;

use crate::logic::Phase;

pub const PROPOSE_PATH: &str = "/cluster/v1/key/propose";
pub const FETCH_PATH: &str = "/cluster/v1/key/fetch";
pub const ACTIVATE_PATH: &str = "/cluster/v1/key/activate";

/// The documented steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Preflight,
    Propose,
    Distribute,
    VerifyDistributed,
    RestartLoad,
    VerifyLoaded,
    Activate,
    RestartActivate,
    VerifyActivated,
}

pub use Step::*;

/// Every step, in order.
pub const ORDER: [Step; 9] = [
    Preflight,
    Propose,
    Distribute,
    VerifyDistributed,
    RestartLoad,
    VerifyLoaded,
    Activate,
    RestartActivate,
    VerifyActivated,
];

impl Step {
    pub const fn name(self) -> &'static str {
        match self {
            Preflight => "preflight",
            Propose => "propose",
            Distribute => "distribute",
            VerifyDistributed => "verify-distributed",
            RestartLoad => "restart-load",
            VerifyLoaded => "verify-loaded",
            Activate => "activate",
            RestartActivate => "restart-activate",
            VerifyActivated => "verify-activated",
        }
    }

    /// The check that must pass before the next step begins (the README's table).
    pub fn check(self) -> &'static str {
        match self {
            Preflight => "every pod Ready and answering, on one version, with at most one proposal",
            Propose => "the proposer reports the new proposal's hash",
            Distribute => "every fetch answered 2xx",
            VerifyDistributed => "every pod reports the proposal's hash",
            RestartLoad | RestartActivate => "the restart completed and every pod is Ready",
            VerifyLoaded => "every pod still holds the hash at the old version",
            Activate => "the operator confirmed, and activate answered 2xx",
            VerifyActivated => "every pod reports the next version",
        }
    }

    /// What the step needs of the run's grants.
    pub fn needs(self) -> &'static [Need] {
        const READ: Need = Need::Http(Method::Get, STATUS_PATH);
        const JOURNAL: Need = Need::Capability("journal");
        const RESTART: &[Need] = &[Need::Capability("restart"), Need::Capability("pods")];
        match self {
            // The journal completes what the pods show, when it is granted; apply
            // needs it anyway, for the records of the later steps.
            Preflight => &[Need::Capability("pods"), READ],
            Propose => &[Need::Http(Method::Post, PROPOSE_PATH), READ, JOURNAL],
            Distribute => &[Need::Http(Method::Post, FETCH_PATH)],
            VerifyDistributed => &[READ],
            RestartLoad | RestartActivate => RESTART,
            VerifyLoaded | VerifyActivated => &[READ, JOURNAL],
            Activate => &[
                Need::Capability("confirm"),
                JOURNAL,
                Need::Http(Method::Post, ACTIVATE_PATH),
            ],
        }
    }
}

/// Why a step is behind the cluster (rendered by [`crate::resume`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behind {
    /// Every pod already holds the proposal.
    AllHold,
    /// The journal records a verified restart after every pod held the proposal.
    Loaded,
    /// The journal records that activate was (or may have been) sent.
    ActivateSent,
    /// Every pod already runs the next version.
    Restarted,
    /// The journal records a completed rotation to the version the pods run.
    Rotated,
}

/// What the run does with a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Act, then check.
    Take,
    /// A proposal is already held: not proposed again, but adopted (and recorded)
    /// as the one to distribute. Reported as skipped.
    Adopt,
    /// Nothing to do: the cluster is past it.
    Skip(Behind),
    /// Act, then read every pod again: when they all still hold the proposal at the
    /// old version, the activate the journal recorded never landed, and the rotation
    /// goes on from [`Phase::Loaded`].
    TakeThenReobserve,
}

/// The rows of `phase` for a cluster of `pods` pods: every step after preflight, in order.
pub fn rows(phase: &Phase, pods: usize) -> Vec<(Step, How)> {
    let steps = ORDER[1..].iter().copied();
    match phase {
        Phase::NothingProposed => steps
            .map(|s| match s {
                Distribute if pods <= 1 => (s, How::Skip(Behind::AllHold)),
                _ => (s, How::Take),
            })
            .collect(),
        Phase::Proposed { missing, .. } => steps
            .map(|s| match s {
                Propose => (s, How::Adopt),
                Distribute if missing.is_empty() => (s, How::Skip(Behind::AllHold)),
                _ => (s, How::Take),
            })
            .collect(),
        Phase::Loaded { .. } => steps
            .map(behind_upto(RestartLoad, Behind::Loaded))
            .collect(),
        Phase::Activating {
            sent, restarted, ..
        } => steps
            .map(|s| match s {
                RestartActivate if *restarted => (s, How::Skip(Behind::Restarted)),
                RestartActivate if !sent => (s, How::TakeThenReobserve),
                _ => behind_upto(Activate, Behind::ActivateSent)(s),
            })
            .collect(),
        Phase::Rotated { .. } => steps.map(|s| (s, How::Skip(Behind::Rotated))).collect(),
    }
}

/// Skipped for `why` up to and including `upto`; taken after it.
fn behind_upto(upto: Step, why: Behind) -> impl Fn(Step) -> (Step, How) {
    move |s| {
        if (s as usize) <= (upto as usize) {
            (s, How::Skip(why))
        } else {
            (s, How::Take)
        }
    }
}

/// Everything a full rotation needs, each once: what apply checks before preflight.
pub fn full_rotation_needs() -> Vec<Need> {
    let mut needs: Vec<Need> = Vec::new();
    for need in ORDER.iter().flat_map(|s| s.needs()) {
        if !needs.contains(need) {
            needs.push(*need);
        }
    }
    needs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(rows: &[(Step, How)]) -> Vec<&'static str> {
        rows.iter()
            .filter(|(_, h)| matches!(h, How::Take | How::TakeThenReobserve))
            .map(|(s, _)| s.name())
            .collect()
    }

    #[test]
    fn every_phase_lists_every_step_after_preflight_in_order() {
        let hash = || "h".to_string();
        for phase in [
            Phase::NothingProposed,
            Phase::Proposed {
                hash: hash(),
                holders: vec!["a".into()],
                missing: vec![],
            },
            Phase::Loaded { hash: hash() },
            Phase::Activating {
                hash: hash(),
                sent: false,
                restarted: false,
            },
            Phase::Rotated { hash: hash() },
        ] {
            let names: Vec<Step> = rows(&phase, 3).into_iter().map(|(s, _)| s).collect();
            assert_eq!(names, ORDER[1..], "{phase:?}");
        }
    }

    #[test]
    fn the_journal_phases_skip_what_is_behind() {
        let loaded = rows(&Phase::Loaded { hash: "h".into() }, 3);
        assert_eq!(
            taken(&loaded),
            [
                "verify-loaded",
                "activate",
                "restart-activate",
                "verify-activated"
            ]
        );
        let sent = |sent, restarted| Phase::Activating {
            hash: "h".into(),
            sent,
            restarted,
        };
        assert_eq!(
            taken(&rows(&sent(true, false), 3)),
            ["restart-activate", "verify-activated"]
        );
        assert_eq!(taken(&rows(&sent(true, true), 3)), ["verify-activated"]);
        assert!(rows(&sent(false, false), 3).contains(&(RestartActivate, How::TakeThenReobserve)));
        assert!(taken(&rows(&Phase::Rotated { hash: "h".into() }, 3)).is_empty());
        // One pod: nobody to distribute to.
        assert!(
            rows(&Phase::NothingProposed, 1).contains(&(Distribute, How::Skip(Behind::AllHold)))
        );
    }

    #[test]
    fn a_full_rotation_needs_every_grant_it_uses() {
        let needs = full_rotation_needs();
        for c in ["pods", "journal", "restart", "confirm"] {
            assert!(needs.contains(&Need::Capability(c)), "{c}");
        }
        assert!(needs.contains(&Need::Http(Method::Post, ACTIVATE_PATH)));
        assert_eq!(
            needs
                .iter()
                .filter(|n| **n == Need::Capability("journal"))
                .count(),
            1
        );
    }
}
