//! `hello-procedure`: the smallest useful procedure, and the template that
//! `docs/writing-procedures.md` starts from. It lists the cluster's pods, logs a
//! greeting to each, and reports one step. It changes nothing.
//!
//! Keep the decisions in plain Rust (here [`greet`]) so that `cargo test` checks
//! them natively; keep the `component` module a thin adapter onto the world's
//! imports and export.

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
            other => return Err(format!("unknown parameter `{other}` (known: greeting)")),
        }
    }
    if pods.is_empty() {
        return Err("no pods match the site's selector".into());
    }
    Ok(format!("{greeting}, {}", pods.join(", ")))
}

#[cfg(target_arch = "wasm32")]
mod component {
    // The world every procedure implements: `wit/procedure.wit`, world `rotation`.
    wit_bindgen::generate!({ path: "../../wit", world: "rotation" });

    use self::cmk::procedure::types::Outcome;
    use self::cmk::procedure::{log, pods};
    use self::exports::cmk::procedure::procedure::{Context, Failure, Guest, Report, Step};

    struct Hello;

    impl Guest for Hello {
        fn run(ctx: Context) -> Result<Report, Failure> {
            // Every failure is a typed value the host reports (exit 1), never a panic.
            let fail = |reason: String| Failure {
                step: "hello".into(),
                reason,
                // Nothing was changed, so running again is safe.
                safe_to_resume: true,
                steps: Vec::new(),
            };
            log::step_begin("hello", "listing the pods");
            let pods = match pods::list() {
                Ok(pods) => pods,
                Err(pods::PodsError::Denied(m) | pods::PodsError::Unavailable(m)) => {
                    log::step_end("hello", Outcome::Failed, &m);
                    return Err(fail(format!("cannot list the pods: {m}")));
                }
            };
            let names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
            let detail = match super::greet(&ctx.params, &names) {
                Ok(detail) => detail,
                Err(reason) => {
                    log::step_end("hello", Outcome::Failed, &reason);
                    return Err(fail(reason));
                }
            };
            for pod in &pods {
                let ip = pod.ip.clone().unwrap_or_else(|| "-".into());
                log::log(
                    log::Level::Info,
                    "greeted",
                    &[("pod".into(), pod.name.clone()), ("ip".into(), ip)],
                );
            }
            log::step_end("hello", Outcome::Done, &detail);
            Ok(Report {
                steps: vec![Step {
                    name: "hello".into(),
                    outcome: Outcome::Done,
                    detail,
                }],
                version_before: None,
                version_after: None,
                pods: pods.len() as u32,
            })
        }
    }

    export!(Hello);
}

#[cfg(test)]
mod tests {
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
}
