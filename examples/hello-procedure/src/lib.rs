//! `hello-procedure`: the smallest useful procedure, and the template that
//! `docs/writing-procedures.md` starts from. It lists the cluster's pods, logs a
//! greeting to each, and reports one step. It changes nothing.
//!
//! It has the shape of the bundled rotation (`guest-rotate`), in one file:
//! - a **table** ([`STEPS`]): every step in order, what it needs of the run's grants,
//!   and the check it must pass before the next step begins;
//! - a **driver** ([`run`]): checks the grants before anything is done, then walks
//!   the table; apply takes each step and checks it, plan walks the same table and
//!   only reports;
//! - the **steps** ([`hello`]), written against [`guest_kit::host::Read`] (the
//!   world's imports as a trait), so that `cargo test` runs them on a fake;
//! - the **component**: three lines on the bindings `guest_kit::wasm` generates once
//!   for every procedure.
//!
//! The shared glue (bindings, grants, the step ledger, the status reader with
//! retries) is `guest-kit`; keep your crate to its decisions.

use guest_kit::grants::Need;
use guest_kit::host::Read;
use guest_kit::ledger::Ledger;
use guest_kit::types::{Context, Failure, Level, Mode, Outcome, Report};

/// One row of the table: a step, what it needs, and the check after it.
pub struct Step {
    pub name: &'static str,
    /// What it does, shown as it begins (and listed by plan).
    pub does: &'static str,
    /// What the step needs of the run's grants: checked before the first step acts.
    pub needs: &'static [Need],
    /// What must hold before the next step begins.
    pub check: &'static str,
    /// Acts and checks; the `Ok` text is the step's detail.
    pub take: fn(&mut dyn Read, &mut State) -> Result<String, String>,
}

/// What the run knows as it goes.
pub struct State {
    pub params: Vec<(String, String)>,
    /// The pods seen, once listed.
    pub pods: u32,
}

/// The table: every step, in order. A procedure that changes the cluster has one
/// row list per phase it can observe (see `guest-rotate/src/table.rs`).
pub const STEPS: &[Step] = &[Step {
    name: "hello",
    does: "listing the pods",
    needs: &[Need::Capability("pods"), Need::Capability("log")],
    check: "at least one pod matches the site's selector",
    take: hello,
}];

/// The driver: the grants first, then each step of the table in order.
pub fn run(host: &mut impl Read, ctx: &Context) -> Result<Report, Failure> {
    let mut ledger = Ledger::default();
    let mut state = State {
        params: ctx.params.clone(),
        pods: 0,
    };
    // Nothing is done unless every step can be: refuse before the first acts.
    let refused = ctx
        .grants
        .refusals(STEPS.iter().flat_map(|s| s.needs).copied());
    if ctx.mode == Mode::Apply && !refused.is_empty() {
        let first = STEPS[0].name;
        ledger.begin(host, first, "check the run's grants");
        return Err(ledger.fail(host, first, refused.join("; "), true));
    }
    for step in STEPS {
        if ctx.mode == Mode::Plan {
            let why = ctx.grants.refusals(step.needs.iter().copied());
            match why.is_empty() {
                true => ledger.note(host, step.name, Outcome::Planned, step.does.into()),
                false => ledger.note(host, step.name, Outcome::Refused, why.join("; ")),
            }
            continue;
        }
        ledger.begin(host, step.name, step.does);
        // Every failure is a typed value the host reports (exit 1), never a panic;
        // nothing was changed, so running again is safe.
        match (step.take)(host, &mut state) {
            Ok(detail) => ledger.end(host, step.name, Outcome::Done, detail),
            Err(reason) => return Err(ledger.fail(host, step.name, reason, true)),
        }
    }
    Ok(Report {
        steps: ledger.into_steps(),
        version_before: None,
        version_after: None,
        pods: state.pods,
    })
}

/// The `hello` step: lists the pods and greets each one.
pub fn hello(host: &mut dyn Read, state: &mut State) -> Result<String, String> {
    let pods = host
        .list_pods()
        .map_err(|e| format!("cannot list the pods: {e}"))?;
    let names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
    let detail = greet(&state.params, &names)?;
    for pod in &pods {
        let ip = pod.ip.as_deref().unwrap_or("-");
        host.log(Level::Info, "greeted", &[("pod", &pod.name), ("ip", ip)]);
    }
    state.pods = pods.len() as u32;
    Ok(detail)
}

/// The text of the `hello` step for these pod names, or why there is none.
///
/// Parameters (the site's port, its `[params]`, then `--param K=V`; later entries
/// win): `greeting` (default `hello`). `port` (the site's `[cluster] port`, which the
/// host passes to every procedure) is accepted and unused: this procedure sends no
/// request. Any other name is an error, so a typo is caught.
pub fn greet(params: &[(String, String)], pods: &[String]) -> Result<String, String> {
    let mut greeting = "hello".to_string();
    for (key, value) in params {
        match key.as_str() {
            "greeting" => greeting = value.trim().to_string(),
            "port" => {}
            other => return Err(guest_kit::params::unknown(other, &["greeting"])),
        }
    }
    if pods.is_empty() {
        return Err("no pods match the site's selector".into());
    }
    Ok(format!("{greeting}, {}", pods.join(", ")))
}

#[cfg(target_arch = "wasm32")]
mod component {
    use guest_kit::wasm::{self, Guest, WitContext, WitResult};

    struct Hello;

    impl Guest for Hello {
        fn run(ctx: WitContext) -> WitResult {
            wasm::run(ctx, super::run)
        }
    }

    wasm::export!(Hello);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use guest_kit::grants::Grants;
    use guest_kit::host::Clock;
    use guest_kit::types::{HttpError, Pod, PodsError, Response};

    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("sdkms-{i}")).collect()
    }

    #[test]
    fn greets_every_pod_with_the_last_greeting_given() {
        assert_eq!(greet(&[], &names(2)).unwrap(), "hello, sdkms-0, sdkms-1");
        let params = [
            ("greeting".to_string(), "hi".to_string()),
            ("greeting".to_string(), "good morning".to_string()),
        ];
        assert_eq!(greet(&params, &names(1)).unwrap(), "good morning, sdkms-0");
    }

    #[test]
    fn unknown_parameters_and_no_pods_are_errors() {
        let e = greet(&[("greting".into(), "x".into())], &names(1)).unwrap_err();
        assert!(e.contains("`greting`"), "{e}");
        assert!(greet(&[], &[]).is_err());
    }

    /// The pods, and the steps as the host would show them.
    #[derive(Default)]
    struct Fake {
        pods: Vec<Pod>,
        shown: Vec<String>,
    }

    impl Clock for Fake {
        fn sleep(&mut self, _: Duration) {}
        fn now(&mut self) -> Duration {
            Duration::ZERO
        }
    }

    impl Read for Fake {
        fn list_pods(&mut self) -> Result<Vec<Pod>, PodsError> {
            Ok(self.pods.clone())
        }
        fn get(&mut self, _: &str) -> Result<Response, HttpError> {
            unreachable!("the template reads no pod")
        }
        fn get_all(&mut self, _: &[String]) -> Vec<Result<Response, HttpError>> {
            unreachable!("the template reads no pod")
        }
        fn log(&mut self, _: Level, _: &str, _: &[(&str, &str)]) {}
        fn step_begin(&mut self, name: &str, _: &str) {
            self.shown.push(format!("begin {name}"));
        }
        fn step_end(&mut self, name: &str, outcome: Outcome, _: &str) {
            self.shown.push(format!("end {name} {outcome:?}"));
        }
    }

    fn ctx(mode: Mode, grants: Grants) -> Context {
        Context {
            mode,
            params: vec![("greeting".into(), "hi".into())],
            cluster: "test".into(),
            grants,
        }
    }

    fn fake(n: usize) -> Fake {
        let pods = names(n)
            .into_iter()
            .map(|name| Pod {
                name,
                ip: Some("10.0.0.1".into()),
                ready: true,
                phase: "Running".into(),
            })
            .collect();
        Fake {
            pods,
            ..Fake::default()
        }
    }

    #[test]
    fn apply_takes_every_step_and_plan_lists_the_same() {
        let mut f = fake(2);
        let report = run(&mut f, &ctx(Mode::Apply, Grants::all())).unwrap();
        assert_eq!(report.steps[0].detail, "hi, sdkms-0, sdkms-1");
        assert_eq!(report.pods, 2);
        assert_eq!(f.shown, ["begin hello", "end hello Done"]);
        let plan = run(&mut fake(2), &ctx(Mode::Plan, Grants::all())).unwrap();
        let names = |r: &Report| r.steps.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&plan), names(&report));
        assert_eq!(plan.steps[0].outcome, Outcome::Planned);
    }

    #[test]
    fn a_missing_grant_stops_before_any_step_acts() {
        let mut grants = Grants::all();
        grants.capabilities.retain(|c| c != "pods");
        let failure = run(&mut fake(2), &ctx(Mode::Apply, grants)).unwrap_err();
        assert!(
            failure.reason.starts_with("pods is not granted"),
            "{}",
            failure.reason
        );
        assert_eq!(failure.step, "hello");
    }
}
