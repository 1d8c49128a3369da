//! `hook-quorum`: a site hook that refuses a propose unless at least `min_pods` pods
//! are Ready.
//!
//! Its guard (the `guarded-hook` world) is what holds the quorum: the host asks it
//! before every mutating call of whichever procedure runs, with the host's own pod
//! list, and it refuses `POST .../key/propose` below the quorum. Its step hook
//! vetoes the `propose` step the same way, earlier and with the step's name, for a
//! procedure that calls its hooks; it lists the pods itself (granted `pods` and
//! `log`), so it does not depend on what the rotation chose to report.
//!
//! Parameters (its own `[[hooks]] params`): `min_pods` (required, at least 1).

/// The step this hook guards.
pub const GUARDED: &str = "propose";

/// `min_pods` from the hook's params; any other name is an error (a typo is caught).
pub fn min_pods(params: &[(String, String)]) -> Result<usize, String> {
    let mut min = None;
    for (key, value) in params {
        match key.as_str() {
            "min_pods" => {
                let n: usize = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("min_pods must be a whole number, not {value:?}"))?;
                if n == 0 {
                    return Err("min_pods must be at least 1".into());
                }
                min = Some(n);
            }
            other => return Err(guest_kit::params::unknown(other, &["min_pods"])),
        }
    }
    min.ok_or_else(|| "min_pods is required".into())
}

/// The request path whose POST the guard holds to the quorum.
pub const GUARDED_PATH: &str = "/cluster/v1/key/propose";

/// The guard's decision on a mutating call (`POST /path` or `rolling-restart`):
/// a propose needs the quorum; every other call is allowed.
pub fn guard(min: usize, call: &str, ready: usize, total: usize) -> Result<(), String> {
    let is_propose = call
        .strip_prefix("POST ")
        .is_some_and(|path| path.trim_end_matches('/').ends_with(GUARDED_PATH));
    if !is_propose {
        return Ok(());
    }
    decide(min, ready, total).map(|_| ())
}

/// Allows the step when `ready` of `total` pods reach `min`; else the veto's reason.
pub fn decide(min: usize, ready: usize, total: usize) -> Result<String, String> {
    if ready >= min {
        Ok(format!(
            "quorum: {ready} of {total} pods Ready (min_pods {min})"
        ))
    } else {
        Err(format!(
            "quorum not met: {ready} of {total} pods Ready, min_pods is {min}"
        ))
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../wit", world: "guarded-hook" });

    use std::sync::atomic::{AtomicUsize, Ordering};

    use self::cmk::procedure::log::{self, Level};
    use self::cmk::procedure::pods;
    use self::cmk::procedure::types::Outcome;
    use self::exports::cmk::procedure::guard::{Guest as Guard, MutatingCall};
    use self::exports::cmk::procedure::hooks::Guest as Hooks;

    static MIN_PODS: AtomicUsize = AtomicUsize::new(0);

    struct Quorum;

    impl Guest for Quorum {
        fn init(params: Vec<(String, String)>) -> Result<(), String> {
            MIN_PODS.store(super::min_pods(&params)?, Ordering::Relaxed);
            Ok(())
        }
    }

    impl Hooks for Quorum {
        fn before(step: String, _observed: Vec<(String, String)>) -> Result<(), String> {
            if step != super::GUARDED {
                return Ok(());
            }
            let pods = pods::list().map_err(|e| format!("cannot list the pods: {e:?}"))?;
            let ready = pods.iter().filter(|p| p.ready).count();
            let min = MIN_PODS.load(Ordering::Relaxed);
            match super::decide(min, ready, pods.len()) {
                Ok(line) => {
                    log::log(Level::Info, &line, &[]);
                    Ok(())
                }
                Err(reason) => {
                    log::log(Level::Error, &reason, &[]);
                    Err(reason)
                }
            }
        }

        fn after(_step: String, _outcome: Outcome, _observed: Vec<(String, String)>) {}
    }

    impl Guard for Quorum {
        fn check(call: MutatingCall) -> Result<(), String> {
            let min = MIN_PODS.load(Ordering::Relaxed);
            super::guard(min, &call.call, call.ready as usize, call.pods.len())
        }
    }

    export!(Quorum);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.to_string(), v.to_string())]
    }

    #[test]
    fn min_pods_is_required_and_checked() {
        assert_eq!(min_pods(&p("min_pods", "3")), Ok(3));
        assert!(min_pods(&[]).is_err());
        assert!(min_pods(&p("min_pods", "0")).is_err());
        assert!(min_pods(&p("min_pods", "x")).is_err());
        assert!(
            min_pods(&p("min_pod", "3"))
                .unwrap_err()
                .contains("unknown")
        );
    }

    #[test]
    fn the_guard_holds_only_a_propose_to_the_quorum() {
        let propose = "POST /cluster/v1/key/propose";
        assert_eq!(
            guard(4, propose, 3, 3).unwrap_err(),
            "quorum not met: 3 of 3 pods Ready, min_pods is 4"
        );
        assert_eq!(guard(3, propose, 3, 3), Ok(()));
        assert!(guard(4, "POST /cluster/v1/key/propose/", 3, 3).is_err());
        assert_eq!(guard(4, "POST /cluster/v1/key/fetch", 3, 3), Ok(()));
        assert_eq!(guard(4, "rolling-restart", 0, 3), Ok(()));
    }

    #[test]
    fn vetoes_below_the_minimum() {
        assert!(decide(3, 3, 3).is_ok());
        assert_eq!(
            decide(4, 3, 3).unwrap_err(),
            "quorum not met: 3 of 3 pods Ready, min_pods is 4"
        );
    }
}
