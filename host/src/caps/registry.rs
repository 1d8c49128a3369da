//! The capability registry: every function of every interface of `wit/procedure.wit`
//! (the `rotation` and `hook` worlds), with the grant it needs, how it counts against
//! the run's limits, what it can do to the cluster, and where that is enforced.
//!
//! One table, so that a new host function cannot skip the central check unnoticed:
//! the test below reads the WIT file and fails when it has a function this table
//! lacks, or the table a function the WIT no longer has. The gate
//! ([`super::gate::Gate::decide`]) looks the grant up here.

use crate::grants::Capability;

/// What a call can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reads only (the cluster, the journal, the host's own state).
    Read,
    /// Writes the host's own records (the journal, the log): never refused by a stop
    /// or the Lease, so that a stopping procedure can still say where it stands.
    Record,
    /// Changes the cluster: refused once the run is stopped or its Lease expired,
    /// recorded instead of executed in plan mode, put to the hook guards.
    Mutating,
    /// Mutating, and a request the site lists in `[http] irreversible` is sent only
    /// with a confirmation the host holds (`caps/confirm.rs`).
    IrreversibleCapable,
    /// Asks the operator; changes nothing by itself.
    Ask,
    /// An export of the component: the host calls it, the component does not.
    Export,
}

impl Effect {
    /// Whether the gate treats the call as a change to the cluster.
    pub fn mutating(self) -> bool {
        matches!(self, Effect::Mutating | Effect::IrreversibleCapable)
    }
}

/// One function of the WIT and its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The WIT interface (`pods`), or `world:<name>` for a function a world exports
    /// directly (`init` of `hook`).
    pub interface: &'static str,
    /// The function as the WIT spells it (`rolling-restart`).
    pub function: &'static str,
    /// The grant it needs; `None`: every component has it (or it is an export).
    pub grant: Option<Capability>,
    /// How it counts against `[limits]` and the other per-run limits.
    pub counts: &'static str,
    pub effect: Effect,
    /// Where the grant and the effect are enforced.
    pub enforced: &'static str,
}

const ONE: &str = "1 host call";

/// Every function of `wit/procedure.wit`.
pub const REGISTRY: &[Row] = &[
    Row {
        interface: "pods",
        function: "list",
        grant: Some(Capability::Pods),
        counts: ONE,
        effect: Effect::Read,
        enforced: "gate::decide (grant); caps/pods.rs (namespace and selector fixed by the site; the list becomes the http allow-list)",
    },
    Row {
        interface: "http",
        function: "get",
        grant: Some(Capability::Http),
        counts: "1 host call; its response within [http] max_response_bytes",
        effect: Effect::Read,
        enforced: "caps/http/policy.rs (URL allow-list, size); gate::decide (method and path grant)",
    },
    Row {
        interface: "http",
        function: "post",
        grant: Some(Capability::Http),
        counts: "1 host call; its body within [http] max_request_bytes",
        effect: Effect::IrreversibleCapable,
        enforced: "caps/http/policy.rs (URL allow-list, size); gate::decide (grant, stop, Lease fence, guards, plan, [http] irreversible confirmation)",
    },
    Row {
        interface: "http",
        function: "batch",
        grant: Some(Capability::Http),
        counts: "1 host call per request; at most [http] max_batch requests; the responses held at once within [http] max_held_response_bytes",
        effect: Effect::IrreversibleCapable,
        enforced: "caps/http/mod.rs (batch size, held bytes); gate::charge (host calls); gate::decide per request, as get and post",
    },
    Row {
        interface: "restart",
        function: "rolling-restart",
        grant: Some(Capability::Restart),
        counts: "1 host call; at most [restart] max_per_run per run",
        effect: Effect::Mutating,
        enforced: "caps/restart.rs (the site's mechanism); gate::decide (grant, stop, Lease fence, max_per_run, guards, plan)",
    },
    Row {
        interface: "log",
        function: "log",
        grant: Some(Capability::Log),
        counts: ONE,
        effect: Effect::Record,
        enforced: "gate::decide (grant); caps/log.rs (text bounds, one denial recorded)",
    },
    Row {
        interface: "log",
        function: "step-begin",
        grant: Some(Capability::Log),
        counts: ONE,
        effect: Effect::Record,
        enforced: "gate::decide (grant); caps/log.rs (text bounds, one denial recorded)",
    },
    Row {
        interface: "log",
        function: "step-end",
        grant: Some(Capability::Log),
        counts: ONE,
        effect: Effect::Record,
        enforced: "gate::decide (grant); caps/log.rs (text bounds, one denial recorded)",
    },
    Row {
        interface: "journal",
        function: "entries",
        grant: Some(Capability::Journal),
        counts: ONE,
        effect: Effect::Read,
        enforced: "gate::decide (grant); caps/journal.rs",
    },
    Row {
        interface: "journal",
        function: "set",
        grant: Some(Capability::Journal),
        counts: "1 host call; keys, values and entries within the journal's size limits",
        effect: Effect::Record,
        enforced: "gate::decide (grant; the write needs its permit); caps/journal.rs (sizes)",
    },
    Row {
        interface: "journal",
        function: "remove",
        grant: Some(Capability::Journal),
        counts: ONE,
        effect: Effect::Record,
        enforced: "gate::decide (grant; the write needs its permit); caps/journal.rs",
    },
    Row {
        interface: "confirm",
        function: "ask",
        grant: Some(Capability::Confirm),
        counts: "1 host call; a yes authorises one irreversible request",
        effect: Effect::Ask,
        enforced: "gate::decide (grant); caps/confirm.rs (who answers, the host's question)",
    },
    Row {
        interface: "hooks",
        function: "before",
        grant: None,
        counts: "1 host call; each hook's call within its [[hooks]] timeout_secs",
        effect: Effect::Read,
        enforced: "gate::decide; caps/hooks.rs (the site's hooks, in order; a veto stops the run at the gate)",
    },
    Row {
        interface: "hooks",
        function: "after",
        grant: None,
        counts: "1 host call; each hook's call within its [[hooks]] timeout_secs",
        effect: Effect::Read,
        enforced: "gate::decide; caps/hooks.rs",
    },
    Row {
        interface: "guard",
        function: "check",
        grant: None,
        counts: "the hook's [[hooks]] timeout_secs per call, in the hook's own store",
        effect: Effect::Export,
        enforced: "caps/hooks.rs Guards (the gate's Guard: asked before every mutating call that plan mode and a stop let through; a refusal, trap or timeout denies it and stops the run)",
    },
    Row {
        interface: "procedure",
        function: "run",
        grant: None,
        counts: "the run: [limits] memory_mib and wall_clock_secs",
        effect: Effect::Export,
        enforced: "runtime/mod.rs (limits, epoch deadline)",
    },
    Row {
        interface: "world:hook",
        function: "init",
        grant: None,
        counts: "the hook's [[hooks]] timeout_secs",
        effect: Effect::Export,
        enforced: "runtime/mod.rs (instantiate_hook)",
    },
];

/// The row of `interface`.`function`. Every call the gate decides names one; a
/// missing row is a host bug, caught by the tests below.
pub fn row(interface: &str, function: &str) -> &'static Row {
    REGISTRY
        .iter()
        .find(|r| r.interface == interface && r.function == function)
        .unwrap_or_else(|| panic!("no registry row for {interface}.{function}"))
}

/// Every function a WIT text defines, as (interface, function): functions of each
/// `interface`, and functions a `world` exports directly (`world:<name>`). A small
/// reader of the subset `wit/procedure.wit` uses, not a WIT parser.
pub fn wit_functions(wit: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    // (kind, name) of the block at depth 1, and the brace depth.
    let mut block: Option<(String, String)> = None;
    let mut depth = 0usize;
    for line in wit.lines() {
        let code = line.split("//").next().unwrap_or("").trim();
        if code.is_empty() {
            continue;
        }
        if depth == 0 {
            let mut words = code.split_whitespace();
            if let (Some(kind @ ("interface" | "world")), Some(name)) = (words.next(), words.next())
            {
                block = Some((kind.to_string(), name.trim_end_matches('{').to_string()));
            }
        } else if depth == 1
            && let Some((kind, name)) = &block
        {
            let decl = match kind.as_str() {
                "world" => code.strip_prefix("export ").map(str::trim),
                _ => Some(code),
            };
            if let Some((func, rest)) = decl.and_then(|d| d.split_once(':'))
                && rest.trim_start().starts_with("func")
            {
                let interface = match kind.as_str() {
                    "world" => format!("world:{name}"),
                    _ => name.clone(),
                };
                let func = func.trim().trim_start_matches('%').to_string();
                found.push((interface, func));
            }
        }
        for c in code.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if depth == 0 {
            block = None;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn table() -> BTreeSet<(String, String)> {
        REGISTRY
            .iter()
            .map(|r| (r.interface.to_string(), r.function.to_string()))
            .collect()
    }

    /// The WIT the host is built from, read now: a function added to it without a
    /// row here fails this test.
    #[test]
    fn the_registry_lists_every_function_of_the_wit_and_nothing_else() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/procedure.wit");
        let wit = std::fs::read_to_string(path).expect("read wit/procedure.wit");
        let functions: BTreeSet<(String, String)> = wit_functions(&wit).into_iter().collect();
        assert!(
            functions.len() >= 16,
            "the reader found too few: {functions:?}"
        );
        let table = table();
        let missing: Vec<_> = functions.difference(&table).collect();
        assert!(
            missing.is_empty(),
            "functions of wit/procedure.wit without a row in caps/registry.rs: {missing:?}"
        );
        let stale: Vec<_> = table.difference(&functions).cloned().collect();
        assert!(
            stale.is_empty(),
            "rows of caps/registry.rs for functions wit/procedure.wit does not have: {stale:?}"
        );
        assert_eq!(table.len(), REGISTRY.len(), "one row per function");
    }

    #[test]
    fn the_reader_finds_a_new_function_so_the_registry_test_would_fail() {
        let wit = "interface http {\n    enum method { get, post }\n    record r {\n        a: u8,\n    }\n    get: func(url: string) -> result<r, string>;\n    %delete: func(url: string);\n}\nworld hook {\n    import http;\n    export init: func(params: list<string>) -> result<_, string>;\n    export hooks;\n}\n";
        assert_eq!(
            wit_functions(wit),
            [
                ("http".to_string(), "get".to_string()),
                ("http".to_string(), "delete".to_string()),
                ("world:hook".to_string(), "init".to_string()),
            ]
        );
        let functions: BTreeSet<_> = wit_functions(wit).into_iter().collect();
        assert!(functions.difference(&table()).any(|(_, f)| f == "delete"));
    }

    #[test]
    fn every_function_a_component_imports_passes_the_gate() {
        for r in REGISTRY
            .iter()
            .filter(|r| !matches!(r.effect, Effect::Export))
        {
            assert!(r.enforced.contains("gate::decide"), "{r:?}");
        }
    }

    #[test]
    fn every_mutating_function_needs_a_grant_and_is_enforced_at_the_gate() {
        for r in REGISTRY.iter().filter(|r| r.effect.mutating()) {
            assert!(r.grant.is_some(), "{r:?}");
            assert!(r.enforced.contains("gate::decide"), "{r:?}");
        }
    }
}
