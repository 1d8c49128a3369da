//! What a fleet run reports: one record per cluster, the summary table and the JSON
//! document, and the exit code they decide.

use std::time::Instant;

use serde::Serialize;

use crate::caps::confirm::Unconfirmed;
use crate::caps::log::StepRecord;
use crate::exit;
use crate::launch::Failure;
use crate::report::{RunOutcome, RunReport};
use crate::site::Site;
use crate::stop::Hold;

use super::FleetOptions;

/// How one cluster's part of the fleet ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The procedure succeeded.
    Done,
    /// `--plan`: read, nothing changed.
    Planned,
    /// `--stop-before activate`: taken up to the point of no return, stopped there.
    #[serde(rename = "ready-to-activate")]
    Ready,
    /// The procedure failed, or the component was stopped by a limit.
    Failed,
    /// Stopped at a safe point (SIGINT, `--max-failures`, a lost Lease).
    Stopped,
    /// Stopped before the point of no return: no `--yes` (a fleet never prompts).
    AwaitingConfirmation,
    /// Another run holds the cluster's Lease.
    LeaseBusy,
    /// The run could not start (its kubeconfig, its limits).
    Error,
    /// Never started: the fleet was stopping.
    NotStarted,
}

impl Outcome {
    /// Done, planned or ready: what exit 0 needs of every cluster.
    pub fn is_ok(self) -> bool {
        matches!(self, Outcome::Done | Outcome::Planned | Outcome::Ready)
    }

    pub fn text(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Planned => "planned",
            Outcome::Ready => "ready to activate",
            Outcome::Failed => "failed",
            Outcome::Stopped => "stopped",
            Outcome::AwaitingConfirmation => "awaiting confirmation",
            Outcome::LeaseBusy => "lease busy",
            Outcome::Error => "error",
            Outcome::NotStarted => "not started",
        }
    }
}

/// One cluster of the fleet.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRecord {
    pub cluster: String,
    pub site: String,
    /// The site's position in the argument list (what `--shard` counts).
    pub position: usize,
    pub outcome: Outcome,
    /// The exit code `cmk-host run` would have given this cluster (0 when ready).
    pub exit_code: u8,
    pub version_before: Option<i64>,
    pub version_after: Option<i64>,
    pub pods: u32,
    pub duration_ms: u64,
    pub steps: Vec<StepRecord>,
    /// Why it is not done: the failure, the stop, the hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The step it failed at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// Whether running again continues safely (absent when it is done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safe_to_resume: Option<bool>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<String>,
    /// The calls the host denied the component, as `capability target (rule)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denials: Vec<String>,
    /// `--plan`: the mutating calls the procedure made, recorded instead of sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<String>,
    /// The irreversible requests the cluster's run sent, with their answers.
    pub irreversible_sent: Vec<String>,
    /// The versions changed though the run sent no irreversible request: the
    /// table shows them as the procedure's account (`RunReport::version_note`).
    #[serde(skip)]
    pub versions_claimed: bool,
}

impl ClusterRecord {
    fn empty(site: &Site, outcome: Outcome, exit_code: u8) -> ClusterRecord {
        ClusterRecord {
            cluster: site.cluster.name.clone(),
            site: site.path.display().to_string(),
            position: 0,
            outcome,
            exit_code,
            version_before: None,
            version_after: None,
            pods: 0,
            duration_ms: 0,
            steps: Vec::new(),
            reason: None,
            failed_step: None,
            safe_to_resume: None,
            run_id: String::new(),
            audit_path: None,
            audit_head: None,
            denials: Vec::new(),
            planned: Vec::new(),
            irreversible_sent: Vec::new(),
            versions_claimed: false,
        }
    }

    /// A cluster the fleet did not start, and why.
    pub fn not_started(site: &Site, why: &str) -> ClusterRecord {
        let mut record = ClusterRecord::empty(site, Outcome::NotStarted, exit::FAILED);
        record.reason = Some(why.to_string());
        record.safe_to_resume = Some(true);
        record
    }

    /// The record of a run that ended (or could not start). `held` is the run's hold
    /// when it refused the point of no return: the host, not the component, decides
    /// that the cluster is ready.
    pub fn from_run(
        site: &Site,
        result: Result<RunReport, Failure>,
        held: Option<&Hold>,
        started: Instant,
    ) -> ClusterRecord {
        let report = match result {
            Ok(report) => report,
            Err(failure) => {
                let outcome = match failure {
                    Failure::LeaseBusy(_) => Outcome::LeaseBusy,
                    Failure::Failed(_) => Outcome::Failed,
                    _ => Outcome::Error,
                };
                let mut record = ClusterRecord::empty(site, outcome, failure.exit_code());
                record.reason = Some(failure.to_string());
                // Nothing was changed: the run did not start.
                record.safe_to_resume = Some(true);
                record.duration_ms = started.elapsed().as_millis() as u64;
                return record;
            }
        };
        let safe = report.failure.as_ref().is_none_or(|f| f.safe_to_resume);
        let outcome = match (&report.failure, held) {
            (None, _) if report.exit_code == exit::DONE && report.plan => Outcome::Planned,
            (_, Some(_)) if safe && report.ended != RunOutcome::Trapped => Outcome::Ready,
            (None, _) if report.exit_code == exit::DONE => Outcome::Done,
            _ if report.stopped.is_some() && safe => Outcome::Stopped,
            _ if safe && report.unconfirmed == Some(Unconfirmed::NoAnswerer) => {
                Outcome::AwaitingConfirmation
            }
            _ => Outcome::Failed,
        };
        let mut record = ClusterRecord::empty(
            site,
            outcome,
            if outcome == Outcome::Ready {
                exit::DONE
            } else {
                report.exit_code
            },
        );
        record.versions_claimed = report.version_note().is_some();
        record.version_before = report.version_before;
        record.version_after = report.version_after;
        record.pods = report.pods;
        record.duration_ms = report.duration_ms;
        record.steps = report.steps;
        record.run_id = report.run_id;
        record.audit_path = report.audit_path;
        record.audit_head = report.audit_head;
        record.planned = report.planned;
        record.irreversible_sent = report.irreversible_sent;
        record.denials = report
            .denials
            .iter()
            .map(|d| format!("{} {} ({})", d.capability, d.target, d.rule))
            .collect();
        if outcome != Outcome::Done && outcome != Outcome::Planned {
            record.safe_to_resume = Some(safe);
        }
        record.failed_step = report.failure.as_ref().map(|f| f.step.clone());
        record.reason = match (outcome, held) {
            (Outcome::Ready, Some(hold)) => Some(hold.reason.clone()),
            _ => match (&report.failure, &report.stopped) {
                (Some(f), _) => Some(format!("{}: {}", f.step, f.reason)),
                (None, Some(why)) => Some(why.clone()),
                (None, None) => None,
            },
        };
        record
    }

    /// The cluster's last live line: its outcome, versions (when it read any) and
    /// reason.
    pub fn line(&self) -> String {
        let mut line = self.outcome.text().to_string();
        if self.version_before.is_some() || self.version_after.is_some() {
            line.push(' ');
            line.push_str(&self.versions());
        }
        if let Some(reason) = &self.reason {
            line.push_str(": ");
            line.push_str(&cell(reason, 160));
        }
        line
    }

    fn versions(&self) -> String {
        versions(
            self.version_before,
            self.version_after,
            self.versions_claimed,
        )
    }
}

/// `1 -> 2`, `1`, or `?`; `1 -> 2 (as the procedure reports it)` when `claimed`
/// (the run sent no irreversible request).
fn versions(before: Option<i64>, after: Option<i64>, claimed: bool) -> String {
    let v = |v: Option<i64>| v.map_or("?".to_string(), |v| v.to_string());
    match (before, after) {
        (None, None) => "-".into(),
        (b, a) if b == a || a.is_none() => v(b),
        (b, a) if claimed => format!("{} -> {} (as the procedure reports it)", v(b), v(a)),
        (b, a) => format!("{} -> {}", v(b), v(a)),
    }
}

/// The fleet's document (`--json`) and what the summary shows.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    /// `done` when every cluster is done (or ready, or planned), else `failed`.
    pub outcome: &'static str,
    pub exit_code: u8,
    pub component: String,
    pub component_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_before: Option<&'static str>,
    pub plan: bool,
    pub duration_ms: u64,
    pub clusters: Vec<ClusterRecord>,
}

impl FleetReport {
    pub fn new(
        options: &FleetOptions,
        sha256: &str,
        clusters: Vec<ClusterRecord>,
        started: Instant,
    ) -> FleetReport {
        let ok = clusters.iter().all(|c| c.outcome.is_ok());
        FleetReport {
            outcome: if ok { "done" } else { "failed" },
            exit_code: if ok { exit::DONE } else { exit::FAILED },
            component: options.component.display().to_string(),
            component_sha256: sha256.to_string(),
            shard: options.shard.map(|s| s.to_string()),
            stop_before: options
                .stop_before_activate
                .then_some(super::STOP_BEFORE_ACTIVATE),
            plan: options.plan,
            duration_ms: started.elapsed().as_millis() as u64,
            clusters,
        }
    }

    /// The table printed at the end: cluster, outcome, versions, time, reason.
    pub fn summary(&self) -> String {
        let mut rows = vec![[
            "CLUSTER".to_string(),
            "OUTCOME".into(),
            "VERSION".into(),
            "TIME".into(),
            "REASON".into(),
        ]];
        for c in &self.clusters {
            rows.push([
                cell(&c.cluster, 40),
                c.outcome.text().into(),
                c.versions(),
                format!("{:.1}s", c.duration_ms as f64 / 1000.0),
                c.reason.as_deref().map_or(String::new(), |r| cell(r, 200)),
            ]);
        }
        let widths: Vec<usize> = (0..5)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::from("\n");
        for (n, row) in rows.iter().enumerate() {
            let mark = match n {
                0 => " ",
                _ if self.clusters[n - 1].outcome.is_ok() => "✓",
                _ => "✗",
            };
            let mut line = format!("{mark} ");
            for (i, value) in row.iter().enumerate() {
                line.push_str(value);
                if i + 1 < row.len() {
                    line.push_str(&" ".repeat(widths[i] - value.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let count = |o: Outcome| self.clusters.iter().filter(|c| c.outcome == o).count();
        let mut totals = Vec::new();
        for o in [
            Outcome::Done,
            Outcome::Ready,
            Outcome::Planned,
            Outcome::Failed,
            Outcome::Stopped,
            Outcome::AwaitingConfirmation,
            Outcome::LeaseBusy,
            Outcome::Error,
            Outcome::NotStarted,
        ] {
            let n = count(o);
            if n > 0 {
                totals.push(format!("{n} {}", o.text()));
            }
        }
        out.push_str(&format!(
            "\n{} {} clusters in {:.1}s: {}\n",
            if self.exit_code == exit::DONE {
                "✓"
            } else {
                "✗"
            },
            self.clusters.len(),
            self.duration_ms as f64 / 1000.0,
            totals.join(", ")
        ));
        if count(Outcome::AwaitingConfirmation) > 0 {
            out.push_str("  next: run the same command with --yes to activate\n");
        }
        if count(Outcome::Ready) > 0 {
            out.push_str(
                "  next: review, then run the same command without --stop-before to activate\n",
            );
        }
        if self
            .clusters
            .iter()
            .any(|c| !c.outcome.is_ok() && c.safe_to_resume == Some(false))
        {
            out.push_str(
                "  A CLUSTER MAY NOT BE SAFE (safe to resume: no): investigate it before anything else\n",
            );
        } else if !self.clusters.iter().all(|c| c.outcome.is_ok()) {
            out.push_str("  the clusters that are not done are safe to resume: fix the cause and run again\n");
        }
        if count(Outcome::Done) > 0 && !self.plan {
            out.push_str(
                "  next: the DR and cold-standby nodes of the rotated clusters must now rejoin\n",
            );
        }
        out
    }
}

/// `text` on one line, safe to show (`text::escape`: a component's text is data),
/// at most `max` characters.
fn cell(text: &str, max: usize) -> String {
    let escaped = crate::text::escape(text);
    if escaped.chars().count() <= max {
        escaped
    } else {
        format!("{}…", escaped.chars().take(max - 1).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_escapes_control_characters_and_is_bounded() {
        assert_eq!(cell("a\nb\x1b[31m", 100), "a\\u{a}b\\u{1b}[31m");
        assert_eq!(cell("abcdef", 4), "abc…");
    }

    #[test]
    fn versions_a_run_did_not_earn_are_shown_as_the_procedures_account() {
        assert_eq!(versions(Some(1), Some(2), false), "1 -> 2");
        assert_eq!(
            versions(Some(1), Some(2), true),
            "1 -> 2 (as the procedure reports it)"
        );
        assert_eq!(versions(Some(1), Some(1), true), "1");
        assert_eq!(versions(None, None, false), "-");
    }

    #[test]
    fn a_live_line_shows_versions_only_when_the_run_read_some() {
        let text = "[cluster]\nname = \"c\"\nnamespace = \"sdkms\"\nselector = \"app=sdkms\"\n\
                    [tls]\ninsecure = true\n";
        let site = Site::parse(std::path::Path::new("site.toml"), text).unwrap();
        let why = "stopped: 1 cluster(s) failed (--max-failures 1)";
        let mut record = ClusterRecord::not_started(&site, why);
        assert_eq!(
            record.line(),
            "not started: stopped: 1 cluster(s) failed (--max-failures 1)"
        );
        record.outcome = Outcome::Done;
        record.reason = None;
        record.version_before = Some(1);
        record.version_after = Some(2);
        assert_eq!(record.line(), "done 1 -> 2");
    }

    #[test]
    fn only_done_ready_and_planned_are_ok() {
        assert!(Outcome::Done.is_ok() && Outcome::Ready.is_ok() && Outcome::Planned.is_ok());
        for o in [
            Outcome::Failed,
            Outcome::Stopped,
            Outcome::AwaitingConfirmation,
            Outcome::LeaseBusy,
            Outcome::Error,
            Outcome::NotStarted,
        ] {
            assert!(!o.is_ok(), "{o:?}");
        }
    }
}
