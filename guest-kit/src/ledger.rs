//! The step ledger: every step of a run, shown by the host as it begins and ends
//! (`log.step-begin`, `log.step-end`) and kept, in order, for the report and the
//! failure. A failed step is shown, and named by the failure, but not kept: the
//! failure's `steps` are those that ended before it.

use crate::host::Read;
use crate::types::{Failure, Outcome, Step};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    steps: Vec<Step>,
}

impl Ledger {
    pub fn begin(&self, host: &mut impl Read, name: &str, detail: &str) {
        host.step_begin(name, detail);
    }

    pub fn end(&mut self, host: &mut impl Read, name: &str, outcome: Outcome, detail: String) {
        host.step_end(name, outcome, &detail);
        self.steps.push(Step {
            name: name.into(),
            outcome,
            detail,
        });
    }

    /// A step shown and kept in one go (skipped, planned, refused: nothing runs).
    pub fn note(&mut self, host: &mut impl Read, name: &str, outcome: Outcome, detail: String) {
        self.begin(host, name, &detail);
        self.end(host, name, outcome, detail);
    }

    /// Ends `step` as failed and says why; `safe`: a rerun can continue from here.
    pub fn fail(&self, host: &mut impl Read, step: &str, reason: String, safe: bool) -> Failure {
        host.step_end(step, Outcome::Failed, &reason);
        Failure {
            step: step.into(),
            reason,
            safe_to_resume: safe,
            steps: self.steps.clone(),
        }
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Forgets the steps named in `names` that were kept as skipped: they are about
    /// to be taken after all.
    pub fn unskip(&mut self, names: &[&str]) {
        self.steps
            .retain(|s| s.outcome != Outcome::Skipped || !names.contains(&s.name.as_str()));
    }

    pub fn into_steps(self) -> Vec<Step> {
        self.steps
    }
}
