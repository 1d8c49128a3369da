//! `hook-dr-rejoin`: a site hook that, once `verify-activated` is done, logs which
//! DR and cold-standby nodes must now rejoin the cluster (the runbook's last step,
//! which no procedure can do for them). Granted `log` only; it never vetoes.
//!
//! Parameters (its own `[[hooks]] params`): `dr_nodes` (required): node names,
//! comma-separated.

/// The step after which the nodes must rejoin.
pub const AFTER: &str = "verify-activated";

/// The node names of `dr_nodes`; any other parameter name is an error.
pub fn dr_nodes(params: &[(String, String)]) -> Result<Vec<String>, String> {
    let mut nodes = None;
    for (key, value) in params {
        match key.as_str() {
            "dr_nodes" => {
                let list: Vec<String> = value
                    .split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect();
                if list.is_empty() {
                    return Err("dr_nodes lists no node".into());
                }
                nodes = Some(list);
            }
            other => return Err(guest_kit::params::unknown(other, &["dr_nodes"])),
        }
    }
    nodes.ok_or_else(|| "dr_nodes is required (node names, comma-separated)".into())
}

/// The lines to log after `step` ended (`done`: whether it succeeded).
pub fn lines(step: &str, done: bool, nodes: &[String]) -> Vec<String> {
    if step != AFTER || !done {
        return Vec::new();
    }
    let mut out = vec![format!(
        "the new cluster master key is active: {} DR and cold-standby node(s) must now rejoin the cluster",
        nodes.len()
    )];
    out.extend(nodes.iter().map(|n| format!("must rejoin: {n}")));
    out
}

#[cfg(target_arch = "wasm32")]
mod component {
    // The imports are guest-kit's bindings, generated once for every guest; only
    // the hook world's exports are generated here.
    wit_bindgen::generate!({
        path: "../../wit",
        world: "hook",
        with: {
            "cmk:procedure/types@0.1.0": guest_kit::wasm::cmk::procedure::types,
            "cmk:procedure/pods@0.1.0": guest_kit::wasm::cmk::procedure::pods,
            "cmk:procedure/http@0.1.0": guest_kit::wasm::cmk::procedure::http,
            "cmk:procedure/log@0.1.0": guest_kit::wasm::cmk::procedure::log,
        },
    });

    use std::sync::Mutex;

    use self::exports::cmk::procedure::hooks::Guest as Hooks;
    use guest_kit::wasm::cmk::procedure::log::{self, Level};
    use guest_kit::wasm::cmk::procedure::types::Outcome;

    static NODES: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct DrRejoin;

    impl Guest for DrRejoin {
        fn init(params: Vec<(String, String)>) -> Result<(), String> {
            *NODES.lock().map_err(|e| e.to_string())? = super::dr_nodes(&params)?;
            Ok(())
        }
    }

    impl Hooks for DrRejoin {
        fn before(_step: String, _observed: Vec<(String, String)>) -> Result<(), String> {
            Ok(())
        }

        fn after(step: String, outcome: Outcome, observed: Vec<(String, String)>) {
            let nodes = NODES.lock().map(|n| n.clone()).unwrap_or_default();
            let version = observed
                .iter()
                .find(|(k, _)| k == "version")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            for line in super::lines(&step, matches!(outcome, Outcome::Done), &nodes) {
                log::log(Level::Warn, &line, &[("version".into(), version.clone())]);
            }
        }
    }

    export!(DrRejoin);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_comma_separated_and_required() {
        let p = vec![("dr_nodes".to_string(), " dr-1, cold-1 ,".to_string())];
        assert_eq!(dr_nodes(&p).unwrap(), vec!["dr-1", "cold-1"]);
        assert!(dr_nodes(&[]).is_err());
        assert!(dr_nodes(&[("dr_nodes".into(), " , ".into())]).is_err());
    }

    #[test]
    fn logs_only_after_a_done_verify_activated() {
        let nodes = vec!["dr-1".to_string()];
        assert!(lines("activate", true, &nodes).is_empty());
        assert!(lines(AFTER, false, &nodes).is_empty());
        assert_eq!(lines(AFTER, true, &nodes)[1], "must rejoin: dr-1");
    }
}
