//! The steps: `params`, `pods` (list them), `read` (one batch of status reads), one
//! step per pod (its row), and `verdict` (do they agree?). Nothing is changed, in
//! apply and plan mode alike: the procedure is written against [`Read`] alone.

use std::time::Duration;

use guest_kit::host::Read;
use guest_kit::ledger::Ledger;
use guest_kit::reads;
use guest_kit::retry::Backoff;
use guest_kit::types::{Context, Failure, Level, Outcome, Report};

use crate::params::{self, Params};
use crate::survey::{self, Row};

/// Reads retry after 200 ms, doubling up to 2 s: a status check should answer quickly.
pub const BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(200),
    max: Duration::from_secs(2),
};

/// The run, as the component hands it over: plan and apply are the same, a status
/// read changes nothing, so running again is always safe.
pub fn run(host: &mut impl Read, ctx: &Context) -> Result<Report, Failure> {
    check(host, &ctx.params)
}

/// Lists the pods, reads every pod's status, and judges whether they agree.
pub fn check(host: &mut impl Read, params: &[(String, String)]) -> Result<Report, Failure> {
    let mut steps = Ledger::default();
    let fail = |host: &mut _, steps: &Ledger, step: &str, reason: String| {
        steps.fail(host, step, reason, true)
    };
    let params = match Params::parse(params) {
        Ok(p) => p,
        Err(reason) => {
            steps.begin(host, params::STEP, "");
            return Err(fail(host, &steps, params::STEP, reason));
        }
    };

    steps.begin(host, "pods", "listing the pods");
    let pods = match host.list_pods() {
        Ok(pods) => pods,
        Err(e) => {
            return Err(fail(
                host,
                &steps,
                "pods",
                format!("cannot list the pods: {e}"),
            ));
        }
    };
    steps.end(host, "pods", Outcome::Done, format!("{} pods", pods.len()));

    steps.begin(host, "read", "GET /cluster/v1/key on every pod");
    let readable: Vec<(&str, &str)> = pods
        .iter()
        .filter_map(|p| Some((p.name.as_str(), p.ip.as_deref()?)))
        .collect();
    let mut answers = reads::statuses(host, &readable, &params.common, BACKOFF).into_iter();
    let rows: Vec<Row> = pods
        .iter()
        .map(|pod| {
            let status = match pod.ip {
                Some(_) => match answers.next() {
                    Some(answer) => answer.map_err(|e| e.to_string()),
                    None => Err("no answer".into()),
                },
                None => Err(format!("no IP (phase {})", pod.phase)),
            };
            Row {
                pod: pod.name.clone(),
                ready: pod.ready,
                phase: pod.phase.clone(),
                status,
            }
        })
        .collect();
    let answered = rows.iter().filter(|r| r.status.is_ok()).count();
    let read_outcome = if answered == rows.len() {
        Outcome::Done
    } else {
        Outcome::Failed
    };
    let detail = format!("{answered} of {} pods answered", rows.len());
    steps.end(host, "read", read_outcome, detail);

    let verdict = survey::judge(&rows);
    for (row, notes) in rows.iter().zip(&verdict.notes) {
        let outcome = if notes.is_empty() {
            Outcome::Done
        } else {
            Outcome::Failed
        };
        steps.note(host, &row.pod, outcome, survey::row_detail(row, notes));
    }

    steps.begin(host, "verdict", "");
    if !verdict.all_agree() {
        let reason = verdict.problems.join("; ");
        host.log(
            Level::Warn,
            "the status check found problems",
            &[("problems", &reason)],
        );
        return Err(fail(host, &steps, "verdict", reason));
    }
    let hash = rows
        .first()
        .and_then(|r| r.status.as_ref().ok())
        .and_then(|s| s.hash.clone());
    let detail = match (verdict.version, hash) {
        (Some(v), None) => format!("all {} pods agree: version {v}, no proposal", rows.len()),
        (Some(v), Some(h)) => format!(
            "all {} pods agree: version {v}, proposal {h} fetched everywhere",
            rows.len()
        ),
        (None, _) => format!("all {} pods agree", rows.len()),
    };
    host.log(Level::Info, &detail, &[]);
    steps.end(host, "verdict", Outcome::Done, detail);
    Ok(Report {
        steps: steps.into_steps(),
        version_before: verdict.version,
        version_after: verdict.version,
        pods: rows.len() as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::Fake;
    use guest_kit::types::{HttpError, PodsError, Response};

    #[test]
    fn agreeing_pods_make_a_row_each_and_a_done_verdict() {
        let mut fake = Fake::new(3);
        let report = check(&mut fake, &[]).unwrap();
        let names: Vec<&str> = report.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["pods", "read", "sdkms-0", "sdkms-1", "sdkms-2", "verdict"]
        );
        assert_eq!(
            report.steps[2].detail,
            "version=1 hash=none ready=true phase=Running note=-"
        );
        assert_eq!(report.version_after, Some(1));
        assert_eq!(report.pods, 3);
        assert_eq!(fake.batches, 1, "one batch for every pod");
        assert_eq!(fake.progress.0.len(), 12, "every step begins and ends");
    }

    #[test]
    fn a_diverging_pod_fails_the_verdict_naming_it() {
        let mut fake = Fake::new(3);
        fake.db.propose("sdkms-0", "h".into()).unwrap();
        fake.db.fetch("sdkms-1", Some("sdkms-0"), "", None).unwrap();
        fake.db
            .fetch("sdkms-2", Some("sdkms-0"), "", Some("x".into()))
            .unwrap();
        let failure = check(&mut fake, &[]).unwrap_err();
        assert_eq!(failure.step, "verdict");
        assert!(
            failure.reason.contains("x on sdkms-2"),
            "{}",
            failure.reason
        );
        let row = failure.steps.iter().find(|s| s.name == "sdkms-2").unwrap();
        assert_eq!(row.outcome, Outcome::Failed);
        assert!(
            row.detail.contains("note=\"hash differs\""),
            "{}",
            row.detail
        );
        let ok = failure.steps.iter().find(|s| s.name == "sdkms-0").unwrap();
        assert_eq!(ok.outcome, Outcome::Done);
    }

    #[test]
    fn warming_pods_are_retried_in_rebatches_of_only_those() {
        let mut fake = Fake::new(3);
        fake.errors.insert(
            1,
            vec![
                HttpError::Status(Response {
                    status: 503,
                    body: "warming up".into(),
                });
                2
            ],
        );
        let report = check(&mut fake, &[]).unwrap();
        assert_eq!(report.version_after, Some(1));
        assert_eq!(fake.batches, 3);
        assert_eq!(fake.batch_sizes, [3, 1, 1]);
        assert_eq!(fake.sleeps.len(), 2);
    }

    #[test]
    fn a_pod_that_never_answers_is_reported_within_the_budget() {
        let mut fake = Fake::new(2);
        fake.errors
            .insert(0, vec![HttpError::Connect("refused".into()); 1000]);
        let failure = check(&mut fake, &[("read_timeout_secs".into(), "3".into())]).unwrap_err();
        assert!(
            failure
                .reason
                .contains("could not be read: sdkms-0 (connect: refused)"),
            "{}",
            failure.reason
        );
        assert!(fake.now.as_secs() <= 3, "{:?}", fake.now);
        let read = failure.steps.iter().find(|s| s.name == "read").unwrap();
        assert_eq!(read.outcome, Outcome::Failed);
        assert_eq!(read.detail, "1 of 2 pods answered");
    }

    #[test]
    fn a_denied_read_is_not_retried() {
        let mut fake = Fake::new(1);
        fake.errors
            .insert(0, vec![HttpError::Denied("GET is not granted".into())]);
        let failure = check(&mut fake, &[]).unwrap_err();
        assert_eq!(fake.batches, 1);
        assert!(failure.reason.contains("denied: GET is not granted"));
    }

    #[test]
    fn a_pod_without_ip_is_not_contacted() {
        let mut fake = Fake::new(2);
        fake.pods[1].ip = None;
        fake.pods[1].ready = false;
        fake.pods[1].phase = "Pending".into();
        let failure = check(&mut fake, &[]).unwrap_err();
        assert_eq!(fake.batch_sizes, [1]);
        assert!(failure.reason.contains("sdkms-1 (no IP (phase Pending))"));
        assert!(
            failure
                .reason
                .contains("not Ready: sdkms-1 (phase Pending)")
        );
    }

    #[test]
    fn bad_params_and_pod_list_errors_fail_their_step() {
        let mut fake = Fake::new(1);
        let failure = check(&mut fake, &[("min_pods".into(), "3".into())]).unwrap_err();
        assert_eq!(failure.step, "params");
        assert_eq!(fake.batches, 0);
        let mut fake = Fake::new(1);
        fake.list_error = Some(PodsError::Denied("pods is not granted".into()));
        let failure = check(&mut fake, &[]).unwrap_err();
        assert_eq!(failure.step, "pods");
        assert!(failure.reason.contains("pods is not granted"));
    }

    #[test]
    fn custom_field_names_and_port() {
        let mut fake = Fake::new(1);
        fake.renamed = true;
        let params = [
            ("version_field".to_string(), "kv".to_string()),
            ("hash_field".to_string(), "ph".to_string()),
            ("port".to_string(), "8443".to_string()),
        ];
        let report = check(&mut fake, &params).unwrap();
        assert_eq!(report.version_after, Some(1));
        assert_eq!(fake.urls[0], "https://10.0.0.1:8443/cluster/v1/key");
    }
}
