//! The report of one run: what the terminal summary and `--json` show, and what
//! decides the exit code.

use std::time::Instant;

use serde::Serialize;

use crate::caps::Denial;
use crate::caps::confirm::Unconfirmed;
use crate::caps::log::StepRecord;
use crate::site::Site;
use crate::text::ComponentText;

use crate::exit;

/// How the component's `run` ended (`ended` in the JSON).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Succeeded,
    /// The procedure returned a failure.
    Failed,
    /// The component trapped or hit a limit.
    Trapped,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureInfo {
    pub step: String,
    pub reason: String,
    pub safe_to_resume: bool,
    /// Whose words `step` and `reason` are: `procedure` (what the component
    /// returned, escaped) or `host` (a limit, a trap; any output it quotes escaped).
    pub reported_by: &'static str,
}

impl FailureInfo {
    /// The failure the procedure returned: its words, escaped and bounded.
    pub fn from_procedure(step: &str, reason: &str, safe_to_resume: bool) -> Self {
        FailureInfo {
            step: ComponentText::new(step).into_string(),
            reason: ComponentText::new(reason).into_string(),
            safe_to_resume,
            reported_by: "procedure",
        }
    }

    /// A failure the host found (a trap, a limit); `reason` is the host's text,
    /// with whatever it quotes from the component already escaped.
    pub fn from_host(step: &str, reason: String, safe_to_resume: bool) -> Self {
        FailureInfo {
            step: step.to_string(),
            reason,
            safe_to_resume,
            reported_by: "host",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// This run's id (also in the Lease holder identity and the logs).
    pub run_id: String,
    pub cluster: String,
    pub site: String,
    pub component_sha256: String,
    /// `--plan`: the procedure only read the cluster.
    pub plan: bool,
    /// The `[[trust.signer]]` whose key verified the component; absent when it ran
    /// unsigned (`--allow-unsigned`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The id of the key that verified the component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// What the precompile cache did: hit, stored, miss, discarded or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// What the run came to, for the operator and for automation: `done`,
    /// `planned`, `awaiting-confirmation`, `declined`, `interrupted` or `failed`
    /// (the documents of runs that never started say `lease-busy`, `refused`,
    /// `invalid-site` or `usage`; docs/json.md).
    pub outcome: &'static str,
    /// How the component's `run` ended: `succeeded`, `failed` or `trapped`.
    pub ended: RunOutcome,
    pub exit_code: u8,
    pub steps: Vec<StepRecord>,
    pub version_before: Option<i64>,
    pub version_after: Option<i64>,
    pub pods: u32,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureInfo>,
    pub denials: Vec<Denial>,
    /// Plan mode: the mutating calls the procedure made, recorded instead of sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<String>,
    /// The `[http] irreversible` requests this run sent (the activate), each with
    /// its answer, as the host saw them: `"POST https://…/activate: 204"`.
    pub irreversible_sent: Vec<String>,
    /// The audit trail this run appended to, and the hash of its last record (keep
    /// it elsewhere to detect a cut at the end of the trail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<String>,
    /// Why the run was stopped before its end (SIGINT, a lost Lease).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// The stop was the operator's interrupt (SIGINT), not a reason found in a run.
    #[serde(skip)]
    pub interrupted: bool,
    /// What the component wrote to stdout and stderr (escaped: one line of text).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub guest_output: ComponentText,
    /// Why the point of no return was not confirmed, when it was not.
    #[serde(skip)]
    pub unconfirmed: Option<Unconfirmed>,
}

impl RunReport {
    pub fn new(site: &Site, component_sha256: &str, started: Instant) -> Self {
        RunReport {
            run_id: String::new(),
            cluster: site.cluster.name.clone(),
            site: site.path.display().to_string(),
            component_sha256: component_sha256.to_string(),
            plan: false,
            signer: None,
            key_id: None,
            cache: None,
            outcome: "failed",
            ended: RunOutcome::Failed,
            exit_code: exit::FAILED,
            steps: Vec::new(),
            version_before: None,
            version_after: None,
            pods: 0,
            duration_ms: started.elapsed().as_millis() as u64,
            failure: None,
            denials: Vec::new(),
            planned: Vec::new(),
            irreversible_sent: Vec::new(),
            audit_path: None,
            audit_head: None,
            stopped: None,
            interrupted: false,
            guest_output: ComponentText::default(),
            unconfirmed: None,
        }
    }

    pub fn set_outcome(&mut self, ended: RunOutcome) {
        self.ended = ended;
        self.conclude();
    }

    /// Sets `outcome` and the exit code from how the run ended, whether it was
    /// stopped, and why a confirmation was not given. Every stop short of the end is
    /// exit 1 ("failed or aborted safely").
    pub fn conclude(&mut self) {
        self.outcome = match (self.ended, self.unconfirmed) {
            (RunOutcome::Succeeded, _) if self.plan => "planned",
            (RunOutcome::Succeeded, _) => "done",
            _ if self.interrupted => "interrupted",
            (_, Some(Unconfirmed::Declined)) => "declined",
            (_, Some(Unconfirmed::NoAnswerer)) => "awaiting-confirmation",
            _ => "failed",
        };
        self.exit_code = match self.ended {
            RunOutcome::Succeeded => exit::DONE,
            RunOutcome::Failed | RunOutcome::Trapped => exit::FAILED,
        };
    }

    /// Whether the run stopped short on purpose (a decline, no one to confirm, an
    /// interrupt): nothing to fix, only to run again.
    /// What the host adds to the versions the procedure reports when they changed
    /// though this run sent no irreversible request: the change is the procedure's
    /// account (a resumed run whose activate an earlier run sent, or a false claim).
    pub fn version_note(&self) -> Option<&'static str> {
        let changed = self.version_after.is_some() && self.version_after != self.version_before;
        (changed && !self.plan && self.irreversible_sent.is_empty())
            .then_some("as the procedure reports it: this run sent no irreversible request")
    }

    pub fn stopped_on_purpose(&self) -> bool {
        matches!(
            self.outcome,
            "declined" | "awaiting-confirmation" | "interrupted"
        )
    }

    pub fn finish(&mut self, started: Instant) {
        self.duration_ms = started.elapsed().as_millis() as u64;
    }

    pub fn outcome_text(&self) -> String {
        if self.stopped_on_purpose() {
            let step = self
                .failure
                .as_ref()
                .map_or("the next step", |f| f.step.as_str());
            return format!("stopped before {step}: safe; run the same command again to continue");
        }
        match self.ended {
            RunOutcome::Succeeded if self.plan => "plan only: nothing was changed",
            RunOutcome::Succeeded => "done",
            RunOutcome::Failed => "the procedure failed",
            RunOutcome::Trapped => "the component was stopped",
        }
        .to_string()
    }
}
