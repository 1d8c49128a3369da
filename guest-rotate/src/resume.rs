//! Resuming: where the rotation stands, and why steps are behind it. Preflight
//! observes every pod and the journal and decides the phase ([`journal::reconcile`]);
//! the table then says which steps are behind. One phase can change under the run:
//! when the journal says activate may have been sent and a restart shows every pod
//! still on the old version holding the proposal, it never landed, and the rotation
//! goes on from loaded.

use guest_kit::host::Act;
use guest_kit::types::{Failure, Level, Outcome};

use crate::driver::{Next, Run, State};
use crate::journal::{self, Stage};
use crate::logic::{self, Baseline, Phase, Target};
use crate::table::{Behind, Preflight, VerifyActivated};

impl<H: Act> Run<'_, H> {
    /// Lists the pods, reads every pod's key status and the journal, and decides the
    /// phase. Nothing is changed.
    pub(crate) fn preflight(&mut self) -> Result<State, Failure> {
        let name = Preflight.name();
        let cluster = self.cluster.clone();
        let detail = self.preflight_detail();
        self.begin(name, &detail)?;
        let pods = self
            .host
            .list_pods()
            .map_err(|e| self.fail(name, format!("cannot list the pods: {e}")))?;
        if let Some(n) = self.params.expect_pods
            && pods.len() != n
        {
            let mut names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
            names.sort();
            let listed = if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            };
            let why = format!(
                "expected {n} pods ([cluster] expect_pods), the selector matches {}: {listed}",
                pods.len()
            );
            return Err(self.fail(name, why));
        }
        let targets = logic::ready_targets(&pods).map_err(|reason| self.fail(name, reason))?;
        let answers: Vec<(String, Result<_, String>)> = targets
            .iter()
            .zip(self.read(&targets))
            .map(|(t, a)| (t.name.clone(), a.map_err(|e| e.to_string())))
            .collect();
        let observed = logic::observe(&pods, &answers).map_err(|reason| self.fail(name, reason))?;
        // Without the grant (a plan by a read-only signer) there is no journal to
        // read: the pods alone decide, and apply would refuse before this point.
        let entries = match self.grants.has("journal") {
            true => self.host.journal_entries(),
            false => Vec::new(),
        };
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
            self.steps.activate_sent = true;
        }
        let baseline = journal::reconcile(&observed, &record, &self.params)
            .map_err(|reason| self.fail(name, reason))?;
        let detail = self.narrate(&targets, &baseline);
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
        let hash = held(&baseline.phase);
        if let Some(hash) = &hash {
            self.observe("hash", hash);
        }
        self.end(name, Outcome::Done, detail);
        Ok(State {
            targets,
            before: baseline.version,
            phase: baseline.phase,
            hash,
            source: None,
        })
    }

    /// What preflight does, as it begins.
    pub(crate) fn preflight_detail(&self) -> String {
        let cluster = &self.cluster;
        format!("cluster {cluster}: list the pods and read their key status")
    }

    /// Preflight's account of where the rotation stands.
    fn narrate(&self, targets: &[Target], baseline: &Baseline) -> String {
        let (n, names, vf, v) = (
            targets.len(),
            logic::names(targets),
            &self.params.common.version_field,
            baseline.version,
        );
        match &baseline.phase {
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
                sent_or_maybe(*sent)
            ),
            Phase::Rotated { hash } => {
                format!("{n} pods ({names}) at {vf} {v}: {}", self.rotated(v, hash))
            }
        }
    }

    /// Why a step is behind the cluster, as the skipped step's detail.
    pub(crate) fn behind(&self, state: &State, behind: Behind) -> String {
        let hash = state.hash.as_deref().unwrap_or_default();
        match behind {
            Behind::AllHold => match &state.hash {
                Some(h) => format!("every pod already holds proposal {h:?}"),
                None => "every pod already holds the new proposal".into(),
            },
            Behind::Loaded => format!(
                "the journal records that every pod held proposal {hash:?} before a \
                 completed rolling restart"
            ),
            Behind::ActivateSent => {
                let sent = matches!(state.phase, Phase::Activating { sent: true, .. });
                format!(
                    "the journal records that activate of proposal {hash:?} {}",
                    sent_or_maybe(sent)
                )
            }
            Behind::Restarted => format!(
                "every pod already runs {} {}",
                self.params.common.version_field,
                state.before + 1
            ),
            Behind::Rotated => self.rotated(state.before, hash),
        }
    }

    fn rotated(&self, version: i64, hash: &str) -> String {
        format!(
            "already rotated to {} {version} (proposal {hash:?}); pass --param \
             new_rotation=true to rotate again",
            self.params.common.version_field
        )
    }

    /// After the restart that follows an activate the journal says may have been
    /// sent: when every pod still runs the old version holding the proposal, it
    /// never landed, and the rotation goes on from loaded.
    pub(crate) fn reobserve(&mut self, state: &State) -> Result<Next, Failure> {
        let hash = state.hash.clone().unwrap_or_default();
        let statuses = self.statuses(VerifyActivated, &state.targets)?;
        if logic::check_version(&statuses, state.before).is_err()
            || logic::check_distributed(&statuses, &hash).is_err()
        {
            return Ok(Next::Continue);
        }
        self.host.log(
            Level::Warn,
            "the earlier activate never reached the cluster: after a restart every pod \
             still runs the old version and holds the proposal; activating now",
            &[("hash", &hash)],
        );
        self.steps.activate_sent = false;
        Ok(Next::Phase(Phase::Loaded { hash }))
    }
}

/// The proposal a phase names, if any.
fn held(phase: &Phase) -> Option<String> {
    match phase {
        Phase::NothingProposed => None,
        Phase::Proposed { hash, .. }
        | Phase::Loaded { hash }
        | Phase::Activating { hash, .. }
        | Phase::Rotated { hash } => Some(hash.clone()),
    }
}

fn sent_or_maybe(sent: bool) -> &'static str {
    if sent {
        "was answered"
    } else {
        "may have been sent"
    }
}
