//! Kubernetes label selectors, as the API server parses the `labelSelector` query
//! parameter: equality (`a=b`, `a==b`, `a!=b`), set-based (`a in (x,y)`,
//! `a notin (x)`), existence (`a`, `!a`), requirements joined by commas (AND).
//!
//! The simulated API server must filter exactly as a real one does, or a host bug in
//! the selector it sends (e.g. a typo that matches nothing) would go unnoticed.

use std::collections::{BTreeMap, BTreeSet};

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed selector: all requirements must hold. The empty selector matches all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector(pub Vec<Requirement>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {reason}")]
pub struct SelectorError {
    pub selector: String,
    pub reason: String,
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            // As in Kubernetes: `a!=b` also matches objects without the label.
            Requirement::NotEq(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        }
    }
}

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| r.matches(labels))
    }

    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let err = |reason: &str| SelectorError {
            selector: input.to_string(),
            reason: reason.to_string(),
        };
        let mut reqs = Vec::new();
        for part in split_top_level(input).map_err(|r| err(&r))? {
            let part = part.trim();
            if part.is_empty() {
                if input.trim().is_empty() {
                    continue;
                }
                return Err(err("empty requirement"));
            }
            reqs.push(parse_requirement(part).map_err(|r| err(&r))?);
        }
        Ok(Selector(reqs))
    }
}

/// Split on commas that are not inside parentheses (set values contain commas).
fn split_top_level(input: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".into());
                }
            }
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    parts.push(&input[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        check_key(key)?;
        return Ok(Requirement::NotExists(key.to_string()));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEq(key(k)?, value(v)?));
    }
    if let Some((k, v)) = part.split_once("==") {
        return Ok(Requirement::Eq(key(k)?, value(v)?));
    }
    if let Some((k, v)) = part.split_once('=') {
        return Ok(Requirement::Eq(key(k)?, value(v)?));
    }
    // Set-based: `key in (a,b)` / `key notin (a)`; the operator is a separate word.
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let k = key(words[0])?;
        let rest = words[1].trim_start();
        let (op, set) = if let Some(s) = rest.strip_prefix("notin") {
            ("notin", s)
        } else if let Some(s) = rest.strip_prefix("in") {
            ("in", s)
        } else {
            return Err(format!("unknown operator in {part:?}"));
        };
        let set = set.trim();
        let inner = set
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(|| format!("expected a parenthesised set in {part:?}"))?;
        let values = inner
            .split(',')
            .map(value)
            .collect::<Result<BTreeSet<_>, _>>()?;
        if inner.trim().is_empty() {
            return Err(format!("empty set in {part:?}"));
        }
        return Ok(if op == "in" {
            Requirement::In(k, values)
        } else {
            Requirement::NotIn(k, values)
        });
    }
    Ok(Requirement::Exists(key(part)?))
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    check_key(k)?;
    Ok(k.to_string())
}

/// Label keys: an optional DNS-subdomain prefix and `/`, then a name of
/// alphanumerics, `-`, `_`, `.` (starting and ending alphanumeric), at most 63 chars.
fn check_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && (p.is_empty()
            || p.len() > 253
            || !p
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'))
    {
        return Err(format!("invalid label key prefix in {k:?}"));
    }
    if name.is_empty() || !valid_name(name) {
        return Err(format!("invalid label key {k:?}"));
    }
    Ok(())
}

fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    // Values may be empty; otherwise they follow the same rules as key names.
    if !v.is_empty() && !valid_name(v) {
        return Err(format!("invalid label value {v:?}"));
    }
    Ok(v.to_string())
}

fn valid_name(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn m(sel: &str, pairs: &[(&str, &str)]) -> bool {
        Selector::parse(sel).unwrap().matches(&labels(pairs))
    }

    #[test]
    fn equality() {
        assert!(m("app=sdkms", &[("app", "sdkms")]));
        assert!(m("app==sdkms", &[("app", "sdkms")]));
        assert!(!m("app=sdkms", &[("app", "other")]));
        assert!(!m("app=sdkms", &[]));
        assert!(m("app!=sdkms", &[("app", "other")]));
        assert!(m("app!=sdkms", &[]));
        assert!(!m("app!=sdkms", &[("app", "sdkms")]));
        assert!(m(" app = sdkms ", &[("app", "sdkms")]));
    }

    #[test]
    fn set_based() {
        assert!(m("app in (sdkms,other)", &[("app", "sdkms")]));
        assert!(m("app in (other, sdkms)", &[("app", "sdkms")]));
        assert!(!m("app in (x)", &[("app", "sdkms")]));
        assert!(!m("app in (x)", &[]));
        assert!(m("app notin (x)", &[("app", "sdkms")]));
        assert!(m("app notin (x)", &[]));
        assert!(!m("app notin (sdkms,x)", &[("app", "sdkms")]));
        assert!(m("app in(sdkms)", &[("app", "sdkms")]));
    }

    #[test]
    fn existence() {
        assert!(m("app", &[("app", "x")]));
        assert!(!m("app", &[]));
        assert!(m("!app", &[]));
        assert!(!m("!app", &[("app", "x")]));
    }

    #[test]
    fn conjunction() {
        let l = [("app", "sdkms"), ("tier", "db")];
        assert!(m("app=sdkms,tier=db", &l));
        assert!(m("app=sdkms,tier in (db,web),!gone", &l));
        assert!(!m("app=sdkms,tier=web", &l));
        assert!(m(
            "statefulset.kubernetes.io/pod-name=sdkms-0,app",
            &[
                ("statefulset.kubernetes.io/pod-name", "sdkms-0"),
                ("app", "")
            ]
        ));
    }

    #[test]
    fn empty_matches_everything() {
        assert!(m("", &[]));
        assert!(m("", &[("a", "b")]));
        assert_eq!(Selector::parse("").unwrap(), Selector(vec![]));
    }

    #[test]
    fn parses_structure() {
        assert_eq!(
            Selector::parse("a=b,c notin (x,y),!d").unwrap(),
            Selector(vec![
                Requirement::Eq("a".into(), "b".into()),
                Requirement::NotIn("c".into(), ["x".to_string(), "y".to_string()].into()),
                Requirement::NotExists("d".into()),
            ])
        );
    }

    #[test]
    fn rejects_garbage() {
        // An empty value is valid, as in Kubernetes.
        assert!(Selector::parse("app=").is_ok());
        for bad in [
            "=x",
            "a,,b",
            "app in sdkms",
            "app in (a",
            "app foo (a)",
            "app=b c",
            "a b",
            "-a",
            "app in ()",
            "app=(x)",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
