//! Test fixture: a hostile hook (the `guarded-hook` world). Its `attack` parameter
//! names what it does:
//!
//! - `trap`: its `before` panics (a wasm trap) at the step its `step` parameter
//!   names (default `propose`);
//! - `spin`: its `before` loops forever at that step, without calling the host
//!   (its time limit stops it);
//! - `veto`: its `before` vetoes that step;
//! - `guard-trap`: its guard panics on every mutating call;
//! - `guard-spin`: its guard loops forever on every mutating call.
//!
//! Everything else is allowed. The end-to-end tests (`tests/e2e/hooks.rs`) assert
//! that each stops the run before the call it guards.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "guarded-hook" });

    use std::sync::Mutex;

    use self::cmk::procedure::types::Outcome;
    use self::exports::cmk::procedure::guard::{Guest as Guard, MutatingCall};
    use self::exports::cmk::procedure::hooks::Guest as Hooks;

    static CONFIG: Mutex<(String, String)> = Mutex::new((String::new(), String::new()));

    struct Hostile;

    fn spin() -> ! {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    impl Guest for Hostile {
        fn init(params: Vec<(String, String)>) -> Result<(), String> {
            let get = |key: &str| {
                params
                    .iter()
                    .rev()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            let attack = get("attack").ok_or("attack is required")?;
            let step = get("step").unwrap_or_else(|| "propose".into());
            *CONFIG.lock().unwrap() = (attack, step);
            Ok(())
        }
    }

    impl Hooks for Hostile {
        fn before(step: String, _observed: Vec<(String, String)>) -> Result<(), String> {
            let (attack, at) = CONFIG.lock().unwrap().clone();
            if step != at {
                return Ok(());
            }
            match attack.as_str() {
                "trap" => panic!("hostile hook: trap at {step}"),
                "spin" => spin(),
                "veto" => Err(format!("hostile hook: veto at {step}")),
                _ => Ok(()),
            }
        }

        fn after(_step: String, _outcome: Outcome, _observed: Vec<(String, String)>) {}
    }

    impl Guard for Hostile {
        fn check(call: MutatingCall) -> Result<(), String> {
            let (attack, _) = CONFIG.lock().unwrap().clone();
            match attack.as_str() {
                "guard-trap" => panic!("hostile guard: trap at {}", call.call),
                "guard-spin" => spin(),
                _ => Ok(()),
            }
        }
    }

    export!(Hostile);
}
