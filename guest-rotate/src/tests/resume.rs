//! Runs after an interruption: what the pods and the journal show decides where the
//! rotation goes on, and nothing irreversible is repeated.

use super::*;

#[test]
fn resumes_a_partly_distributed_proposal_without_proposing() {
    let mut fake = Fake::new(3);
    fake.proposed("hash-old", "sdkms-1", &["sdkms-2"]);
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
    fake.proposed("h", "sdkms-0", &["sdkms-1"]);
    let report = apply(&mut fake).unwrap();
    assert_eq!(report.steps[1].outcome, Outcome::Skipped);
    assert_eq!(report.steps[2].outcome, Outcome::Skipped);
    assert_eq!(fake.mutations, ["restart", "activate sdkms-0", "restart"]);
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
    assert!(fake.all_on(2));
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
    assert!(fake.all_on(1));

    fake.restart_error = None;
    let report = apply(&mut fake).unwrap();
    assert_eq!(report.version_after, Some(2));
    assert_eq!(fake.mutated("activate"), 1);
    assert!(fake.all_on(2));
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
    assert!(fake.all_on(2));
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
    assert_eq!(fake.mutated("propose"), 1);
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
    let activates = fake.mutated("activate");
    assert_eq!(activates, 1, "{:?}", fake.mutations);
    assert!(fake.all_on(2));
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
    assert_eq!(fake.mutated("activate"), 1);
    assert!(fake.all_on(2));
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
    assert_eq!(fake.mutated("fetch sdkms-2"), 1);
    assert_eq!(fake.mutated("propose"), 1);
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
    assert_eq!(fake.mutated("activate"), 1);
    assert!(fake.all_on(2));
}
