//! The steps: what each does and the check it must pass before the next begins.
//! Each is announced (the site's hooks may veto it), acts, and counts as done only
//! once its check passed; the first failure stops the run. [`Run::describe`] is the
//! one description of a step, shown as it begins and listed by plan.

use std::time::Duration;

use guest_kit::host::Act;
use guest_kit::reads::{self, ReadError};
use guest_kit::retry::Backoff;
use guest_kit::status::{self, KeyStatus, STATUS_PATH};
use guest_kit::types::{Failure, HttpError, Level, Method, Mode, Outcome, Request, RestartError};

use crate::driver::{Next, Run, State};
use crate::journal::{self, InProgress, Stage};
use crate::logic::{self, Phase, Target};
use crate::table::{self, Step, Step::*};

/// Reads retry after 200 ms, doubling up to 5 s: pods warm up for a while after a restart.
pub const BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(200),
    max: Duration::from_secs(5),
};

impl<H: Act> Run<'_, H> {
    /// Takes `step` from `state`: acts, checks, records.
    pub(crate) fn take(&mut self, step: Step, state: &mut State) -> Result<Next, Failure> {
        let hash = state.hash.clone().unwrap_or_default();
        let before = state.before;
        match step {
            Preflight => unreachable!("preflight observes; it is not a row of the table"),
            Propose => {
                self.propose(state)?;
                self.record_distributing(state)?;
            }
            Distribute => self.distribute(state)?,
            VerifyDistributed | VerifyLoaded => {
                let detail = self.describe(step, state, Mode::Apply);
                let version = (step == VerifyLoaded).then_some(before);
                self.verify_hash(step, &detail, &state.targets, &hash, version)?;
                if step == VerifyLoaded {
                    self.record(VerifyLoaded, Stage::Loaded, &hash, before)?;
                }
            }
            RestartLoad | RestartActivate => {
                let detail = self.describe(step, state, Mode::Apply);
                state.targets = self.restart(step, &detail)?;
            }
            Activate => {
                self.confirm_activation(&state.targets, &hash, before)?;
                // Durable before the request leaves: it may land even if the host dies now.
                self.record(Activate, Stage::Activating, &hash, before)?;
                if let Err(failure) = self.activate(state) {
                    if !self.steps.activate_sent {
                        // Provably never sent: back to loaded, so that a rerun activates.
                        let _ = self.journal_rotation(Stage::Loaded, &hash, before);
                    }
                    return Err(failure);
                }
                if let Err(e) = self.journal_rotation(Stage::Activated, &hash, before) {
                    // `activating` is on record, which a rerun resumes just as well.
                    self.host.log(
                        Level::Warn,
                        "cannot record the activation in the journal",
                        &[("error", &e)],
                    );
                }
            }
            VerifyActivated => {
                return self.verify_activated(state).map(Next::Done);
            }
        }
        Ok(Next::Continue)
    }

    /// What `step` does from `state`, as it begins (apply) or as plan lists it.
    pub(crate) fn describe(&self, step: Step, state: &State, mode: Mode) -> String {
        let (hf, vf) = (
            &self.params.common.hash_field,
            &self.params.common.version_field,
        );
        let proposal = match &state.hash {
            Some(h) => format!("{h:?}"),
            None => "of the new proposal".into(),
        };
        let first = &state.targets[0];
        match step {
            Preflight => self.preflight_detail(),
            Propose => format!("propose on {} ({})", first.name, first.ip),
            Distribute => {
                let (source, fetchers) = self.fetchers(state);
                format!(
                    "fetch on {} from {}",
                    logic::names(&fetchers),
                    self.endpoint(&source.ip)
                )
            }
            VerifyDistributed => format!("every pod reports {hf} {proposal}"),
            VerifyLoaded => format!(
                "every pod reports {hf} {proposal} and {vf} {}",
                state.before
            ),
            RestartLoad => match &state.hash {
                Some(h) => format!("rolling restart: load proposal {h:?} on every pod"),
                None => "rolling restart: load the new proposal on every pod".into(),
            },
            Activate if mode == Mode::Plan => {
                let mut d = format!(
                    "ask for confirmation, then activate on the first pod by name (now {})",
                    first.name
                );
                if !self.grants.confirm_answerable {
                    d.push_str("; this run cannot answer it (no --yes and no terminal)");
                }
                d
            }
            Activate => format!("activate on {} ({})", first.name, first.ip),
            RestartActivate => "rolling restart: run the activated key on every pod".into(),
            VerifyActivated => format!("every pod reports {vf} {}", state.before + 1),
        }
    }

    /// The pod the proposal is fetched from (the proposer, or the first holder by
    /// name), and the pods that still have to fetch it.
    fn fetchers(&self, state: &State) -> (Target, Vec<Target>) {
        let holders: &[String] = match &state.phase {
            Phase::Proposed { holders, .. } => holders,
            _ => &[],
        };
        let source = state
            .source
            .clone()
            .unwrap_or_else(|| state.targets[0].clone());
        let fetchers = state
            .targets
            .iter()
            .filter(|t| t.name != source.name && !holders.contains(&t.name))
            .cloned()
            .collect();
        (source, fetchers)
    }

    /// A proposal is already held: it is the one to distribute, from its first holder.
    pub(crate) fn adopt(&mut self, state: &mut State) {
        let Phase::Proposed { hash, holders, .. } = &state.phase else {
            unreachable!("only a held proposal is adopted")
        };
        let source = state
            .targets
            .iter()
            .find(|t| holders.contains(&t.name))
            .cloned()
            .expect("a holder is a listed pod");
        let detail = format!(
            "proposal {hash:?} already held by {}: not proposing again; distributing from {} ({})",
            holders.join(", "),
            source.name,
            source.ip
        );
        state.hash = Some(hash.clone());
        state.source = Some(source);
        self.note(Propose.name(), Outcome::Skipped, detail);
    }

    fn propose(&mut self, state: &mut State) -> Result<(), Failure> {
        let proposer = state.targets[0].clone();
        let detail = self.describe(Propose, state, Mode::Apply);
        self.begin(Propose.name(), &detail)?;
        let url = self.url(&proposer.ip, table::PROPOSE_PATH);
        self.host.log(
            Level::Info,
            "proposing a new key",
            &[("pod", &proposer.name), ("ip", &proposer.ip)],
        );
        let fail = |run: &mut Self, why: String| run.fail(Propose.name(), why);
        // Never retried: a second propose would replace the first one's proposal.
        if let Err(e) = self.host.post(&url, None) {
            let why = format!("propose on {} ({}) failed: {e}", proposer.name, proposer.ip);
            return Err(fail(self, why));
        }
        let url = self.url(&proposer.ip, STATUS_PATH);
        let answer = reads::get(self.host, &url, self.params.common.read_timeout, BACKOFF);
        let parsed = answer
            .map_err(|e| e.to_string())
            .and_then(|r| status::parse(&r.body, self.params.common.fields()));
        let hash = match parsed {
            Ok(KeyStatus { hash: Some(h), .. }) => h,
            Ok(_) => {
                let hf = &self.params.common.hash_field;
                let why = format!("{} reports no {hf} after propose", proposer.name);
                return Err(fail(self, why));
            }
            Err(why) => {
                let name = &proposer.name;
                let why = format!("cannot read the proposal's hash from {name}: {why}");
                return Err(fail(self, why));
            }
        };
        self.host.log(
            Level::Info,
            "proposed",
            &[("pod", &proposer.name), ("hash", &hash)],
        );
        self.observe("hash", &hash);
        let detail = format!("proposal {hash:?} on {} ({})", proposer.name, proposer.ip);
        self.end(Propose.name(), Outcome::Done, detail);
        state.hash = Some(hash);
        state.source = Some(proposer);
        Ok(())
    }

    /// Records that the proposal is being distributed.
    pub(crate) fn record_distributing(&mut self, state: &State) -> Result<(), Failure> {
        let hash = state.hash.clone().unwrap_or_default();
        self.record(Propose, Stage::Distributing, &hash, state.before)
    }

    fn distribute(&mut self, state: &State) -> Result<(), Failure> {
        let (source, fetchers) = self.fetchers(state);
        let hash = state.hash.clone().unwrap_or_default();
        let source = self.endpoint(&source.ip);
        let detail = self.describe(Distribute, state, Mode::Apply);
        self.begin(Distribute.name(), &detail)?;
        let body = serde_json::json!({ "target": source }).to_string();
        let requests: Vec<Request> = fetchers
            .iter()
            .map(|t| Request {
                method: Method::Post,
                url: self.url(&t.ip, table::FETCH_PATH),
                body: Some(body.clone()),
            })
            .collect();
        // One fan-out, never retried: the verification after it tells what happened.
        let results = self.host.batch(&requests);
        let mut failed = Vec::new();
        for (i, target) in fetchers.iter().enumerate() {
            match results.get(i) {
                Some(Ok(_)) => self.host.log(
                    Level::Info,
                    "fetched the proposal",
                    &[("pod", &target.name), ("ip", &target.ip), ("from", &source)],
                ),
                Some(Err(e)) => failed.push(format!("{} ({}): {e}", target.name, target.ip)),
                None => failed.push(format!("{} ({}): no result", target.name, target.ip)),
            }
        }
        if !failed.is_empty() {
            let why = format!("fetch from {source} failed on {}", failed.join("; "));
            return Err(self.fail(Distribute.name(), why));
        }
        let names = logic::names(&fetchers);
        let detail = format!("{names} fetched proposal {hash:?} from {source}");
        self.end(Distribute.name(), Outcome::Done, detail);
        Ok(())
    }

    /// Every pod holds `hash` (and, when given, still reports `version`).
    fn verify_hash(
        &mut self,
        step: Step,
        what: &str,
        targets: &[Target],
        hash: &str,
        version: Option<i64>,
    ) -> Result<(), Failure> {
        self.begin(step.name(), what)?;
        let statuses = self.statuses(step, targets)?;
        if let Err(diverging) = logic::check_distributed(&statuses, hash) {
            let mut reason = diverging.render(&self.params.common.hash_field, hash);
            if step == VerifyDistributed {
                reason.push_str("; stopped before any restart");
            }
            return Err(self.fail(step.name(), reason));
        }
        if let Some(v) = version
            && let Err(wrong) = logic::check_version(&statuses, v)
        {
            let vf = &self.params.common.version_field;
            let reason = logic::render_version_mismatch(vf, v, &wrong);
            return Err(self.fail(step.name(), reason));
        }
        let detail = format!("{what} ({})", logic::names(targets));
        self.end(step.name(), Outcome::Done, detail);
        Ok(())
    }

    /// A rolling restart, then the pods listed again (their IPs changed).
    fn restart(&mut self, step: Step, detail: &str) -> Result<Vec<Target>, Failure> {
        let name = step.name();
        self.begin(name, detail)?;
        if let Err(e) = self.host.rolling_restart() {
            if step == RestartActivate && matches!(e, RestartError::Denied(_)) {
                // It never started, and every pod loaded the activated key before
                // activate (verified): nothing is at risk, and the journal says
                // `activated`, so a rerun restarts and finishes.
                self.steps.activate_sent = false;
                let why = format!(
                    "the rolling restart was not started ({e}); the key is activated and \
                     every pod loaded it: run again to restart and finish"
                );
                return Err(self.fail(name, why));
            }
            return Err(self.fail(name, format!("the rolling restart failed: {e}")));
        }
        let pods = self
            .host
            .list_pods()
            .map_err(|e| self.fail(name, format!("cannot list the pods after the restart: {e}")))?;
        let targets = logic::ready_targets(&pods)
            .map_err(|reason| self.fail(name, format!("after the restart, {reason}")))?;
        for t in &targets {
            let fields = [("pod", t.name.as_str()), ("ip", t.ip.as_str())];
            self.host.log(Level::Debug, "pod after restart", &fields);
        }
        self.observe("pods", pods.len());
        self.observe("ready", pods.iter().filter(|p| p.ready).count());
        let listed: Vec<String> = targets
            .iter()
            .map(|t| format!("{} ({})", t.name, t.ip))
            .collect();
        let detail = format!("{} pods Ready: {}", targets.len(), listed.join(", "));
        self.end(name, Outcome::Done, detail);
        Ok(targets)
    }

    /// The point of no return: the host asks (or `--yes` answered).
    fn confirm_activation(
        &mut self,
        targets: &[Target],
        hash: &str,
        before: i64,
    ) -> Result<(), Failure> {
        let pods: Vec<String> = targets
            .iter()
            .map(|t| format!("{} ({})", t.name, t.ip))
            .collect();
        let pods = pods.join(", ");
        let vf = &self.params.common.version_field;
        let versions = format!("{vf} {before} -> {}", before + 1);
        let cluster = self.cluster.clone();
        let details = [
            ("cluster", cluster.as_str()),
            ("pods", pods.as_str()),
            ("proposal hash", hash),
            ("versions", versions.as_str()),
        ];
        let action = "activate the new cluster master key";
        if let Err(why) = self.host.confirm(action, &details) {
            self.announce(Activate.name(), "confirmation");
            let why = format!("stopped before activate, nothing activated: {why}");
            return Err(self.fail(Activate.name(), why));
        }
        Ok(())
    }

    fn activate(&mut self, state: &State) -> Result<(), Failure> {
        let pod = state.targets[0].clone();
        let detail = self.describe(Activate, state, Mode::Apply);
        self.begin(Activate.name(), &detail)?;
        let fields = [("pod", pod.name.as_str()), ("ip", pod.ip.as_str())];
        self.host
            .log(Level::Warn, "activating the new key", &fields);
        let url = self.url(&pod.ip, table::ACTIVATE_PATH);
        // Never retried. Unless the request provably never left (denied by policy, or
        // no TLS session), assume it may have been applied.
        self.steps.activate_sent = true;
        if let Err(e) = self.host.post(&url, None) {
            self.steps.activate_sent = !matches!(e, HttpError::Denied(_) | HttpError::Tls(_));
            let why = format!("activate on {} ({}) failed: {e}", pod.name, pod.ip);
            return Err(self.fail(Activate.name(), why));
        }
        let detail = format!("activated on {} ({})", pod.name, pod.ip);
        self.end(Activate.name(), Outcome::Done, detail);
        Ok(())
    }

    fn verify_activated(&mut self, state: &State) -> Result<i64, Failure> {
        let expected = state.before + 1;
        let name = VerifyActivated.name();
        let what = self.describe(VerifyActivated, state, Mode::Apply);
        self.begin(name, &what)?;
        let answers = self.read(&state.targets);
        let broken: Vec<String> = state
            .targets
            .iter()
            .zip(&answers)
            .filter_map(|(t, a)| match a {
                Err(ReadError::Http(HttpError::Status(r))) if r.status == 500 => {
                    Some(format!("{} ({})", t.name, t.ip))
                }
                _ => None,
            })
            .collect();
        if !broken.is_empty() {
            let one = broken.len() == 1;
            let reason = format!(
                "DATA UNAVAILABLE: {} answer{} 500 after activation: {} cannot unwrap the database \
                 with the activated key. Do not restart or activate anything else; restore \
                 those pods from the database backup or escalate to the vendor",
                broken.join(", "),
                if one { "s" } else { "" },
                if one { "it" } else { "they" },
            );
            return Err(self.fail(name, reason));
        }
        let statuses = self.answered(VerifyActivated, &state.targets, answers)?;
        if let Err(wrong) = logic::check_version(&statuses, expected) {
            let vf = &self.params.common.version_field;
            let reason = logic::render_version_mismatch(vf, expected, &wrong);
            return Err(self.fail(name, reason));
        }
        self.observe("version", expected);
        let detail = format!("{what} ({})", logic::names(&state.targets));
        self.end(name, Outcome::Done, detail);
        Ok(expected)
    }

    // --- reads and records ---

    /// Every target's key status, read in one batch with retries.
    pub(crate) fn read(&mut self, targets: &[Target]) -> Vec<Result<KeyStatus, ReadError>> {
        let pods: Vec<(&str, &str)> = targets
            .iter()
            .map(|t| (t.name.as_str(), t.ip.as_str()))
            .collect();
        reads::statuses(self.host, &pods, &self.params.common, BACKOFF)
    }

    /// Every target's key status, or a failure of `step` naming each pod that gave none.
    pub(crate) fn statuses(
        &mut self,
        step: Step,
        targets: &[Target],
    ) -> Result<Vec<(String, KeyStatus)>, Failure> {
        let answers = self.read(targets);
        self.answered(step, targets, answers)
    }

    fn answered(
        &mut self,
        step: Step,
        targets: &[Target],
        answers: Vec<Result<KeyStatus, ReadError>>,
    ) -> Result<Vec<(String, KeyStatus)>, Failure> {
        let mut statuses = Vec::new();
        let mut unanswered = Vec::new();
        for (t, answer) in targets.iter().zip(answers) {
            match answer {
                Ok(s) => statuses.push((t.name.clone(), s)),
                Err(ReadError::Http(e)) => unanswered.push(format!("{} ({}): {e}", t.name, t.ip)),
                Err(ReadError::Body(m)) => unanswered.push(format!("{}: {m}", t.name)),
            }
        }
        if unanswered.is_empty() {
            return Ok(statuses);
        }
        let why = format!(
            "not every pod answered the key status call: {}",
            unanswered.join("; ")
        );
        Err(self.fail(step.name(), why))
    }

    /// Records the rotation's stage; a failure stops the run before going further.
    fn record(&mut self, step: Step, stage: Stage, hash: &str, from: i64) -> Result<(), Failure> {
        self.journal_rotation(stage, hash, from).map_err(|e| {
            let why = format!(
                "cannot record `{}` in the journal: {e}; stopped before going further",
                stage.name()
            );
            self.fail(step.name(), why)
        })
    }

    fn journal_rotation(&mut self, stage: Stage, hash: &str, from: i64) -> Result<(), String> {
        let value = InProgress {
            stage,
            hash: hash.to_string(),
            from,
        }
        .value();
        self.host.journal_set(journal::ROTATION, &value)
    }

    fn endpoint(&self, ip: &str) -> String {
        reads::endpoint(ip, self.params.common.port)
    }

    fn url(&self, ip: &str, path: &str) -> String {
        reads::url(ip, self.params.common.port, path)
    }
}
