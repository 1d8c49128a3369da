//! The rotation's steps, in the documented order. Each step is announced, acts, and
//! counts as done only once its verification passed; the first failure stops the run
//! and says whether a rerun can safely continue from where the cluster stands.

use crate::host::{
    Failure, Host, HttpError, Level, Method, Mode, Outcome, Report, Request, RestartError, Step,
};
use crate::journal::{self, InProgress, Stage};
use crate::logic::{self, Baseline, Phase, Target};
use crate::params::{self, Params};
use crate::{reads, status};

pub const PREFLIGHT: &str = "preflight";
pub const PROPOSE: &str = "propose";
pub const DISTRIBUTE: &str = "distribute";
pub const VERIFY_DISTRIBUTED: &str = "verify-distributed";
pub const RESTART_LOAD: &str = "restart-load";
pub const VERIFY_LOADED: &str = "verify-loaded";
pub const ACTIVATE: &str = "activate";
pub const RESTART_ACTIVATE: &str = "restart-activate";
pub const VERIFY_ACTIVATED: &str = "verify-activated";

/// Every step, in order.
pub const STEPS: [&str; 9] = [
    PREFLIGHT,
    PROPOSE,
    DISTRIBUTE,
    VERIFY_DISTRIBUTED,
    RESTART_LOAD,
    VERIFY_LOADED,
    ACTIVATE,
    RESTART_ACTIVATE,
    VERIFY_ACTIVATED,
];

const KEY: &str = "/cluster/v1/key";
const PROPOSE_PATH: &str = "/cluster/v1/key/propose";
const FETCH_PATH: &str = "/cluster/v1/key/fetch";
const ACTIVATE_PATH: &str = "/cluster/v1/key/activate";

/// Runs the rotation (or, in plan mode, reads and reports what it would do).
pub fn run(
    host: &mut impl Host,
    mode: Mode,
    params: &[(String, String)],
    cluster: &str,
) -> Result<Report, Failure> {
    let params = Params::parse(params).map_err(|reason| {
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
        cluster: cluster.to_string(),
        steps: Vec::new(),
        activate_sent: false,
        observed: vec![("cluster".to_string(), cluster.to_string())],
        guarded: None,
    };
    let (targets, baseline) = run.preflight()?;
    match mode {
        Mode::Plan => Ok(run.plan(&targets, &baseline)),
        Mode::Apply => run.apply(targets, baseline),
    }
}

struct Run<'h, H: Host> {
    host: &'h mut H,
    params: Params,
    /// The site's cluster name (shown in logs and the confirmation).
    cluster: String,
    steps: Vec<Step>,
    /// From the moment activate may have reached a pod, a failure is no longer safe
    /// to resume: some pods may run a key others cannot load.
    activate_sent: bool,
    /// What the run saw so far, for the hooks: `cluster`, `pods`, `ready`,
    /// `version`, `hash`.
    observed: Vec<(String, String)>,
    /// The step whose `before` hooks allowed it and whose `after` is due.
    guarded: Option<String>,
}

/// Where the proposal comes from.
struct Proposal {
    hash: String,
    proposer: Target,
}

impl<H: Host> Run<'_, H> {
    fn preflight(&mut self) -> Result<(Vec<Target>, Baseline), Failure> {
        let cluster = self.cluster.clone();
        self.begin(
            PREFLIGHT,
            &format!("cluster {cluster}: list the pods and read their key status"),
        )?;
        let pods = self
            .host
            .list_pods()
            .map_err(|e| self.fail(PREFLIGHT, format!("cannot list the pods: {e}")))?;
        if let Some(n) = self.params.expect_pods
            && pods.len() != n
        {
            let mut names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
            names.sort();
            return Err(self.fail(
                PREFLIGHT,
                format!(
                    "expected {n} pods ([cluster] expect_pods), the selector matches {}: {}",
                    pods.len(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
        let targets = logic::ready_targets(&pods).map_err(|reason| self.fail(PREFLIGHT, reason))?;
        let answers = self.read_statuses(&targets);
        let observed =
            logic::observe(&pods, &answers).map_err(|reason| self.fail(PREFLIGHT, reason))?;
        let entries = self.host.journal_entries();
        let (record, warning) = journal::Record::parse(&entries);
        if let Some(w) = warning {
            self.host.log(Level::Warn, &w, &[]);
        }
        if record
            .rotation
            .as_ref()
            .is_some_and(|r| matches!(r.stage, Stage::Activating | Stage::Activated))
        {
            // Activation may have reached the cluster: from here on, no failure is
            // "safe" until the pods show otherwise.
            self.activate_sent = true;
        }
        let baseline = journal::reconcile(&observed, &record, &self.params)
            .map_err(|reason| self.fail(PREFLIGHT, reason))?;
        let (n, names, vf, v) = (
            targets.len(),
            logic::names(&targets),
            self.params.common.version_field.clone(),
            baseline.version,
        );
        let detail = match &baseline.phase {
            Phase::NothingProposed => format!("{n} pods ({names}) at {vf} {v}, no proposal"),
            Phase::Proposed { hash, holders, .. } => format!(
                "{n} pods ({names}) at {vf} {v}; proposal {hash:?} already held by {}: \
                 resuming an interrupted rotation, not proposing again",
                holders.join(", ")
            ),
            Phase::Loaded { hash } => format!(
                "{n} pods ({names}) at {vf} {v} hold proposal {hash:?}, and the journal records \
                 a verified rolling restart since: resuming an interrupted rotation at activate"
            ),
            Phase::Activating { hash, sent, .. } => format!(
                "{n} pods ({names}); the journal records that activate of proposal {hash:?} \
                 from {vf} {v} {}: resuming an interrupted rotation after activate",
                if *sent {
                    "was answered"
                } else {
                    "may have been sent"
                }
            ),
            Phase::Rotated { hash } => format!(
                "{n} pods ({names}) at {vf} {v}: already rotated to {vf} {v} (proposal \
                 {hash:?}); pass --param new_rotation=true to rotate again"
            ),
        };
        if !matches!(
            baseline.phase,
            Phase::NothingProposed | Phase::Rotated { .. }
        ) {
            self.host.log(
                Level::Warn,
                "an earlier rotation was interrupted: this run resumes it",
                &[("cluster", &cluster)],
            );
        }
        self.observe("pods", pods.len());
        self.observe("ready", pods.iter().filter(|p| p.ready).count());
        self.observe("version", baseline.version);
        if let Phase::Proposed { hash, .. }
        | Phase::Loaded { hash }
        | Phase::Activating { hash, .. }
        | Phase::Rotated { hash } = &baseline.phase
        {
            self.observe("hash", hash);
        }
        self.end(PREFLIGHT, Outcome::Done, detail);
        Ok((targets, baseline))
    }

    fn apply(mut self, targets: Vec<Target>, baseline: Baseline) -> Result<Report, Failure> {
        let before = baseline.version;
        let (hash, targets) = match baseline.phase.clone() {
            Phase::Rotated { hash } => return Ok(self.already_rotated(&targets, before, &hash)),
            Phase::Activating {
                hash,
                sent,
                restarted,
            } => return self.resume_activation(targets, before, hash, sent, restarted),
            Phase::Loaded { hash } => {
                let why = format!(
                    "the journal records that every pod held proposal {hash:?} before a \
                     completed rolling restart"
                );
                for step in [PROPOSE, DISTRIBUTE, VERIFY_DISTRIBUTED, RESTART_LOAD] {
                    self.skip(step, why.clone());
                }
                (hash, targets)
            }
            Phase::NothingProposed | Phase::Proposed { .. } => {
                let proposal = self.propose(&targets, &baseline)?;
                self.record(PROPOSE, Stage::Distributing, &proposal.hash, before)?;
                self.distribute(&targets, &baseline, &proposal)?;
                self.verify_hash(VERIFY_DISTRIBUTED, &targets, &proposal.hash, None)?;
                let targets = self.restart(
                    RESTART_LOAD,
                    &format!("load proposal {:?} on every pod", proposal.hash),
                )?;
                (proposal.hash, targets)
            }
        };
        self.activate_from_loaded(targets, hash, before)
    }

    /// From a completed restart after distribution: verify, confirm, activate,
    /// restart, verify.
    fn activate_from_loaded(
        mut self,
        targets: Vec<Target>,
        hash: String,
        before: i64,
    ) -> Result<Report, Failure> {
        self.verify_hash(VERIFY_LOADED, &targets, &hash, Some(before))?;
        self.record(VERIFY_LOADED, Stage::Loaded, &hash, before)?;
        self.confirm_activation(&targets, &hash, before)?;
        // Durable before the request leaves: it may land even if the host dies now.
        self.record(ACTIVATE, Stage::Activating, &hash, before)?;
        if let Err(failure) = self.activate(&targets) {
            if !self.activate_sent {
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
        let targets = self.restart(RESTART_ACTIVATE, "run the activated key on every pod")?;
        self.finish(targets, before, &hash)
    }

    /// The journal says activate may have been sent: restart (unless every pod
    /// already runs the new version), then finish; or, when the pods show that the
    /// activate never landed, go on from `loaded`.
    fn resume_activation(
        mut self,
        targets: Vec<Target>,
        before: i64,
        hash: String,
        sent: bool,
        restarted: bool,
    ) -> Result<Report, Failure> {
        let why = format!(
            "the journal records that activate of proposal {hash:?} {}",
            if sent {
                "was answered"
            } else {
                "may have been sent"
            }
        );
        for step in [
            PROPOSE,
            DISTRIBUTE,
            VERIFY_DISTRIBUTED,
            RESTART_LOAD,
            VERIFY_LOADED,
            ACTIVATE,
        ] {
            self.skip(step, why.clone());
        }
        let targets = if restarted {
            self.skip(
                RESTART_ACTIVATE,
                format!(
                    "every pod already runs {} {}",
                    self.params.common.version_field,
                    before + 1
                ),
            );
            targets
        } else {
            self.restart(RESTART_ACTIVATE, "run the activated key on every pod")?
        };
        if !sent && !restarted {
            let statuses = self.statuses(VERIFY_ACTIVATED, &targets)?;
            if logic::check_version(&statuses, before).is_ok()
                && logic::check_distributed(&statuses, &hash).is_ok()
            {
                self.host.log(
                    Level::Warn,
                    "the earlier activate never reached the cluster: after a restart every pod \
                     still runs the old version and holds the proposal; activating now",
                    &[("hash", &hash)],
                );
                self.activate_sent = false;
                self.steps
                    .retain(|s| ![VERIFY_LOADED, ACTIVATE].contains(&s.name.as_str()));
                return self.activate_from_loaded(targets, hash, before);
            }
        }
        self.finish(targets, before, &hash)
    }

    /// Verifies the activation, records the completed rotation, reminds of DR nodes.
    fn finish(mut self, targets: Vec<Target>, before: i64, hash: &str) -> Result<Report, Failure> {
        let after = self.verify_activated(&targets, before + 1)?;
        if let Err(e) = self
            .host
            .journal_set(journal::DONE, &journal::done_value(after, hash))
            .and_then(|()| self.host.journal_remove(journal::ROTATION))
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
                ("version_before", &before.to_string()),
                ("version_after", &after.to_string()),
                ("pods", &targets.len().to_string()),
            ],
        );
        let cluster = self.cluster.clone();
        self.host.log(
            Level::Warn,
            "DR and cold-standby nodes must now rejoin the cluster",
            &[("cluster", &cluster)],
        );
        Ok(Report {
            steps: self.steps,
            version_before: Some(before),
            version_after: Some(after),
            pods: targets.len() as u32,
        })
    }

    /// The journal records a completed rotation to the version the pods run.
    fn already_rotated(mut self, targets: &[Target], version: i64, hash: &str) -> Report {
        let why = format!(
            "already rotated to {} {version} (proposal {hash:?}); pass --param \
             new_rotation=true to rotate again",
            self.params.common.version_field
        );
        for step in &STEPS[1..] {
            self.skip(step, why.clone());
        }
        Report {
            steps: self.steps,
            version_before: Some(version),
            version_after: Some(version),
            pods: targets.len() as u32,
        }
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
        let versions = format!(
            "{} {before} -> {}",
            self.params.common.version_field,
            before + 1
        );
        let cluster = self.cluster.clone();
        let details = [
            ("cluster", cluster.as_str()),
            ("pods", pods.as_str()),
            ("proposal hash", hash),
            ("versions", versions.as_str()),
        ];
        match self
            .host
            .confirm("activate the new cluster master key", &details)
        {
            Ok(()) => Ok(()),
            Err(why) => {
                self.announce(ACTIVATE, "confirmation");
                Err(self.fail(
                    ACTIVATE,
                    format!("stopped before activate, nothing activated: {why}"),
                ))
            }
        }
    }

    /// Records the rotation's stage; a failure stops the run before going further.
    fn record(&mut self, step: &str, stage: Stage, hash: &str, from: i64) -> Result<(), Failure> {
        match self.journal_rotation(stage, hash, from) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(
                step,
                format!(
                    "cannot record `{}` in the journal: {e}; stopped before going further",
                    stage.name()
                ),
            )),
        }
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

    fn propose(&mut self, targets: &[Target], baseline: &Baseline) -> Result<Proposal, Failure> {
        if let Phase::Proposed { hash, holders, .. } = &baseline.phase {
            let proposer = targets
                .iter()
                .find(|t| holders.contains(&t.name))
                .cloned()
                .expect("a holder is a listed pod");
            self.skip(
                PROPOSE,
                format!(
                    "proposal {hash:?} already held by {}: not proposing again; distributing from {} ({})",
                    holders.join(", "),
                    proposer.name,
                    proposer.ip
                ),
            );
            return Ok(Proposal {
                hash: hash.clone(),
                proposer,
            });
        }

        let proposer = targets[0].clone();
        self.begin(
            PROPOSE,
            &format!("propose on {} ({})", proposer.name, proposer.ip),
        )?;
        let url = self.url(&proposer.ip, PROPOSE_PATH);
        self.host.log(
            Level::Info,
            "proposing a new key",
            &[("pod", &proposer.name), ("ip", &proposer.ip)],
        );
        // Never retried: a second propose would replace the first one's proposal.
        if let Err(e) = self.host.post(&url, None) {
            return Err(self.fail(
                PROPOSE,
                format!("propose on {} ({}) failed: {e}", proposer.name, proposer.ip),
            ));
        }
        let url = self.url(&proposer.ip, KEY);
        let answer = reads::get(self.host, &url, self.params.common.read_timeout);
        let status = answer
            .map_err(|e| e.to_string())
            .and_then(|r| status::parse(&proposer.name, &r.body, &self.params))
            .map_err(|why| {
                self.fail(
                    PROPOSE,
                    format!(
                        "cannot read the proposal's hash from {}: {why}",
                        proposer.name
                    ),
                )
            })?;
        let Some(hash) = status.hash else {
            return Err(self.fail(
                PROPOSE,
                format!(
                    "{} reports no {} after propose",
                    proposer.name, self.params.common.hash_field
                ),
            ));
        };
        self.host.log(
            Level::Info,
            "proposed",
            &[("pod", &proposer.name), ("hash", &hash)],
        );
        self.observe("hash", &hash);
        self.end(
            PROPOSE,
            Outcome::Done,
            format!("proposal {hash:?} on {} ({})", proposer.name, proposer.ip),
        );
        Ok(Proposal { hash, proposer })
    }

    /// The pods that still have to fetch the proposal.
    fn fetchers(targets: &[Target], baseline: &Baseline, proposer: &Target) -> Vec<Target> {
        let holders: &[String] = match &baseline.phase {
            Phase::Proposed { holders, .. } => holders,
            _ => &[],
        };
        targets
            .iter()
            .filter(|t| t.name != proposer.name && !holders.contains(&t.name))
            .cloned()
            .collect()
    }

    fn distribute(
        &mut self,
        targets: &[Target],
        baseline: &Baseline,
        proposal: &Proposal,
    ) -> Result<(), Failure> {
        let fetchers = Self::fetchers(targets, baseline, &proposal.proposer);
        let source = self.endpoint(&proposal.proposer.ip);
        if fetchers.is_empty() {
            self.skip(
                DISTRIBUTE,
                format!("every pod already holds proposal {:?}", proposal.hash),
            );
            return Ok(());
        }
        self.begin(
            DISTRIBUTE,
            &format!("fetch on {} from {source}", logic::names(&fetchers)),
        )?;
        let body = serde_json::json!({ "target": source }).to_string();
        let requests: Vec<Request> = fetchers
            .iter()
            .map(|t| Request {
                method: Method::Post,
                url: self.url(&t.ip, FETCH_PATH),
                body: Some(body.clone()),
            })
            .collect();
        // One fan-out, never retried: the verification below tells what happened.
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
            return Err(self.fail(
                DISTRIBUTE,
                format!("fetch from {source} failed on {}", failed.join("; ")),
            ));
        }
        self.end(
            DISTRIBUTE,
            Outcome::Done,
            format!(
                "{} fetched proposal {:?} from {source}",
                logic::names(&fetchers),
                proposal.hash
            ),
        );
        Ok(())
    }

    /// Every pod holds `hash` (and, when given, still reports `version`).
    fn verify_hash(
        &mut self,
        step: &str,
        targets: &[Target],
        hash: &str,
        version: Option<i64>,
    ) -> Result<(), Failure> {
        let what = match version {
            Some(v) => format!(
                "every pod reports {} {hash:?} and {} {v}",
                self.params.common.hash_field, self.params.common.version_field
            ),
            None => format!(
                "every pod reports {} {hash:?}",
                self.params.common.hash_field
            ),
        };
        self.begin(step, &what)?;
        let statuses = self.statuses(step, targets)?;
        if let Err(diverging) = logic::check_distributed(&statuses, hash) {
            let mut reason = diverging.render(&self.params.common.hash_field, hash);
            if step == VERIFY_DISTRIBUTED {
                reason.push_str("; stopped before any restart");
            }
            return Err(self.fail(step, reason));
        }
        if let Some(v) = version
            && let Err(wrong) = logic::check_version(&statuses, v)
        {
            return Err(self.fail(
                step,
                logic::render_version_mismatch(&self.params.common.version_field, v, &wrong),
            ));
        }
        self.end(
            step,
            Outcome::Done,
            format!("{} ({})", what, logic::names(targets)),
        );
        Ok(())
    }

    /// A rolling restart, then the pods listed again (their IPs changed).
    fn restart(&mut self, step: &str, why: &str) -> Result<Vec<Target>, Failure> {
        self.begin(step, &format!("rolling restart: {why}"))?;
        if let Err(e) = self.host.rolling_restart() {
            if step == RESTART_ACTIVATE && matches!(e, RestartError::Denied(_)) {
                // It never started, and every pod loaded the activated key before
                // activate (verified): nothing is at risk, and the journal says
                // `activated`, so a rerun restarts and finishes.
                self.activate_sent = false;
                return Err(self.fail(
                    step,
                    format!(
                        "the rolling restart was not started ({e}); the key is activated and \
                         every pod loaded it: run again to restart and finish"
                    ),
                ));
            }
            return Err(self.fail(step, format!("the rolling restart failed: {e}")));
        }
        let pods = self
            .host
            .list_pods()
            .map_err(|e| self.fail(step, format!("cannot list the pods after the restart: {e}")))?;
        let targets = logic::ready_targets(&pods)
            .map_err(|reason| self.fail(step, format!("after the restart, {reason}")))?;
        for t in &targets {
            self.host.log(
                Level::Debug,
                "pod after restart",
                &[("pod", &t.name), ("ip", &t.ip)],
            );
        }
        self.observe("pods", pods.len());
        self.observe("ready", pods.iter().filter(|p| p.ready).count());
        let listed: Vec<String> = targets
            .iter()
            .map(|t| format!("{} ({})", t.name, t.ip))
            .collect();
        self.end(
            step,
            Outcome::Done,
            format!("{} pods Ready: {}", targets.len(), listed.join(", ")),
        );
        Ok(targets)
    }

    fn activate(&mut self, targets: &[Target]) -> Result<(), Failure> {
        let pod = &targets[0];
        self.begin(ACTIVATE, &format!("activate on {} ({})", pod.name, pod.ip))?;
        self.host.log(
            Level::Warn,
            "activating the new key",
            &[("pod", &pod.name), ("ip", &pod.ip)],
        );
        let url = self.url(&pod.ip, ACTIVATE_PATH);
        // Never retried. Unless the request provably never left (denied by policy, or
        // no TLS session), assume it may have been applied.
        self.activate_sent = true;
        if let Err(e) = self.host.post(&url, None) {
            self.activate_sent = !matches!(e, HttpError::Denied(_) | HttpError::Tls(_));
            return Err(self.fail(
                ACTIVATE,
                format!("activate on {} ({}) failed: {e}", pod.name, pod.ip),
            ));
        }
        self.end(
            ACTIVATE,
            Outcome::Done,
            format!("activated on {} ({})", pod.name, pod.ip),
        );
        Ok(())
    }

    fn verify_activated(&mut self, targets: &[Target], expected: i64) -> Result<i64, Failure> {
        let field = self.params.common.version_field.clone();
        self.begin(
            VERIFY_ACTIVATED,
            &format!("every pod reports {field} {expected}"),
        )?;
        let urls: Vec<String> = targets.iter().map(|t| self.url(&t.ip, KEY)).collect();
        let answers = reads::get_all(self.host, &urls, self.params.common.read_timeout);
        let broken: Vec<String> = targets
            .iter()
            .zip(&answers)
            .filter_map(|(t, a)| match a {
                Err(HttpError::Status(r)) if r.status == 500 => {
                    Some(format!("{} ({})", t.name, t.ip))
                }
                _ => None,
            })
            .collect();
        if !broken.is_empty() {
            let reason = format!(
                "DATA UNAVAILABLE: {} answer{} 500 after activation: {} cannot unwrap the database \
                 with the activated key. Do not restart or activate anything else; restore \
                 those pods from the database backup or escalate to the vendor",
                broken.join(", "),
                if broken.len() == 1 { "s" } else { "" },
                if broken.len() == 1 { "it" } else { "they" },
            );
            return Err(self.fail(VERIFY_ACTIVATED, reason));
        }
        let statuses = self.parse_statuses(VERIFY_ACTIVATED, targets, answers)?;
        if let Err(wrong) = logic::check_version(&statuses, expected) {
            return Err(self.fail(
                VERIFY_ACTIVATED,
                logic::render_version_mismatch(&field, expected, &wrong),
            ));
        }
        self.observe("version", expected);
        self.end(
            VERIFY_ACTIVATED,
            Outcome::Done,
            format!(
                "every pod reports {field} {expected} ({})",
                logic::names(targets)
            ),
        );
        Ok(expected)
    }

    /// Plan mode: the steps after preflight, with the pods each would touch.
    fn plan(mut self, targets: &[Target], baseline: &Baseline) -> Report {
        if let Some(report) = self.plan_resumed(targets, baseline) {
            return report;
        }
        let (hash_f, version_f) = (
            self.params.common.hash_field.clone(),
            self.params.common.version_field.clone(),
        );
        let all = logic::names(targets);
        let first = &targets[0];
        let (propose, proposer, hash) = match &baseline.phase {
            Phase::NothingProposed => (
                (
                    Outcome::Planned,
                    format!("propose on {} ({})", first.name, first.ip),
                ),
                first.clone(),
                "the new proposal".to_string(),
            ),
            Phase::Proposed { hash, holders, .. } => {
                let proposer = targets
                    .iter()
                    .find(|t| holders.contains(&t.name))
                    .cloned()
                    .expect("a holder is listed");
                (
                    (
                        Outcome::Skipped,
                        format!(
                            "proposal {hash:?} already held by {}: not proposing again",
                            holders.join(", ")
                        ),
                    ),
                    proposer,
                    format!("{hash:?}"),
                )
            }
            _ => unreachable!("plan_resumed handles the phases only the journal shows"),
        };
        let fetchers = Self::fetchers(targets, baseline, &proposer);
        let source = self.endpoint(&proposer.ip);
        let distribute = if fetchers.is_empty() {
            (
                Outcome::Skipped,
                format!("every pod already holds proposal {hash}"),
            )
        } else {
            (
                Outcome::Planned,
                format!("fetch on {} from {source}", logic::names(&fetchers)),
            )
        };
        let v = baseline.version;
        let planned = [
            (PROPOSE, propose),
            (DISTRIBUTE, distribute),
            (
                VERIFY_DISTRIBUTED,
                (
                    Outcome::Planned,
                    format!("check that {all} hold {hash} in {hash_f}"),
                ),
            ),
            (
                RESTART_LOAD,
                (
                    Outcome::Planned,
                    format!("rolling restart of {all} to load the proposal; list the pods again"),
                ),
            ),
            (
                VERIFY_LOADED,
                (
                    Outcome::Planned,
                    format!(
                        "check that every pod still holds {hash} in {hash_f} and reports {version_f} {v}"
                    ),
                ),
            ),
            (
                ACTIVATE,
                (
                    Outcome::Planned,
                    format!(
                        "activate on the first pod by name after the restart (now {})",
                        first.name
                    ),
                ),
            ),
            (
                RESTART_ACTIVATE,
                (
                    Outcome::Planned,
                    format!("rolling restart of {all} to run the new key; list the pods again"),
                ),
            ),
            (
                VERIFY_ACTIVATED,
                (
                    Outcome::Planned,
                    format!("check that every pod reports {version_f} {}", v + 1),
                ),
            ),
        ];
        for (name, (outcome, detail)) in planned {
            self.announce(name, &detail);
            self.end(name, outcome, detail);
        }
        Report {
            steps: self.steps,
            version_before: Some(v),
            version_after: None,
            pods: targets.len() as u32,
        }
    }

    /// Plan mode from a phase only the journal shows (loaded, activating, rotated):
    /// the steps already behind are skipped; `None` for the other phases.
    fn plan_resumed(&mut self, targets: &[Target], baseline: &Baseline) -> Option<Report> {
        let v = baseline.version;
        let vf = self.params.common.version_field.clone();
        let all = logic::names(targets);
        let (behind, why, version_after): (&[&str], String, Option<i64>) = match &baseline.phase {
            Phase::Rotated { hash } => (
                &STEPS[1..],
                format!(
                    "already rotated to {vf} {v} (proposal {hash:?}); pass --param \
                     new_rotation=true to rotate again"
                ),
                Some(v),
            ),
            Phase::Loaded { hash } => (
                &[PROPOSE, DISTRIBUTE, VERIFY_DISTRIBUTED, RESTART_LOAD],
                format!(
                    "the journal records that every pod held proposal {hash:?} before a \
                     completed rolling restart"
                ),
                None,
            ),
            Phase::Activating {
                hash, restarted, ..
            } => {
                let behind: &[&str] = if *restarted {
                    &STEPS[1..8]
                } else {
                    &STEPS[1..7]
                };
                (
                    behind,
                    format!(
                        "the journal records that activate of proposal {hash:?} may have been sent"
                    ),
                    None,
                )
            }
            Phase::NothingProposed | Phase::Proposed { .. } => return None,
        };
        for step in &STEPS[1..] {
            if behind.contains(step) {
                self.skip(step, why.clone());
                continue;
            }
            let detail = match *step {
                VERIFY_LOADED => {
                    format!("check that every pod still holds the proposal and reports {vf} {v}")
                }
                ACTIVATE => format!(
                    "ask for confirmation, then activate on the first pod by name (now {})",
                    targets[0].name
                ),
                RESTART_ACTIVATE => {
                    format!("rolling restart of {all} to run the new key; list the pods again")
                }
                _ => format!("check that every pod reports {vf} {}", v + 1),
            };
            self.announce(step, &detail);
            self.end(step, Outcome::Planned, detail);
        }
        Some(Report {
            steps: std::mem::take(&mut self.steps),
            version_before: Some(v),
            version_after,
            pods: targets.len() as u32,
        })
    }

    // --- reads ---

    /// Each target's key status (or why there is none), read in one batch with retry.
    fn read_statuses(
        &mut self,
        targets: &[Target],
    ) -> Vec<(String, Result<status::KeyStatus, String>)> {
        let urls: Vec<String> = targets.iter().map(|t| self.url(&t.ip, KEY)).collect();
        let answers = reads::get_all(self.host, &urls, self.params.common.read_timeout);
        targets
            .iter()
            .zip(answers)
            .map(|(t, answer)| {
                let parsed = answer
                    .map_err(|e| e.to_string())
                    .and_then(|r| status::parse(&t.name, &r.body, &self.params));
                if let Ok(s) = &parsed {
                    self.log_status(t, s);
                }
                (t.name.clone(), parsed)
            })
            .collect()
    }

    /// Every target's key status, or a failure naming each pod that gave none.
    fn statuses(
        &mut self,
        step: &str,
        targets: &[Target],
    ) -> Result<Vec<(String, status::KeyStatus)>, Failure> {
        let urls: Vec<String> = targets.iter().map(|t| self.url(&t.ip, KEY)).collect();
        let answers = reads::get_all(self.host, &urls, self.params.common.read_timeout);
        self.parse_statuses(step, targets, answers)
    }

    fn parse_statuses(
        &mut self,
        step: &str,
        targets: &[Target],
        answers: Vec<Result<crate::host::Response, HttpError>>,
    ) -> Result<Vec<(String, status::KeyStatus)>, Failure> {
        let mut statuses = Vec::new();
        let mut unanswered = Vec::new();
        for (t, answer) in targets.iter().zip(answers) {
            match answer
                .map_err(|e| format!("{} ({}): {e}", t.name, t.ip))
                .and_then(|r| status::parse(&t.name, &r.body, &self.params))
            {
                Ok(s) => {
                    self.log_status(t, &s);
                    statuses.push((t.name.clone(), s));
                }
                Err(why) => unanswered.push(why),
            }
        }
        if unanswered.is_empty() {
            Ok(statuses)
        } else {
            Err(self.fail(
                step,
                format!(
                    "not every pod answered the key status call: {}",
                    unanswered.join("; ")
                ),
            ))
        }
    }

    fn log_status(&mut self, t: &Target, s: &status::KeyStatus) {
        let hash = s.hash.as_deref().unwrap_or("none");
        self.host.log(
            Level::Debug,
            "key status",
            &[
                ("pod", &t.name),
                ("ip", &t.ip),
                ("version", &s.version.to_string()),
                ("hash", hash),
            ],
        );
    }

    // --- plumbing ---

    /// `<ip>:<port>`, bracketing an IPv6 address.
    fn endpoint(&self, ip: &str) -> String {
        if ip.contains(':') {
            format!("[{ip}]:{}", self.params.common.port)
        } else {
            format!("{ip}:{}", self.params.common.port)
        }
    }

    fn url(&self, ip: &str, path: &str) -> String {
        format!("https://{}{path}", self.endpoint(ip))
    }

    /// Shows the step as begun, without asking the hooks (skipped and planned steps).
    fn announce(&mut self, name: &str, detail: &str) {
        self.host.step_begin(name, detail);
    }

    /// A step that is carried out begins: shown, then the site's hooks may veto it,
    /// before it has changed anything.
    fn begin(&mut self, name: &str, detail: &str) -> Result<(), Failure> {
        self.announce(name, detail);
        let observed = self.observed.clone();
        let pairs: Vec<(&str, &str)> = observed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match self.host.hook_before(name, &pairs) {
            Ok(()) => {
                self.guarded = Some(name.to_string());
                Ok(())
            }
            Err(reason) => Err(self.fail(
                name,
                format!("vetoed by a site hook before {name}, nothing done by it: {reason}"),
            )),
        }
    }

    /// Sets what the rotation observed (passed to the hooks).
    fn observe(&mut self, key: &str, value: impl ToString) {
        let value = value.to_string();
        match self.observed.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.observed.push((key.to_string(), value)),
        }
    }

    /// The hooks' `after` for the step that passed their `before`.
    fn after_hooks(&mut self, name: &str, outcome: Outcome) {
        if self.guarded.as_deref() != Some(name) {
            return;
        }
        self.guarded = None;
        let observed = self.observed.clone();
        let pairs: Vec<(&str, &str)> = observed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.host.hook_after(name, outcome, &pairs);
    }

    fn end(&mut self, name: &str, outcome: Outcome, detail: String) {
        self.host.step_end(name, outcome, &detail);
        self.after_hooks(name, outcome);
        self.steps.push(Step {
            name: name.into(),
            outcome,
            detail,
        });
    }

    /// A step the cluster is already past.
    fn skip(&mut self, name: &str, detail: String) {
        self.announce(name, &detail);
        self.end(name, Outcome::Skipped, detail);
    }

    fn fail(&mut self, step: &str, reason: String) -> Failure {
        let safe = !self.activate_sent;
        self.host.step_end(step, Outcome::Failed, &reason);
        self.after_hooks(step, Outcome::Failed);
        self.host.log(
            Level::Error,
            &reason,
            &[
                ("step", step),
                ("safe_to_resume", if safe { "true" } else { "false" }),
            ],
        );
        Failure {
            step: step.into(),
            reason,
            safe_to_resume: safe,
            steps: self.steps.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fake::Fake;
    use crate::host::{Response, RestartError};
    use guest_kit::types::owned_pairs as kv;

    fn apply(fake: &mut Fake) -> Result<Report, Failure> {
        run(fake, Mode::Apply, &[], "test")
    }

    fn status(code: u16) -> HttpError {
        HttpError::Status(Response {
            status: code,
            body: "unavailable".into(),
        })
    }

    fn names(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn a_veto_before_propose_stops_safely_without_proposing() {
        let mut fake = Fake::new(3);
        fake.veto = Some((PROPOSE.into(), "quorum: 3 Ready, 5 required".into()));
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, PROPOSE);
        assert!(
            failure.reason.contains("quorum: 3 Ready, 5 required"),
            "{}",
            failure.reason
        );
        assert!(failure.safe_to_resume);
        assert!(fake.mutations.is_empty(), "{:?}", fake.mutations);
        // The vetoed step gets no `after`.
        assert_eq!(
            fake.hook_calls.last().unwrap(),
            &format!("before {PROPOSE} cluster=test pods=3 ready=3 version=1")
        );
    }

    #[test]
    fn a_veto_before_activate_sends_no_activate_and_is_safe() {
        let mut fake = Fake::new(3);
        fake.veto = Some((ACTIVATE.into(), "change window closed".into()));
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, ACTIVATE);
        assert!(failure.safe_to_resume);
        assert!(
            !fake.mutations.iter().any(|m| m.starts_with("activate")),
            "{:?}",
            fake.mutations
        );
    }

    #[test]
    fn hooks_are_called_before_and_after_every_step_in_order() {
        let mut fake = Fake::new(3);
        apply(&mut fake).unwrap();
        let calls: Vec<String> = fake
            .hook_calls
            .iter()
            .map(|c| c.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect();
        let mut expected = Vec::new();
        for step in STEPS {
            expected.push(format!("before {step}"));
            expected.push(format!("after {step}"));
        }
        assert_eq!(calls, expected);
        let last = fake.hook_calls.last().unwrap();
        assert_eq!(last, &format!("after {VERIFY_ACTIVATED} Done"));
    }

    #[test]
    fn rotates_in_the_documented_order() {
        let mut fake = Fake::new(3);
        let report = apply(&mut fake).unwrap();
        assert_eq!(names(&report.steps), STEPS);
        assert!(
            report.steps.iter().all(|s| s.outcome == Outcome::Done),
            "{report:?}"
        );
        assert_eq!(
            (report.version_before, report.version_after, report.pods),
            (Some(1), Some(2), 3)
        );
        assert_eq!(
            fake.mutations,
            [
                "propose sdkms-0",
                "fetch sdkms-1 from 10.0.0.1:4444",
                "fetch sdkms-2 from 10.0.0.1:4444",
                "restart",
                "activate sdkms-0",
                "restart",
            ]
        );
        assert!(fake.pods.iter().all(|p| p.version == 2 && !p.broken));
        // Every step that began also ended, in order.
        let expected: Vec<String> = STEPS
            .iter()
            .flat_map(|s| [format!("begin {s}"), format!("end {s} Done")])
            .collect();
        assert_eq!(fake.progress, expected);
    }

    #[test]
    fn plan_reads_only_and_names_the_pods() {
        let mut fake = Fake::new(3);
        let report = run(&mut fake, Mode::Plan, &[], "test").unwrap();
        assert!(fake.mutations.is_empty(), "{:?}", fake.mutations);
        assert!(fake.requests.iter().all(|r| r.starts_with("GET ")));
        assert_eq!(names(&report.steps), STEPS);
        assert_eq!(report.steps[0].outcome, Outcome::Done);
        assert!(
            report.steps[1..]
                .iter()
                .all(|s| s.outcome == Outcome::Planned),
            "{report:?}"
        );
        assert_eq!(report.steps[1].detail, "propose on sdkms-0 (10.0.0.1)");
        assert_eq!(
            report.steps[2].detail,
            "fetch on sdkms-1, sdkms-2 from 10.0.0.1:4444"
        );
        assert_eq!(
            (report.version_before, report.version_after, report.pods),
            (Some(1), None, 3)
        );
    }

    #[test]
    fn resumes_a_partly_distributed_proposal_without_proposing() {
        let mut fake = Fake::new(3);
        fake.proposal = Some("hash-old".into());
        fake.pods[1].hash = Some("hash-old".into());
        fake.pods[2].hash = Some("hash-old".into());
        let report = apply(&mut fake).unwrap();
        assert_eq!(report.steps[1].outcome, Outcome::Skipped);
        assert_eq!(
            fake.mutations,
            [
                "fetch sdkms-0 from 10.0.0.2:4444",
                "restart",
                "activate sdkms-0",
                "restart"
            ]
        );
        assert_eq!(report.version_after, Some(2));
    }

    #[test]
    fn resumes_a_fully_distributed_proposal() {
        let mut fake = Fake::new(2);
        fake.proposal = Some("h".into());
        for pod in &mut fake.pods {
            pod.hash = Some("h".into());
        }
        let report = apply(&mut fake).unwrap();
        assert_eq!(report.steps[1].outcome, Outcome::Skipped);
        assert_eq!(report.steps[2].outcome, Outcome::Skipped);
        assert_eq!(fake.mutations, ["restart", "activate sdkms-0", "restart"]);
    }

    #[test]
    fn refuses_differing_proposals_before_changing_anything() {
        let mut fake = Fake::new(3);
        fake.pods[0].hash = Some("a".into());
        fake.pods[2].hash = Some("b".into());
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, PREFLIGHT);
        assert!(
            failure.reason.contains(r#""a" on sdkms-0; "b" on sdkms-2"#),
            "{}",
            failure.reason
        );
        assert!(failure.safe_to_resume);
        assert!(fake.mutations.is_empty());
    }

    #[test]
    fn diverging_hash_stops_before_any_restart() {
        let mut fake = Fake::new(3);
        fake.fetch_wrong = Some("sdkms-2".into());
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, VERIFY_DISTRIBUTED);
        assert!(
            failure.reason.contains(
                r#"sdkms-2 holds "hash-wrong", expected "hash-1" (held by sdkms-0, sdkms-1)"#
            ),
            "{}",
            failure.reason
        );
        assert!(failure.safe_to_resume);
        assert!(!fake.mutations.contains(&"restart".to_string()));
        assert_eq!(names(&failure.steps), [PREFLIGHT, PROPOSE, DISTRIBUTE]);
    }

    #[test]
    fn failed_fetch_is_named_and_not_retried() {
        let mut fake = Fake::new(3);
        fake.fault("sdkms-1", Method::Post, FETCH_PATH, status(500), 1);
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, DISTRIBUTE);
        assert!(
            failure.reason.contains("sdkms-1 (10.0.0.2): status 500"),
            "{}",
            failure.reason
        );
        assert!(!failure.reason.contains("sdkms-2"), "{}", failure.reason);
        let fetches = fake
            .requests
            .iter()
            .filter(|r| r.ends_with("/fetch"))
            .count();
        assert_eq!(fetches, 2);
        assert!(failure.safe_to_resume);
    }

    #[test]
    fn propose_is_never_retried() {
        let mut fake = Fake::new(3);
        fake.fault("sdkms-0", Method::Post, PROPOSE_PATH, HttpError::Timeout, 1);
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, PROPOSE);
        assert!(failure.safe_to_resume);
        assert_eq!(
            fake.requests
                .iter()
                .filter(|r| r.ends_with("/propose"))
                .count(),
            1
        );
    }

    #[test]
    fn reads_retry_503_with_doubling_backoff() {
        let mut fake = Fake::new(3);
        fake.fault("sdkms-1", Method::Get, KEY, status(503), 3);
        fake.fault(
            "sdkms-2",
            Method::Get,
            KEY,
            HttpError::Connect("refused".into()),
            1,
        );
        apply(&mut fake).unwrap();
        let ms: Vec<u128> = fake.sleeps.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [200, 400, 800]);
        // Only the failed entries are read again.
        let preflight_reads: Vec<&String> = fake
            .requests
            .iter()
            .take_while(|r| r.starts_with("GET"))
            .collect();
        assert_eq!(preflight_reads.len(), 3 + 2 + 1 + 1);
    }

    #[test]
    fn reads_give_up_within_the_budget_and_others_are_not_retried() {
        let mut fake = Fake::new(2);
        fake.fault("sdkms-1", Method::Get, KEY, status(503), usize::MAX);
        let failure = run(
            &mut fake,
            Mode::Apply,
            &kv(&[("read_timeout_secs", "2")]),
            "t",
        )
        .unwrap_err();
        assert_eq!(failure.step, PREFLIGHT);
        assert!(
            failure.reason.contains("sdkms-1: status 503"),
            "{}",
            failure.reason
        );
        assert_eq!(fake.now, Duration::from_secs(2));
        assert!(fake.sleeps.iter().all(|d| *d <= reads::MAX_DELAY));

        let mut fake = Fake::new(2);
        fake.fault("sdkms-1", Method::Get, KEY, status(500), 1);
        let failure = apply(&mut fake).unwrap_err();
        assert!(
            failure.reason.contains("sdkms-1: status 500"),
            "{}",
            failure.reason
        );
        assert!(fake.sleeps.is_empty());
    }

    #[test]
    fn failure_after_activate_is_not_safe_to_resume() {
        let mut fake = Fake::new(3);
        fake.restart_error = Some((2, RestartError::Failed("exit 1".into())));
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, RESTART_ACTIVATE);
        assert!(!failure.safe_to_resume);
        assert!(failure.reason.contains("exit 1"));
    }

    #[test]
    fn failure_before_activate_is_safe_to_resume() {
        let mut fake = Fake::new(3);
        fake.restart_error = Some((1, RestartError::Timeout("pods not ready".into())));
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, RESTART_LOAD);
        assert!(failure.safe_to_resume);
        assert!(!fake.mutations.iter().any(|m| m.starts_with("activate")));
    }

    #[test]
    fn activate_denied_was_never_sent() {
        let mut fake = Fake::new(2);
        fake.fault(
            "sdkms-0",
            Method::Post,
            ACTIVATE_PATH,
            HttpError::Denied("path".into()),
            1,
        );
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, ACTIVATE);
        assert!(failure.safe_to_resume);

        let mut fake = Fake::new(2);
        fake.fault(
            "sdkms-0",
            Method::Post,
            ACTIVATE_PATH,
            HttpError::Timeout,
            1,
        );
        let failure = apply(&mut fake).unwrap_err();
        assert!(
            !failure.safe_to_resume,
            "a timed-out activate may have been applied"
        );
        assert_eq!(
            fake.requests
                .iter()
                .filter(|r| r.ends_with("/activate"))
                .count(),
            1
        );
    }

    #[test]
    fn a_pod_that_cannot_unwrap_after_activation_is_reported_loudly() {
        let mut fake = Fake::new(3);
        fake.load_fails = Some("sdkms-1".into());
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, VERIFY_ACTIVATED);
        assert!(
            failure.reason.starts_with("DATA UNAVAILABLE: sdkms-1 ("),
            "{}",
            failure.reason
        );
        assert!(
            failure.reason.contains("cannot unwrap the database"),
            "{}",
            failure.reason
        );
        assert!(!failure.safe_to_resume);
    }

    #[test]
    fn site_parameters_reach_the_requests() {
        let mut fake = Fake::new(2);
        let report = run(&mut fake, Mode::Apply, &kv(&[("port", "8443")]), "t").unwrap();
        assert_eq!(report.version_after, Some(2));
        assert!(
            fake.mutations
                .contains(&"fetch sdkms-1 from 10.0.0.1:8443".to_string())
        );
    }

    #[test]
    fn bad_parameters_fail_at_params_before_any_call() {
        let mut fake = Fake::new(2);
        let failure = run(&mut fake, Mode::Apply, &kv(&[("hash", "x")]), "t").unwrap_err();
        assert_eq!(failure.step, params::STEP);
        assert!(failure.reason.contains("`hash`"));
        assert!(fake.requests.is_empty());
    }

    #[test]
    fn a_rerun_after_success_rotates_again_only_when_asked() {
        let mut fake = Fake::new(2);
        apply(&mut fake).unwrap();
        assert_eq!(
            fake.journal.get(journal::DONE).map(String::as_str),
            Some("2 hash-1")
        );
        assert!(!fake.journal.contains_key(journal::ROTATION));
        let before = fake.mutations.len();
        let report = apply(&mut fake).unwrap();
        assert_eq!(fake.mutations.len(), before, "nothing done again");
        assert_eq!(
            (report.version_before, report.version_after),
            (Some(2), Some(2))
        );
        assert!(
            report.steps[1..]
                .iter()
                .all(|s| s.outcome == Outcome::Skipped)
        );
        assert!(
            report.steps[1]
                .detail
                .contains("already rotated to version 2")
        );

        let again = kv(&[("new_rotation", "true")]);
        let report = run(&mut fake, Mode::Apply, &again, "t").unwrap();
        assert_eq!(report.version_after, Some(3));
    }

    #[test]
    fn without_confirmation_it_stops_before_activate_and_a_rerun_activates() {
        let mut fake = Fake::new(3);
        fake.confirm_answer = Err("no terminal and no --yes".into());
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, ACTIVATE);
        assert!(failure.safe_to_resume);
        assert!(failure.reason.contains("no --yes"), "{}", failure.reason);
        assert!(!fake.mutations.iter().any(|m| m.starts_with("activate")));
        assert_eq!(fake.asked, ["activate the new cluster master key"]);
        assert_eq!(
            fake.journal.get(journal::ROTATION).map(String::as_str),
            Some("loaded 1 hash-1")
        );

        fake.confirm_answer = Ok(());
        let report = apply(&mut fake).unwrap();
        assert_eq!(report.version_after, Some(2));
        let outcomes: Vec<Outcome> = report.steps.iter().map(|s| s.outcome).collect();
        use Outcome::*;
        assert_eq!(
            outcomes,
            [
                Done, Skipped, Skipped, Skipped, Skipped, Done, Done, Done, Done
            ]
        );
        // One restart after distribution (first run), one after activation.
        assert_eq!(fake.mutations.iter().filter(|m| *m == "restart").count(), 2);
        assert!(fake.pods.iter().all(|p| p.version == 2 && !p.broken));
    }

    #[test]
    fn a_failure_after_activate_is_resumed_without_activating_again() {
        let mut fake = Fake::new(3);
        fake.restart_error = Some((2, RestartError::Failed("exit 1".into())));
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, RESTART_ACTIVATE);
        assert!(!failure.safe_to_resume);
        assert_eq!(
            fake.journal.get(journal::ROTATION).map(String::as_str),
            Some("activated 1 hash-1")
        );
        // The pods report version 1 and the hash: alone, that looks like "loaded".
        assert!(fake.pods.iter().all(|p| p.version == 1));

        fake.restart_error = None;
        let report = apply(&mut fake).unwrap();
        assert_eq!(report.version_after, Some(2));
        assert_eq!(
            fake.mutations
                .iter()
                .filter(|m| m.starts_with("activate"))
                .count(),
            1
        );
        assert!(fake.pods.iter().all(|p| p.version == 2 && !p.broken));
    }

    #[test]
    fn an_activate_that_never_landed_is_sent_after_a_restart() {
        let mut fake = Fake::new(2);
        fake.confirm_answer = Err("declined".into());
        apply(&mut fake).unwrap_err();
        // As if the host died after recording `activating`, before the request left.
        fake.journal
            .insert(journal::ROTATION.into(), "activating 1 hash-1".into());
        fake.confirm_answer = Ok(());
        let report = apply(&mut fake).unwrap();
        assert_eq!(report.version_after, Some(2));
        assert_eq!(
            fake.mutations,
            [
                "propose sdkms-0",
                "fetch sdkms-1 from 10.0.0.1:4444",
                "restart",
                "restart",
                "activate sdkms-0",
                "restart"
            ]
        );
        assert!(fake.pods.iter().all(|p| p.version == 2 && !p.broken));
    }

    #[test]
    fn a_journal_that_cannot_be_written_stops_the_run_safely() {
        let mut fake = Fake::new(2);
        fake.journal_broken = Some("disk full".into());
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, PROPOSE);
        assert!(failure.reason.contains("disk full"), "{}", failure.reason);
        assert!(failure.safe_to_resume);
        assert_eq!(fake.mutations, ["propose sdkms-0"]);
        // A rerun resumes from the pods' state.
        fake.journal_broken = None;
        apply(&mut fake).unwrap();
        assert_eq!(
            fake.mutations
                .iter()
                .filter(|m| m.starts_with("propose"))
                .count(),
            1
        );
    }

    #[test]
    fn plan_after_an_interruption_starts_where_the_journal_says() {
        let mut fake = Fake::new(2);
        fake.confirm_answer = Err("declined".into());
        apply(&mut fake).unwrap_err();
        let mutations = fake.mutations.clone();
        let report = run(&mut fake, Mode::Plan, &[], "t").unwrap();
        assert_eq!(fake.mutations, mutations);
        let outcomes: Vec<Outcome> = report.steps.iter().map(|s| s.outcome).collect();
        use Outcome::*;
        assert_eq!(
            outcomes,
            [
                Done, Skipped, Skipped, Skipped, Skipped, Planned, Planned, Planned, Planned
            ]
        );
    }

    #[test]
    fn preflight_stops_when_the_pod_count_is_not_the_expected_one() {
        let mut fake = Fake::new(2);
        let failure = run(&mut fake, Mode::Apply, &kv(&[("expect_pods", "3")]), "t").unwrap_err();
        assert_eq!(failure.step, PREFLIGHT);
        assert!(
            failure.reason.contains(
                "expected 3 pods ([cluster] expect_pods), the selector matches 2: sdkms-0, sdkms-1"
            ),
            "{}",
            failure.reason
        );
        assert!(fake.requests.is_empty(), "nothing contacted");
        let report = run(&mut fake, Mode::Apply, &kv(&[("expect_pods", "2")]), "t").unwrap();
        assert_eq!(report.version_after, Some(2));
    }

    #[test]
    fn an_activate_that_timed_out_but_landed_is_finished_not_repeated() {
        let mut fake = Fake::new(3);
        fake.activate_answer_lost = true;
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, ACTIVATE);
        assert!(!failure.safe_to_resume, "it may have landed");
        assert_eq!(
            fake.journal.get(journal::ROTATION).map(String::as_str),
            Some("activating 1 hash-1")
        );
        let report = apply(&mut fake).unwrap();
        assert_eq!(report.version_after, Some(2));
        let activates = fake
            .mutations
            .iter()
            .filter(|m| m.starts_with("activate"))
            .count();
        assert_eq!(activates, 1, "{:?}", fake.mutations);
        assert!(fake.pods.iter().all(|p| p.version == 2 && !p.broken));
    }

    #[test]
    fn an_activate_that_timed_out_before_landing_is_sent_by_the_next_run() {
        let mut fake = Fake::new(2);
        fake.fault(
            "sdkms-0",
            Method::Post,
            ACTIVATE_PATH,
            HttpError::Timeout,
            1,
        );
        let failure = apply(&mut fake).unwrap_err();
        assert!(!failure.safe_to_resume);
        assert!(!fake.mutations.iter().any(|m| m.starts_with("activate")));
        let report = apply(&mut fake).unwrap();
        assert_eq!(report.version_after, Some(2));
        assert_eq!(
            fake.mutations
                .iter()
                .filter(|m| m.starts_with("activate"))
                .count(),
            1
        );
        assert!(fake.pods.iter().all(|p| p.version == 2 && !p.broken));
    }

    #[test]
    fn a_fetch_timeout_stops_before_any_restart_and_a_rerun_fetches_once() {
        let mut fake = Fake::new(3);
        fake.fault("sdkms-2", Method::Post, FETCH_PATH, HttpError::Timeout, 1);
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, DISTRIBUTE);
        assert!(failure.safe_to_resume);
        assert!(!fake.mutations.contains(&"restart".to_string()));
        apply(&mut fake).unwrap();
        assert_eq!(
            fake.mutations
                .iter()
                .filter(|m| m.starts_with("fetch sdkms-2"))
                .count(),
            1
        );
        assert_eq!(
            fake.mutations
                .iter()
                .filter(|m| m.starts_with("propose"))
                .count(),
            1
        );
    }

    #[test]
    fn a_refused_restart_after_activate_is_safe_and_a_rerun_finishes() {
        let mut fake = Fake::new(3);
        fake.restart_error = Some((
            2,
            RestartError::Denied("interrupted (SIGINT): not sent".into()),
        ));
        let failure = apply(&mut fake).unwrap_err();
        assert_eq!(failure.step, RESTART_ACTIVATE);
        assert!(failure.safe_to_resume, "{}", failure.reason);
        assert!(failure.reason.contains("run again"), "{}", failure.reason);
        fake.restart_error = None;
        let report = apply(&mut fake).unwrap();
        assert_eq!(report.version_after, Some(2));
        assert_eq!(
            fake.mutations
                .iter()
                .filter(|m| m.starts_with("activate"))
                .count(),
            1
        );
        assert!(fake.pods.iter().all(|p| p.version == 2 && !p.broken));
    }
}
