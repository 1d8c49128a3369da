//! Test fixture: a hostile hook. At the step its `step` parameter names (default
//! `propose`), its `before` does what its `attack` parameter says:
//!
//! - `trap`: panics (a wasm trap);
//! - `spin`: loops forever without calling the host (its time limit stops it).
//!
//! Every other step is allowed. The end-to-end tests (`tests/e2e/hooks.rs`) assert
//! that each stops the run before the step it guards.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "hook" });

    use std::sync::Mutex;

    use self::cmk::procedure::types::Outcome;
    use self::exports::cmk::procedure::hooks::Guest as Hooks;

    static CONFIG: Mutex<(String, String)> = Mutex::new((String::new(), String::new()));

    struct Hostile;

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
                "spin" => {
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                other => Err(format!("unknown attack {other:?}")),
            }
        }

        fn after(_step: String, _outcome: Outcome, _observed: Vec<(String, String)>) {}
    }

    export!(Hostile);
}
