//! The driver: one loop. Observe every pod (preflight), decide the phase, then walk
//! that phase's rows of the [table](crate::table): take the next step, verify it,
//! record it. Apply acts; plan walks the same rows and only reports, marking a step
//! the run's grants would refuse as refused (the plan itself succeeds: it is a
//! report). Before anything is read, apply checks that the grants cover a whole
//! rotation, so that a missing grant stops the run before the first change rather
//! than halfway.

use guest_kit::grants::Grants;
use guest_kit::host::Act;
use guest_kit::types::{Context, Failure, Level, Mode, Outcome, Report};

use crate::ledger::Steps;
use crate::logic::{Phase, Target};
use crate::params::{self, Params};
use crate::table::{self, How, Preflight};

/// Runs the rotation (or, in plan mode, reads and reports what it would do).
pub fn run(host: &mut impl Act, ctx: &Context) -> Result<Report, Failure> {
    let params = Params::parse(&ctx.params).map_err(|reason| {
        host.log(Level::Error, &reason, &[("step", params::STEP)]);
        Failure {
            step: params::STEP.into(),
            reason,
            safe_to_resume: true,
            steps: Vec::new(),
        }
    })?;
    let mut run = Run {
        host,
        params,
        cluster: ctx.cluster.clone(),
        grants: ctx.grants.clone(),
        steps: Steps::new(&ctx.cluster),
    };
    let needs = match ctx.mode {
        Mode::Apply => table::full_rotation_needs(),
        Mode::Plan => Preflight.needs().to_vec(),
    };
    let refused = run.grants.refusals(needs);
    if !refused.is_empty() {
        let detail = run.preflight_detail();
        run.announce(Preflight.name(), &detail);
        return Err(run.fail(
            Preflight.name(),
            format!(
                "this run is not granted what a rotation needs, so nothing was done: {}",
                refused.join("; ")
            ),
        ));
    }
    let mut state = run.preflight()?;
    match ctx.mode {
        Mode::Apply => run.apply(&mut state),
        Mode::Plan => run.plan(&state),
    }
}

/// One run: the host, what it was given, and its ledger.
pub struct Run<'h, H: Act> {
    pub(crate) host: &'h mut H,
    pub(crate) params: Params,
    /// The site's cluster name (shown in logs and the confirmation).
    pub(crate) cluster: String,
    pub(crate) grants: Grants,
    pub(crate) steps: Steps,
}

/// What the run knows of the cluster as it goes.
#[derive(Debug, Clone)]
pub struct State {
    /// The pods to work on, as last listed (their IPs change at every restart).
    pub targets: Vec<Target>,
    /// The key version the rotation starts from.
    pub before: i64,
    pub phase: Phase,
    /// The proposal being rotated to, once known.
    pub hash: Option<String>,
    /// The pod the proposal is fetched from, once known.
    pub source: Option<Target>,
}

/// How a taken step ended, when it does not simply go on.
pub enum Next {
    Continue,
    /// The pods showed another phase: walk its rows instead.
    Phase(Phase),
    /// The rotation is complete at this version.
    Done(i64),
}

impl<H: Act> Run<'_, H> {
    /// Walks the rows of the phase and acts, until the rotation is done or a step fails.
    fn apply(mut self, state: &mut State) -> Result<Report, Failure> {
        'phases: loop {
            let rows = table::rows(&state.phase, state.targets.len());
            // A phase entered after another (the activate never landed): the steps it
            // takes were recorded as skipped; they are taken after all.
            for (step, how) in &rows {
                if matches!(how, How::Take | How::TakeThenReobserve) {
                    self.unskip(&[step.name()]);
                }
            }
            for (step, how) in rows {
                let next = match how {
                    How::Skip(behind) => {
                        // A phase re-entered: what was skipped then stays recorded once.
                        if !self.steps.skipped(step.name()) {
                            let why = self.behind(state, behind);
                            self.note(step.name(), Outcome::Skipped, why);
                        }
                        Next::Continue
                    }
                    How::Adopt => {
                        self.adopt(state);
                        self.record_distributing(state)?;
                        Next::Continue
                    }
                    How::Take | How::TakeThenReobserve => {
                        let next = self.take(step, state)?;
                        match (how, next) {
                            (How::TakeThenReobserve, Next::Continue) => self.reobserve(state)?,
                            (_, next) => next,
                        }
                    }
                };
                match next {
                    Next::Continue => {}
                    Next::Phase(phase) => {
                        state.phase = phase;
                        continue 'phases;
                    }
                    Next::Done(after) => return Ok(self.finish(state, after)),
                }
            }
            // Every row was skipped: the journal records this rotation as complete.
            return Ok(self.report(state, Some(state.before)));
        }
    }

    /// Walks the same rows and reports, changing nothing. A step the grants would
    /// refuse is reported as refused (with what is missing), not as planned.
    fn plan(mut self, state: &State) -> Result<Report, Failure> {
        let mut state = state.clone();
        for (step, how) in table::rows(&state.phase, state.targets.len()) {
            match how {
                How::Skip(behind) => {
                    let why = self.behind(&state, behind);
                    self.note(step.name(), Outcome::Skipped, why);
                }
                How::Adopt => self.adopt(&mut state),
                How::Take | How::TakeThenReobserve => {
                    let refused = self.grants.refusals(step.needs().iter().copied());
                    if refused.is_empty() {
                        let detail = self.describe(step, &state, Mode::Plan);
                        self.note(step.name(), Outcome::Planned, detail);
                    } else {
                        let detail = format!("refused: {}", refused.join("; "));
                        self.note(step.name(), Outcome::Refused, detail);
                    }
                }
            }
        }
        let rotated = matches!(state.phase, Phase::Rotated { .. });
        Ok(self.report(&state, rotated.then_some(state.before)))
    }

    /// The report of a run that ended well.
    fn report(self, state: &State, version_after: Option<i64>) -> Report {
        Report {
            steps: self.steps.into_steps(),
            version_before: Some(state.before),
            version_after,
            pods: state.targets.len() as u32,
        }
    }

    /// Records the completed rotation and reminds of DR nodes.
    fn finish(self, state: &State, after: i64) -> Report {
        let hash = state.hash.as_deref().unwrap_or_default();
        let done = crate::journal::done_value(after, hash);
        if let Err(e) = self
            .host
            .journal_set(crate::journal::DONE, &done)
            .and_then(|()| self.host.journal_remove(crate::journal::ROTATION))
        {
            self.host.log(
                Level::Warn,
                "cannot record the completed rotation in the journal; a rerun verifies it again",
                &[("error", &e)],
            );
        }
        self.host.log(
            Level::Info,
            "the cluster master key was rotated",
            &[
                ("version_before", &state.before.to_string()),
                ("version_after", &after.to_string()),
                ("pods", &state.targets.len().to_string()),
            ],
        );
        let cluster = self.cluster.clone();
        self.host.log(
            Level::Warn,
            "DR and cold-standby nodes must now rejoin the cluster",
            &[("cluster", &cluster)],
        );
        self.report(state, Some(after))
    }
}
