//! The site file: what an operator fixes for one cluster (where its pods are, how
//! they are reached and restarted), parsed and validated once.
//!
//! Everything downstream reads a [`Site`], never the TOML: every mistake is caught
//! here, before anything runs, and reported with the file and the key at fault.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A site file error: the file, the key (as `[section] key`), and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("site file {}: {key}{}{message}", file.display(), if key.is_empty() { "" } else { ": " })]
pub struct SiteError {
    pub file: PathBuf,
    pub key: String,
    pub message: String,
}

impl SiteError {
    fn new(file: &Path, key: impl Into<String>, message: impl fmt::Display) -> Self {
        SiteError {
            file: file.to_path_buf(),
            key: key.into(),
            message: message.to_string(),
        }
    }
}

/// A validated site.
#[derive(Debug, Clone)]
pub struct Site {
    /// Where it was read from; relative paths inside it are resolved against its folder.
    pub path: PathBuf,
    pub cluster: Cluster,
    pub tls: Tls,
    pub restart: Option<Restart>,
    /// `[params]`: passed to the procedure as key/value pairs.
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    /// `None`: `KUBECONFIG`, then `~/.kube/config`, then the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    pub selector: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub enum Tls {
    /// Verify pod certificates against these CA certificates (PEM, as read).
    Ca { path: PathBuf, pem: Vec<u8> },
    /// Skip verification (`curl -k`): only when the site file says so, warned on every run.
    Insecure,
}

#[derive(Debug, Clone)]
pub struct Restart {
    /// argv: the program and its arguments. Run directly, never through a shell.
    pub command: Vec<String>,
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    cluster: RawCluster,
    tls: RawTls,
    restart: Option<RawRestart>,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
    kubeconfig: Option<PathBuf>,
    namespace: String,
    selector: String,
    #[serde(default = "default_port")]
    port: u16,
}

fn default_port() -> u16 {
    4444
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestart {
    command: Vec<String>,
    #[serde(default = "default_restart_timeout")]
    timeout_secs: u64,
}

fn default_restart_timeout() -> u64 {
    1800
}

impl Site {
    /// Reads and validates the site file at `path`.
    pub fn load(path: &Path) -> Result<Site, SiteError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SiteError::new(path, "", format!("cannot read: {e}")))?;
        Site::parse(path, &text)
    }

    /// Validates `text` as the site file at `path` (used for messages and to
    /// resolve relative paths).
    pub fn parse(path: &Path, text: &str) -> Result<Site, SiteError> {
        let raw: RawSite = toml::from_str(text).map_err(|e| toml_error(path, text, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let c = raw.cluster;
        if c.name.trim().is_empty() {
            return Err(SiteError::new(path, "[cluster] name", "must not be empty"));
        }
        if !is_dns_label(&c.namespace) {
            return Err(SiteError::new(
                path,
                "[cluster] namespace",
                format!(
                    "{:?} is not a valid namespace (lowercase letters, digits and '-', at most 63)",
                    c.namespace
                ),
            ));
        }
        if let Err(e) = validate_selector(&c.selector) {
            return Err(SiteError::new(
                path,
                "[cluster] selector",
                format!("invalid label selector {:?}: {e}", c.selector),
            ));
        }
        if c.port == 0 {
            return Err(SiteError::new(path, "[cluster] port", "must be 1..=65535"));
        }
        let kubeconfig = c.kubeconfig.map(resolve);
        if let Some(k) = &kubeconfig {
            if let Err(e) = std::fs::metadata(k) {
                return Err(SiteError::new(
                    path,
                    "[cluster] kubeconfig",
                    format!("cannot read {}: {e}", k.display()),
                ));
            }
        }

        let tls = match (raw.tls.ca.map(resolve), raw.tls.insecure) {
            (Some(_), true) => {
                return Err(SiteError::new(
                    path,
                    "[tls]",
                    "set either `ca` or `insecure = true`, not both",
                ));
            }
            (None, false) => {
                return Err(SiteError::new(
                    path,
                    "[tls] ca",
                    "missing: pod certificates are verified against this CA \
                     (or write `insecure = true` to skip verification, like curl -k)",
                ));
            }
            (None, true) => Tls::Insecure,
            (Some(ca), false) => {
                let pem = std::fs::read(&ca).map_err(|e| {
                    SiteError::new(path, "[tls] ca", format!("cannot read {}: {e}", ca.display()))
                })?;
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    return Err(SiteError::new(
                        path,
                        "[tls] ca",
                        format!("{} holds no PEM certificate", ca.display()),
                    ));
                }
                Tls::Ca { path: ca, pem }
            }
        };

        let restart = match raw.restart {
            None => None,
            Some(r) => {
                let Some(program) = r.command.first() else {
                    return Err(SiteError::new(path, "[restart] command", "must name a program"));
                };
                if program.contains('/') {
                    let program = resolve(PathBuf::from(program));
                    if !is_executable(&program) {
                        return Err(SiteError::new(
                            path,
                            "[restart] command",
                            format!("{} is not an executable file", program.display()),
                        ));
                    }
                }
                if r.timeout_secs == 0 {
                    return Err(SiteError::new(path, "[restart] timeout_secs", "must be at least 1"));
                }
                let mut command = r.command;
                if command[0].contains('/') {
                    command[0] = resolve(PathBuf::from(&command[0])).display().to_string();
                }
                Some(Restart {
                    command,
                    timeout: Duration::from_secs(r.timeout_secs),
                })
            }
        };

        let mut params = Vec::new();
        for (key, value) in raw.params {
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(SiteError::new(
                        path,
                        format!("[params] {key}"),
                        format!("must be a string, integer or boolean, not {}", other.type_str()),
                    ));
                }
            };
            params.push((key, value));
        }

        Ok(Site {
            path: path.to_path_buf(),
            cluster: Cluster {
                name: c.name,
                kubeconfig,
                namespace: c.namespace,
                selector: c.selector,
                port: c.port,
            },
            tls,
            restart,
            params,
        })
    }
}

/// Turns a TOML error into one that names the key (`[section] key`) and the line.
fn toml_error(path: &Path, text: &str, e: toml::de::Error) -> SiteError {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
    let message = e.message().trim_end().to_string();
    let key = line.map(|l| key_at_line(text, l)).unwrap_or_default();
    let message = match line {
        Some(l) => format!("line {l}: {message}"),
        None => message,
    };
    SiteError::new(path, key, message)
}

/// The `[section] key` written at `line` (1-based), for error messages.
fn key_at_line(text: &str, line: usize) -> String {
    let mut section = String::new();
    for l in text.lines().take(line - 1) {
        let t = l.trim();
        if t.starts_with('[') {
            section = t.to_string();
        }
    }
    let current = text.lines().nth(line - 1).unwrap_or("").trim();
    if current.starts_with('[') {
        return current.to_string();
    }
    match current.split_once('=') {
        Some((key, _)) if section.is_empty() => key.trim().to_string(),
        Some((key, _)) => format!("{section} {}", key.trim()),
        None => section,
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Checks a Kubernetes label selector: comma-separated requirements, each
/// `key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (a,b)` or
/// `key notin (a,b)`. The API server would reject anything else at run time;
/// we reject it before anything runs.
pub fn validate_selector(selector: &str) -> Result<(), String> {
    if selector.trim().is_empty() {
        return Err("empty: it would select every pod in the namespace".into());
    }
    for requirement in split_requirements(selector)? {
        let r = requirement.trim();
        if let Some(key) = r.strip_prefix('!') {
            check_key(key.trim())?;
        } else if let Some((key, rest)) = split_set_op(r) {
            check_key(key)?;
            let values = rest
                .trim()
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(|| format!("{r:?}: expected a value list in parentheses"))?;
            for v in values.split(',') {
                check_value(v.trim())?;
            }
        } else if let Some((key, value)) = r
            .split_once("!=")
            .or_else(|| r.split_once("=="))
            .or_else(|| r.split_once('='))
        {
            check_key(key.trim())?;
            check_value(value.trim())?;
        } else {
            check_key(r)?;
        }
    }
    Ok(())
}

/// Splits on commas that are not inside a `( … )` value list.
fn split_requirements(selector: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 || depth > 1 {
            return Err("unbalanced parentheses".into());
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    parts.push(&selector[start..]);
    Ok(parts)
}

fn split_set_op(r: &str) -> Option<(&str, &str)> {
    for op in [" notin ", " in "] {
        if let Some((k, rest)) = r.split_once(op) {
            return Some((k.trim(), rest));
        }
    }
    None
}

fn check_key(key: &str) -> Result<(), String> {
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > 253 || !prefix.split('.').all(is_dns_label) {
                return Err(format!("key {key:?}: invalid prefix {prefix:?}"));
            }
            name
        }
        None => key,
    };
    if name.is_empty() || name.len() > 63 || !is_label_chars(name) {
        return Err(format!(
            "key {key:?}: must be 1-63 characters of [A-Za-z0-9._-], starting and ending alphanumeric"
        ));
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), String> {
    if value.len() > 63 || !(value.is_empty() || is_label_chars(value)) {
        return Err(format!(
            "value {value:?}: must be at most 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric"
        ));
    }
    Ok(())
}

fn is_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site_in(dir: &Path, body: &str) -> Result<Site, SiteError> {
        let path = dir.join("site.toml");
        std::fs::write(&path, body).unwrap();
        Site::load(&path)
    }

    fn ca(dir: &Path) -> PathBuf {
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
        ca
    }

    const GOOD: &str = r#"
[cluster]
name = "prod-eu"
namespace = "sdkms"
selector = "app=sdkms"

[tls]
ca = "ca.pem"

[restart]
command = ["/bin/true", "--now"]
timeout_secs = 60

[params]
port = 4444
hash_field = "h"
"#;

    #[test]
    fn good_site_resolves_relative_paths_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let site = site_in(dir.path(), GOOD).unwrap();
        assert_eq!(site.cluster.port, 4444);
        assert!(matches!(&site.tls, Tls::Ca { path, .. } if path == &dir.path().join("ca.pem")));
        let restart = site.restart.unwrap();
        assert_eq!(restart.command, ["/bin/true", "--now"]);
        assert_eq!(restart.timeout, Duration::from_secs(60));
        assert_eq!(
            site.params,
            [("hash_field".into(), "h".into()), ("port".into(), "4444".into())]
        );
    }

    #[test]
    fn unknown_key_is_named_with_its_section_and_line() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let body = GOOD.replace("namespace = \"sdkms\"", "namespace = \"sdkms\"\nnamespce = \"x\"");
        let err = site_in(dir.path(), &body).unwrap_err().to_string();
        assert!(err.contains("[cluster] namespce"), "{err}");
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("site.toml"), "{err}");
    }

    #[test]
    fn missing_ca_file_names_the_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = site_in(dir.path(), GOOD).unwrap_err();
        assert_eq!(err.key, "[tls] ca");
        assert!(err.message.contains("ca.pem"), "{err}");
    }

    #[test]
    fn insecure_and_ca_together_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let body = GOOD.replace("ca = \"ca.pem\"", "ca = \"ca.pem\"\ninsecure = true");
        assert_eq!(site_in(dir.path(), &body).unwrap_err().key, "[tls]");
    }

    #[test]
    fn selectors() {
        for good in ["app=sdkms", "app==sdkms,tier!=x", "app in (a,b),!legacy", "k8s.io/app", "a notin (x)"] {
            assert_eq!(validate_selector(good), Ok(()), "{good}");
        }
        for bad in ["", "app=", "=x", "app in a", "app in (a", "-app=x", "app=sd kms", "a,,b"] {
            let ok = validate_selector(bad).is_ok();
            // `app=` selects an empty value, which Kubernetes accepts.
            assert_eq!(ok, bad == "app=", "{bad}");
        }
    }

    #[test]
    fn bad_selector_is_named() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let err = site_in(dir.path(), &GOOD.replace("app=sdkms", "app in sdkms")).unwrap_err();
        assert_eq!(err.key, "[cluster] selector");
    }

    #[test]
    fn restart_program_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let err = site_in(dir.path(), &GOOD.replace("/bin/true", "./nope.sh")).unwrap_err();
        assert_eq!(err.key, "[restart] command");
        assert!(err.message.contains("nope.sh"), "{err}");
    }
}
