//! The load-time check: a component may import the `rotation` world's interfaces
//! and the WASI interfaces that Rust's std pulls in (linked to a deny-all context),
//! and nothing else. Checked on the compiled component's type, before anything is
//! instantiated or any pod is contacted, so a refused component never runs a line.

use wasmtime::Engine;
use wasmtime::component::Component;

/// The world's own package: its interfaces are the capabilities.
const WORLD_PACKAGE: &str = "cmk:procedure";
const WORLD_VERSION: &str = "0.1.0";
const WORLD_INTERFACES: &[&str] = &[
    "types", "pods", "http", "restart", "log", "journal", "confirm", "hooks",
];

/// What a hook component may import from the world: no restart, journal,
/// confirm or hooks, whatever its signer is granted.
const HOOK_INTERFACES: &[&str] = &["types", "pods", "http", "log"];

/// What `wasm32-wasip2` std (through wasi-libc) may import, whether used or not.
/// They are linked to the deny-all WASI context of `runtime::wasi`: no files, no
/// environment, no sockets. Any 0.2.x version: wasmtime links them semver-compatibly.
const WASI_INTERFACES: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// The export every procedure must have.
pub const PROCEDURE_EXPORT: &str = "cmk:procedure/procedure@0.1.0";

/// A component's imports and exports, by name, and the imports the host refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interfaces {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Imports outside the world and the WASI of std.
    pub refused: Vec<String>,
}

impl Interfaces {
    pub fn of(engine: &Engine, component: &Component) -> Interfaces {
        let ty = component.component_type();
        let mut imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let mut exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        imports.sort();
        exports.sort();
        let refused = imports
            .iter()
            .filter(|name| !import_allowed(name))
            .cloned()
            .collect();
        Interfaces {
            imports,
            exports,
            refused,
        }
    }

    /// `Err` names every refused import (and a missing procedure export), for exit 3.
    pub fn check(&self) -> Result<(), String> {
        if !self.exports.iter().any(|e| e == PROCEDURE_EXPORT) {
            return Err(format!(
                "refused: the component does not export {PROCEDURE_EXPORT} (it exports: {})",
                if self.exports.is_empty() {
                    "nothing".to_string()
                } else {
                    self.exports.join(", ")
                }
            ));
        }
        if self.refused.is_empty() {
            return Ok(());
        }
        Err(format!(
            "refused: the component imports {} outside the `rotation` world and the WASI of Rust std: {}",
            if self.refused.len() == 1 {
                "an interface"
            } else {
                "interfaces"
            },
            self.refused.join(", ")
        ))
    }
}

impl Interfaces {
    /// The load-time check of a hook: the `hook` world's imports (and the WASI of
    /// std) only, and its exports `init` and `hooks`.
    pub fn check_hook(&self) -> Result<(), String> {
        let export = crate::caps::hooks::HOOKS_EXPORT;
        if !self.exports.iter().any(|e| e == export) || !self.exports.iter().any(|e| e == "init") {
            return Err(format!(
                "refused: a hook must export `init` and {export} (it exports: {})",
                if self.exports.is_empty() {
                    "nothing".to_string()
                } else {
                    self.exports.join(", ")
                }
            ));
        }
        let refused: Vec<&String> = self
            .imports
            .iter()
            .filter(|name| !hook_import_allowed(name))
            .collect();
        if refused.is_empty() {
            return Ok(());
        }
        Err(format!(
            "refused: a hook imports only pods, http, log and the WASI of Rust std; it imports {}",
            refused
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Whether a hook may import `name`.
pub fn hook_import_allowed(name: &str) -> bool {
    let (path, version) = name.split_once('@').unwrap_or((name, ""));
    if let Some(iface) = path
        .strip_prefix(WORLD_PACKAGE)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        return version == WORLD_VERSION && HOOK_INTERFACES.contains(&iface);
    }
    import_allowed(name)
}

/// Whether the import `name` (`ns:pkg/iface@version`) is one the host provides.
pub fn import_allowed(name: &str) -> bool {
    let (path, version) = name.split_once('@').unwrap_or((name, ""));
    if let Some(iface) = path
        .strip_prefix(WORLD_PACKAGE)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        return version == WORLD_VERSION && WORLD_INTERFACES.contains(&iface);
    }
    WASI_INTERFACES.contains(&path) && version.starts_with("0.2.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_and_std_wasi_are_allowed() {
        for name in [
            "cmk:procedure/http@0.1.0",
            "cmk:procedure/types@0.1.0",
            "wasi:cli/environment@0.2.6",
            "wasi:sockets/tcp@0.2.0",
            "wasi:io/streams@0.2.3",
        ] {
            assert!(import_allowed(name), "{name}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for name in [
            "cmk:procedure/http@0.2.0",
            "cmk:procedure/exfil@0.1.0",
            "cmk:outside/exfil@0.1.0",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:cli/environment@0.3.0",
            "wasi:cli/environment",
            "env",
        ] {
            assert!(!import_allowed(name), "{name}");
        }
    }
}
