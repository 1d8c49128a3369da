//! Apply from a fresh cluster: the documented order, every check, the hooks, retries
//! of reads (never of mutating calls), and what each failure leaves behind.

use super::*;

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
    assert!(fake.all_on(2));
    // Every step that began also ended, in order.
    let expected: Vec<String> = STEPS
        .iter()
        .flat_map(|s| [format!("begin {s}"), format!("end {s} Done")])
        .collect();
    assert_eq!(fake.progress.0, expected);
}

#[test]
fn refuses_differing_proposals_before_changing_anything() {
    let mut fake = Fake::new(3);
    // A proposal replaced by a second one: sdkms-0 keeps the stale hash.
    fake.proposed("a", "sdkms-0", &[]);
    fake.proposed("b", "sdkms-2", &[]);
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
    let fetches = fake.requested("/fetch");
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
    assert_eq!(fake.requested("/propose"), 1);
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
    assert!(fake.sleeps.iter().all(|d| *d <= BACKOFF.max));

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
    assert_eq!(fake.requested("/activate"), 1);
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
