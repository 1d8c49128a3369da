//! The steps: `params`, `pods` (list them), `read` (one batch of status reads), one
//! step per pod (its row), and `verdict` (do they agree?). Nothing is changed, in
//! apply and plan mode alike.

use crate::host::{Failure, Host, Level, Outcome, Report, Step};
use crate::params::{self, Params};
use crate::reads::{self, STATUS_PATH};
use crate::survey::{self, Row};

/// Records steps as they end, for the report and the failure.
struct Steps<'h, H: Host> {
    host: &'h mut H,
    done: Vec<Step>,
}

impl<H: Host> Steps<'_, H> {
    fn end(&mut self, name: &str, outcome: Outcome, detail: String) {
        self.host.step_end(name, outcome, &detail);
        self.done.push(Step {
            name: name.to_string(),
            outcome,
            detail,
        });
    }

    fn fail(mut self, step: &str, reason: String) -> Failure {
        self.end(step, Outcome::Failed, reason.clone());
        Failure {
            step: step.to_string(),
            reason,
            steps: self.done,
        }
    }
}

pub fn run(host: &mut impl Host, params: &[(String, String)]) -> Result<Report, Failure> {
    let mut steps = Steps {
        host,
        done: Vec::new(),
    };
    let params = match Params::parse(params) {
        Ok(p) => p,
        Err(reason) => {
            steps.host.step_begin(params::STEP, "");
            return Err(steps.fail(params::STEP, reason));
        }
    };

    steps.host.step_begin("pods", "listing the pods");
    let pods = match steps.host.list_pods() {
        Ok(pods) => pods,
        Err(e) => return Err(steps.fail("pods", format!("cannot list the pods: {e}"))),
    };
    steps.end("pods", Outcome::Done, format!("{} pods", pods.len()));

    steps
        .host
        .step_begin("read", "GET /cluster/v1/key on every pod");
    let readable: Vec<usize> = (0..pods.len()).filter(|&i| pods[i].ip.is_some()).collect();
    let urls: Vec<String> = readable
        .iter()
        .map(|&i| {
            let ip = pods[i].ip.as_deref().unwrap_or_default();
            format!("https://{ip}:{}{STATUS_PATH}", params.common.port)
        })
        .collect();
    let mut answers = reads::get_all(steps.host, &urls, params.common.read_timeout).into_iter();
    let rows: Vec<Row> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            let status = if readable.contains(&i) {
                match answers.next() {
                    Some(Ok(r)) => reads::parse(&r.body, &params),
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err("no answer".into()),
                }
            } else {
                Err(format!("no IP (phase {})", pod.phase))
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
    steps.end(
        "read",
        read_outcome,
        format!("{answered} of {} pods answered", rows.len()),
    );

    let verdict = survey::judge(&rows);
    for (row, notes) in rows.iter().zip(&verdict.notes) {
        let outcome = if notes.is_empty() {
            Outcome::Done
        } else {
            Outcome::Failed
        };
        steps.host.step_begin(&row.pod, "");
        steps.end(&row.pod, outcome, survey::row_detail(row, notes));
    }

    steps.host.step_begin("verdict", "");
    if !verdict.all_agree() {
        let reason = verdict.problems.join("; ");
        steps.host.log(
            Level::Warn,
            "the status check found problems",
            &[("problems", &reason)],
        );
        return Err(steps.fail("verdict", reason));
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
    steps.host.log(Level::Info, &detail, &[]);
    steps.end("verdict", Outcome::Done, detail);
    Ok(Report {
        steps: steps.done,
        version: verdict.version,
        pods: rows.len() as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::Fake;
    use crate::host::{HttpError, Response};

    #[test]
    fn agreeing_pods_make_a_row_each_and_a_done_verdict() {
        let mut fake = Fake::new(3);
        let report = run(&mut fake, &[]).unwrap();
        let names: Vec<&str> = report.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["pods", "read", "sdkms-0", "sdkms-1", "sdkms-2", "verdict"]
        );
        assert_eq!(
            report.steps[2].detail,
            "version=1 hash=none ready=true phase=Running note=-"
        );
        assert_eq!(report.version, Some(1));
        assert_eq!(report.pods, 3);
        assert_eq!(fake.batches, 1, "one batch for every pod");
        assert_eq!(fake.progress.len(), 12, "every step begins and ends");
    }

    #[test]
    fn a_diverging_pod_fails_the_verdict_naming_it() {
        let mut fake = Fake::new(3);
        fake.hashes = vec![Some("h".into()), Some("h".into()), Some("x".into())];
        let failure = run(&mut fake, &[]).unwrap_err();
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
        let report = run(&mut fake, &[]).unwrap();
        assert_eq!(report.version, Some(1));
        assert_eq!(fake.batches, 3);
        assert_eq!(fake.batch_sizes, [3, 1, 1]);
        assert_eq!(fake.sleeps.len(), 2);
    }

    #[test]
    fn a_pod_that_never_answers_is_reported_within_the_budget() {
        let mut fake = Fake::new(2);
        fake.errors
            .insert(0, vec![HttpError::Connect("refused".into()); 1000]);
        let failure = run(&mut fake, &[("read_timeout_secs".into(), "3".into())]).unwrap_err();
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
        let failure = run(&mut fake, &[]).unwrap_err();
        assert_eq!(fake.batches, 1);
        assert!(failure.reason.contains("denied: GET is not granted"));
    }

    #[test]
    fn a_pod_without_ip_is_not_contacted() {
        let mut fake = Fake::new(2);
        fake.pods[1].ip = None;
        fake.pods[1].ready = false;
        fake.pods[1].phase = "Pending".into();
        let failure = run(&mut fake, &[]).unwrap_err();
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
        let failure = run(&mut fake, &[("min_pods".into(), "3".into())]).unwrap_err();
        assert_eq!(failure.step, "params");
        assert_eq!(fake.batches, 0);
        let mut fake = Fake::new(1);
        fake.list_error = Some("denied: pods is not granted".into());
        let failure = run(&mut fake, &[]).unwrap_err();
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
        let report = run(&mut fake, &params).unwrap();
        assert_eq!(report.version, Some(1));
        assert_eq!(fake.urls[0], "https://10.0.0.1:8443/cluster/v1/key");
    }
}
