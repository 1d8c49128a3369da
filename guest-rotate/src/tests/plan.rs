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
