//! The rotation's step ledger: [`guest_kit::ledger`] plus what the rotation adds to
//! it. A step that is carried out is offered to the site's hooks before it acts (a
//! veto stops it before any change) and after it ends; every failure says whether a
//! rerun can safely continue, which stops being true once activate may have landed.

use guest_kit::host::Act;
use guest_kit::ledger::Ledger;
use guest_kit::types::{Failure, Level, Outcome, Step};

use crate::driver::Run;

#[derive(Debug, Default)]
pub struct Steps {
    ledger: Ledger,
    /// What the run saw so far, for the hooks: `cluster`, `pods`, `ready`,
    /// `version`, `hash`.
    observed: Vec<(String, String)>,
    /// The step whose `before` hooks allowed it and whose `after` is due.
    guarded: Option<String>,
    /// From the moment activate may have reached a pod, a failure is no longer safe
    /// to resume: some pods may run a key others cannot load.
    pub activate_sent: bool,
}

impl Steps {
    pub fn new(cluster: &str) -> Steps {
        Steps {
            observed: vec![("cluster".to_string(), cluster.to_string())],
            ..Steps::default()
        }
    }

    /// Whether `name` was recorded as skipped.
    pub fn skipped(&self, name: &str) -> bool {
        self.ledger
            .steps()
            .iter()
            .any(|s| s.name == name && s.outcome == Outcome::Skipped)
    }

    pub fn into_steps(self) -> Vec<Step> {
        self.ledger.into_steps()
    }

    fn pairs(&self) -> Vec<(&str, &str)> {
        self.observed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

impl<H: Act> Run<'_, H> {
    /// Shows the step as begun, without asking the hooks (skipped and planned steps).
    pub(crate) fn announce(&mut self, name: &str, detail: &str) {
        self.steps.ledger.begin(self.host, name, detail);
    }

    /// A step that is carried out begins: shown, then the site's hooks may veto it,
    /// before it has changed anything.
    pub(crate) fn begin(&mut self, name: &str, detail: &str) -> Result<(), Failure> {
        self.announce(name, detail);
        let verdict = self.host.hook_before(name, &self.steps.pairs());
        match verdict {
            Ok(()) => {
                self.steps.guarded = Some(name.to_string());
                Ok(())
            }
            Err(reason) => Err(self.fail(
                name,
                format!("vetoed by a site hook before {name}, nothing done by it: {reason}"),
            )),
        }
    }

    pub(crate) fn end(&mut self, name: &str, outcome: Outcome, detail: String) {
        self.steps.ledger.end(self.host, name, outcome, detail);
        self.after_hooks(name, outcome);
    }

    /// A step shown and kept without running: skipped, planned or refused.
    pub(crate) fn note(&mut self, name: &str, outcome: Outcome, detail: String) {
        self.announce(name, &detail);
        self.end(name, outcome, detail);
    }

    /// Forgets the skipped records of `names`: the rotation takes them after all.
    pub(crate) fn unskip(&mut self, names: &[&str]) {
        self.steps.ledger.unskip(names);
    }

    /// Sets what the rotation observed (passed to the hooks).
    pub(crate) fn observe(&mut self, key: &str, value: impl ToString) {
        let value = value.to_string();
        match self.steps.observed.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.steps.observed.push((key.to_string(), value)),
        }
    }

    pub(crate) fn fail(&mut self, step: &str, reason: String) -> Failure {
        let safe = !self.steps.activate_sent;
        let failure = self.steps.ledger.fail(self.host, step, reason, safe);
        self.after_hooks(step, Outcome::Failed);
        self.host.log(
            Level::Error,
            &failure.reason,
            &[
                ("step", step),
                ("safe_to_resume", if safe { "true" } else { "false" }),
            ],
        );
        failure
    }

    /// The hooks' `after` for the step that passed their `before`.
    fn after_hooks(&mut self, name: &str, outcome: Outcome) {
        if self.steps.guarded.as_deref() != Some(name) {
            return;
        }
        self.steps.guarded = None;
        self.host.hook_after(name, outcome, &self.steps.pairs());
    }
}
