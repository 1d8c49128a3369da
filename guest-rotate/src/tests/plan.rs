//! Plan walks the same table as apply: the same steps in the same order, from every
//! phase, changing nothing; a step the grants would refuse is reported as refused.

use super::*;

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

/// A cluster in some phase, built afresh for each run (a run changes it).
type Setup = fn() -> Fake;

/// The clusters the reconcile can observe, named after the phase preflight decides.
fn phases() -> Vec<(&'static str, Setup)> {
    vec![
        ("nothing proposed", || Fake::new(3)),
        ("nothing proposed, one pod", || Fake::new(1)),
        ("proposed, partly distributed", || {
            let mut fake = Fake::new(3);
            fake.proposed("hash-old", "sdkms-1", &["sdkms-2"]);
            fake
        }),
        ("proposed, fully distributed", || {
            let mut fake = Fake::new(3);
            fake.proposed("h", "sdkms-0", &["sdkms-1", "sdkms-2"]);
            fake
        }),
        ("loaded", || {
            let mut fake = Fake::new(3);
            fake.confirm_answer = Err("declined".into());
            apply(&mut fake).unwrap_err();
            fake.confirm_answer = Ok(());
            fake
        }),
        ("activating: sent, answer lost", || {
            let mut fake = Fake::new(3);
            fake.activate_answer_lost = true;
            apply(&mut fake).unwrap_err();
            fake
        }),
        ("activated, not restarted", || {
            let mut fake = Fake::new(3);
            fake.restart_error = Some((2, RestartError::Failed("exit 1".into())));
            apply(&mut fake).unwrap_err();
            fake.restart_error = None;
            fake
        }),
        ("activated and restarted", || {
            let mut fake = Fake::new(3);
            apply(&mut fake).unwrap();
            // As if the run died after the restart, before recording completion.
            fake.journal.remove(journal::DONE);
            fake.journal
                .insert(journal::ROTATION.into(), "activated 1 hash-1".into());
            fake
        }),
        ("rotated", || {
            let mut fake = Fake::new(3);
            apply(&mut fake).unwrap();
            fake
        }),
    ]
}

/// Plan and apply walk the same table: from every phase, the same steps in the same
/// order, planned where apply acts and skipped where apply skips.
#[test]
fn plan_and_apply_list_the_same_steps_in_every_phase() {
    for (phase, fake) in phases() {
        let mut planned = fake();
        let mutations = planned.mutations.len();
        let plan = run(&mut planned, Mode::Plan, &[], "t").unwrap();
        assert_eq!(
            planned.mutations.len(),
            mutations,
            "{phase}: plan changes nothing"
        );
        let mut applied = fake();
        let done = apply(&mut applied).unwrap_or_else(|f| panic!("{phase}: {f:?}"));
        assert_eq!(names(&plan.steps), names(&done.steps), "{phase}");
        for (p, a) in plan.steps.iter().zip(&done.steps) {
            let expected = match a.outcome {
                Outcome::Done if a.name == PREFLIGHT => Outcome::Done,
                Outcome::Done => Outcome::Planned,
                other => other,
            };
            assert_eq!(p.outcome, expected, "{phase}: {}", p.name);
        }
        assert!(applied.all_on(done.version_after.unwrap()), "{phase}");
    }
}

/// The one phase whose steps a plan cannot know in advance: the journal says
/// activate may have been sent and the pods still hold the proposal at the old
/// version. Only the restart shows whether it landed; when it did not, apply goes on
/// from loaded, and its steps are the plan's with loaded's rows after the restart.
#[test]
fn an_activate_that_never_landed_is_found_after_the_restart_the_plan_lists() {
    let fake = || {
        let mut fake = Fake::new(2);
        fake.confirm_answer = Err("declined".into());
        apply(&mut fake).unwrap_err();
        fake.journal
            .insert(journal::ROTATION.into(), "activating 1 hash-1".into());
        fake.confirm_answer = Ok(());
        fake
    };
    let plan = run(&mut fake(), Mode::Plan, &[], "t").unwrap();
    let done = apply(&mut fake()).unwrap();
    let mut expected = names(&plan.steps);
    expected.retain(|s| !["verify-loaded", ACTIVATE].contains(s));
    expected.splice(6..6, ["verify-loaded", ACTIVATE, RESTART_ACTIVATE]);
    assert_eq!(names(&done.steps), expected);
}

fn without(capability: &str) -> Grants {
    let mut g = Grants::all();
    g.capabilities.retain(|c| c != capability);
    g
}

#[test]
fn apply_refuses_before_any_request_when_a_grant_is_missing() {
    for (grants, why) in [
        (
            without("journal"),
            "journal is not granted: add \"journal\" to [[trust.signer]] capabilities",
        ),
        (
            Grants {
                http_methods: vec!["GET".into()],
                ..Grants::all()
            },
            "POST is not granted: add \"POST\" to [[trust.signer]] http_methods",
        ),
        (without("restart"), "restart is not granted"),
        (without("confirm"), "confirm is not granted"),
    ] {
        let mut fake = Fake::new(2);
        let failure = run_granted(&mut fake, Mode::Apply, &[], "t", grants).unwrap_err();
        assert_eq!(failure.step, PREFLIGHT);
        assert!(failure.reason.contains(why), "{}", failure.reason);
        assert!(failure.safe_to_resume);
        assert!(fake.requests.is_empty(), "{:?}", fake.requests);
        assert!(fake.hook_calls.is_empty(), "not even the hooks were asked");
    }
}

#[test]
fn plan_reports_what_the_grants_would_refuse_as_refused() {
    let mut fake = Fake::new(3);
    let get_only = Grants {
        http_methods: vec!["GET".into()],
        ..without("journal")
    };
    let report = run_granted(&mut fake, Mode::Plan, &[], "t", get_only).unwrap();
    assert!(fake.requests.iter().all(|r| r.starts_with("GET ")));
    let outcomes: Vec<(&str, Outcome)> = report
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.outcome))
        .collect();
    use Outcome::*;
    assert_eq!(
        outcomes,
        [
            (PREFLIGHT, Done),
            (PROPOSE, Refused),
            (DISTRIBUTE, Refused),
            (VERIFY_DISTRIBUTED, Planned),
            (RESTART_LOAD, Planned),
            ("verify-loaded", Refused),
            (ACTIVATE, Refused),
            (RESTART_ACTIVATE, Planned),
            (VERIFY_ACTIVATED, Refused),
        ]
    );
    assert_eq!(
        report.steps[1].detail,
        "refused: POST is not granted: add \"POST\" to [[trust.signer]] http_methods \
         (and to [http] methods); journal is not granted: add \"journal\" to \
         [[trust.signer]] capabilities"
    );

    // Without GET not even the plan can tell where the rotation stands.
    let mut fake = Fake::new(3);
    let no_http = without("http");
    let failure = run_granted(&mut fake, Mode::Plan, &[], "t", no_http).unwrap_err();
    assert_eq!(failure.step, PREFLIGHT);
    assert!(
        failure.reason.contains("http is not granted"),
        "{}",
        failure.reason
    );
    assert!(fake.requests.is_empty());
}

#[test]
fn plan_says_when_the_confirmation_cannot_be_answered() {
    let mut fake = Fake::new(2);
    let unanswerable = Grants {
        confirm_answerable: false,
        ..Grants::all()
    };
    let report = run_granted(&mut fake, Mode::Plan, &[], "t", unanswerable).unwrap();
    let activate = report.steps.iter().find(|s| s.name == ACTIVATE).unwrap();
    assert_eq!(activate.outcome, Outcome::Planned);
    assert!(
        activate
            .detail
            .ends_with("this run cannot answer it (no --yes and no terminal)"),
        "{}",
        activate.detail
    );
}
