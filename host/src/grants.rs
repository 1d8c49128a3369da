//! Grants: what one run of one component may use, as a value.
//!
//! Deny by default, grant by builder (as wasmtime-wasi's `WasiCtxBuilder`): a run's
//! grants are computed once, before the component is instantiated, from the site
//! (and, later, from the signer that verified the component), printed by `--plan`
//! and `inspect`, and read by each capability at its own boundary.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

/// A capability of the `rotation` world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Pods,
    Http,
    Restart,
    Log,
    /// The per-cluster journal a procedure resumes from (state it can corrupt).
    Journal,
    /// Asking the operator before the point of no return.
    Confirm,
}

impl Capability {
    pub const ALL: [Capability; 6] = [
        Capability::Pods,
        Capability::Http,
        Capability::Restart,
        Capability::Log,
        Capability::Journal,
        Capability::Confirm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Capability::Pods => "pods",
            Capability::Http => "http",
            Capability::Restart => "restart",
            Capability::Log => "log",
            Capability::Journal => "journal",
            Capability::Confirm => "confirm",
        }
    }

    pub fn parse(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// An HTTP method the `http` capability can be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
}

impl HttpMethod {
    pub fn name(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }
}

/// What a run may use. [`Grants::none`] grants nothing; each builder call adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grants {
    pub capabilities: BTreeSet<Capability>,
    /// Methods `http` may use (only meaningful with [`Capability::Http`]).
    pub http_methods: BTreeSet<HttpMethod>,
    /// Path prefixes `http` may request (only meaningful with [`Capability::Http`]).
    pub http_paths: Vec<String>,
}

impl Grants {
    /// Nothing at all.
    pub fn none() -> Grants {
        Grants {
            capabilities: BTreeSet::new(),
            http_methods: BTreeSet::new(),
            http_paths: Vec::new(),
        }
    }

    pub fn allow(mut self, capability: Capability) -> Grants {
        self.capabilities.insert(capability);
        self
    }

    pub fn allow_http(
        mut self,
        methods: impl IntoIterator<Item = HttpMethod>,
        paths: impl IntoIterator<Item = String>,
    ) -> Grants {
        self.capabilities.insert(Capability::Http);
        self.http_methods.extend(methods);
        self.http_paths.extend(paths);
        self
    }

    pub fn allows(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    /// Whether `http` may send `method` to `path` (after URL normalisation).
    pub fn allows_http(&self, method: HttpMethod, path: &str) -> Result<(), String> {
        if !self.allows(Capability::Http) {
            return Err("http is not granted".into());
        }
        if !self.http_methods.contains(&method) {
            return Err(format!("method {} is not granted", method.name()));
        }
        if !self
            .http_paths
            .iter()
            .any(|prefix| path_under(path, prefix))
        {
            return Err(format!(
                "path {path:?} is outside the allowed prefixes {:?}",
                self.http_paths
            ));
        }
        Ok(())
    }

    /// What of these a read-only run may use: the pod list, the log, and GET under
    /// the same paths. No POST, no restart, no journal, no confirmation.
    pub fn read_only(&self) -> Grants {
        let mut grants = Grants::none();
        for capability in [Capability::Pods, Capability::Log] {
            if self.allows(capability) {
                grants = grants.allow(capability);
            }
        }
        if self.allows(Capability::Http) && self.http_methods.contains(&HttpMethod::Get) {
            grants = grants.allow_http([HttpMethod::Get], self.http_paths.clone());
        }
        grants
    }

    /// Whether a run with these grants can change the cluster (POST or restart):
    /// only such a run takes the cluster's Lease.
    pub fn can_change_cluster(&self) -> bool {
        self.allows(Capability::Restart)
            || (self.allows(Capability::Http) && self.http_methods.contains(&HttpMethod::Post))
    }

    /// What both grant: a signer's grants within the site's.
    pub fn intersect(&self, other: &Grants) -> Grants {
        let capabilities = self
            .capabilities
            .intersection(&other.capabilities)
            .copied()
            .collect();
        let http_methods = self
            .http_methods
            .intersection(&other.http_methods)
            .copied()
            .collect();
        // A path is allowed by both when it is under a prefix of each; the narrower
        // of two nested prefixes is the one that both allow.
        let mut http_paths = Vec::new();
        for a in &self.http_paths {
            for b in &other.http_paths {
                let narrower = if path_under(a, b) {
                    Some(a)
                } else if path_under(b, a) {
                    Some(b)
                } else {
                    None
                };
                if let Some(p) = narrower
                    && !http_paths.contains(p)
                {
                    http_paths.push(p.clone());
                }
            }
        }
        Grants {
            capabilities,
            http_methods,
            http_paths,
        }
    }
}

/// `path` is `prefix` or below it, on a segment boundary (`/key` covers `/key/x`,
/// not `/keys`).
pub fn path_under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/') || prefix.ends_with('/'))
}

impl fmt::Display for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for c in &self.capabilities {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            f.write_str(c.name())?;
            if *c == Capability::Http {
                let methods: Vec<_> = self.http_methods.iter().map(|m| m.name()).collect();
                write!(
                    f,
                    " ({} under {})",
                    methods.join("/"),
                    self.http_paths.join(", ")
                )?;
            }
        }
        if first {
            f.write_str("nothing")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_keeps_pods_log_and_get_only() {
        let all = Grants::none()
            .allow(Capability::Pods)
            .allow(Capability::Log)
            .allow(Capability::Restart)
            .allow(Capability::Journal)
            .allow(Capability::Confirm)
            .allow_http(
                [HttpMethod::Get, HttpMethod::Post],
                ["/cluster/v1/key".into()],
            );
        assert!(all.can_change_cluster());
        let read = all.read_only();
        assert_eq!(
            read.capabilities
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>(),
            ["pods", "http", "log"]
        );
        assert_eq!(read.http_methods.len(), 1);
        assert!(read.allows_http(HttpMethod::Get, "/cluster/v1/key").is_ok());
        assert!(
            read.allows_http(HttpMethod::Post, "/cluster/v1/key")
                .is_err()
        );
        assert!(!read.can_change_cluster());
    }

    fn site() -> Grants {
        Grants::none()
            .allow(Capability::Pods)
            .allow(Capability::Log)
            .allow(Capability::Restart)
            .allow_http(
                [HttpMethod::Get, HttpMethod::Post],
                ["/cluster/v1/key".to_string()],
            )
    }

    #[test]
    fn none_grants_nothing() {
        let g = Grants::none();
        assert!(Capability::ALL.iter().all(|c| !g.allows(*c)));
        assert!(g.allows_http(HttpMethod::Get, "/cluster/v1/key").is_err());
        assert_eq!(g.to_string(), "nothing");
    }

    #[test]
    fn http_checks_method_and_path_on_segment_boundaries() {
        let g = site();
        assert!(
            g.allows_http(HttpMethod::Post, "/cluster/v1/key/propose")
                .is_ok()
        );
        assert!(g.allows_http(HttpMethod::Get, "/cluster/v1/keys").is_err());
        let read_only =
            Grants::none().allow_http([HttpMethod::Get], ["/cluster/v1/key".to_string()]);
        let err = read_only
            .allows_http(HttpMethod::Post, "/cluster/v1/key/propose")
            .unwrap_err();
        assert_eq!(err, "method POST is not granted");
    }

    #[test]
    fn intersection_keeps_what_both_grant() {
        let signer = Grants::none().allow(Capability::Pods).allow_http(
            [HttpMethod::Get],
            ["/cluster/v1/key/status".to_string(), "/admin".to_string()],
        );
        let both = site().intersect(&signer);
        assert_eq!(
            both.capabilities,
            [Capability::Pods, Capability::Http].into_iter().collect()
        );
        assert_eq!(both.http_methods, [HttpMethod::Get].into_iter().collect());
        assert_eq!(both.http_paths, ["/cluster/v1/key/status"]);
        assert_eq!(
            both.to_string(),
            "pods, http (GET under /cluster/v1/key/status)"
        );
    }
}
