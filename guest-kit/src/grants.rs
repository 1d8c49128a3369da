//! What the run is granted (the world's `grants`, in the run's `context`), and what a
//! step needs of it. A procedure checks its needs before it acts, so that it stops
//! before the first change instead of halfway; the host still enforces every call.
//!
//! A refusal names what is missing and the site key that grants it: the site file
//! grants `pods`, `log`, `journal` and `confirm`, `restart` with a `[restart]`
//! section, and HTTP by `[http] methods` and `paths`; each `[[trust.signer]]`
//! narrows that to its own `capabilities`, `http_methods` and `http_paths`.

use crate::types::Method;

/// The run's grants, as the host describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    /// `pods`, `http`, `restart`, `log`, `journal`, `confirm`.
    pub capabilities: Vec<String>,
    /// `GET`, `POST`.
    pub http_methods: Vec<String>,
    /// Path prefixes, each covering its subpaths.
    pub http_paths: Vec<String>,
    /// A confirmation can be answered yes (`confirm` granted, and `--yes` or a terminal).
    pub confirm_answerable: bool,
}

/// One thing a step needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A capability, by name.
    Capability(&'static str),
    /// An HTTP method on a path.
    Http(Method, &'static str),
}

impl Grants {
    /// Everything: what a run of the host's default site grants a trusted signer.
    pub fn all() -> Grants {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        Grants {
            capabilities: list(&["pods", "http", "restart", "log", "journal", "confirm"]),
            http_methods: list(&["GET", "POST"]),
            http_paths: list(&["/cluster/v1/key"]),
            confirm_answerable: true,
        }
    }

    pub fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    /// Why `need` would be refused, naming the key that grants it; `None` if granted.
    pub fn refusal(&self, need: Need) -> Option<String> {
        match need {
            Need::Capability(c) if self.has(c) => None,
            Need::Capability("restart") => Some(
                "restart is not granted: add \"restart\" to [[trust.signer]] capabilities \
                 (the site grants it with a [restart] section)"
                    .into(),
            ),
            Need::Capability(c) => Some(format!(
                "{c} is not granted: add \"{c}\" to [[trust.signer]] capabilities"
            )),
            Need::Http(..) if !self.has("http") => self.refusal(Need::Capability("http")),
            Need::Http(method, path) => {
                let m = method_name(method);
                if !self.http_methods.iter().any(|g| g.eq_ignore_ascii_case(m)) {
                    return Some(format!(
                        "{m} is not granted: add \"{m}\" to [[trust.signer]] http_methods \
                         (and to [http] methods)"
                    ));
                }
                if !self.http_paths.iter().any(|p| path_under(path, p)) {
                    return Some(format!(
                        "{m} {path} is outside the granted http paths: add \"{path}\" or a \
                         prefix of it to [[trust.signer]] http_paths (and to [http] paths)"
                    ));
                }
                None
            }
        }
    }

    /// The refusals of `needs`, each once, in order.
    pub fn refusals(&self, needs: impl IntoIterator<Item = Need>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for need in needs {
            if let Some(r) = self.refusal(need)
                && !out.contains(&r)
            {
                out.push(r);
            }
        }
        out
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
    }
}

/// `path` is `prefix` or below it, on a segment boundary (as the host decides it).
fn path_under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/') || prefix.ends_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROPOSE: Need = Need::Http(Method::Post, "/cluster/v1/key/propose");

    #[test]
    fn everything_is_granted_by_all() {
        let g = Grants::all();
        assert!(
            g.refusals([Need::Capability("journal"), PROPOSE])
                .is_empty()
        );
    }

    #[test]
    fn refusals_name_the_site_key_once_each() {
        let mut g = Grants::all();
        g.capabilities.retain(|c| c != "journal" && c != "restart");
        g.http_methods = vec!["GET".into()];
        let r = g.refusals([
            Need::Capability("journal"),
            PROPOSE,
            Need::Http(Method::Post, "/cluster/v1/key/activate"),
            Need::Capability("restart"),
            Need::Http(Method::Get, "/cluster/v1/key"),
        ]);
        assert_eq!(
            r,
            [
                "journal is not granted: add \"journal\" to [[trust.signer]] capabilities",
                "POST is not granted: add \"POST\" to [[trust.signer]] http_methods (and to [http] methods)",
                "restart is not granted: add \"restart\" to [[trust.signer]] capabilities (the site grants it with a [restart] section)",
            ]
        );
    }

    #[test]
    fn paths_are_judged_on_segment_boundaries() {
        let mut g = Grants::all();
        g.http_paths = vec!["/cluster/v1/key/fetch".into()];
        assert!(
            g.refusal(Need::Http(Method::Post, "/cluster/v1/key/fetch"))
                .is_none()
        );
        let r = g.refusal(PROPOSE).unwrap();
        assert!(
            r.starts_with("POST /cluster/v1/key/propose is outside"),
            "{r}"
        );
        g.capabilities.retain(|c| c != "http");
        assert!(
            g.refusal(PROPOSE)
                .unwrap()
                .starts_with("http is not granted")
        );
    }
}
