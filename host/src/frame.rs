//! The site file's frame: how a section's validation reports an error (the file, the
//! `[section] key` and, where TOML gives it, the line) and resolves relative paths.
//!
//! A leaf: every room that owns a slice of the site file (the capabilities, trust,
//! audit, lease, limits) validates it against this, and nothing here knows any
//! section's rules.

use std::fmt;
use std::path::{Path, PathBuf};

/// A site file error: the file, the key (as `[section] key`), and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("site file {}: {key}{}{message}", file.display(), if key.is_empty() { "" } else { ": " })]
pub struct SiteError {
    pub file: PathBuf,
    pub key: String,
    pub message: String,
}

/// What a section's validation needs: where the file is, to resolve relative paths
/// and to name it in errors.
pub struct SiteFile<'a> {
    pub path: &'a Path,
}

impl SiteFile<'_> {
    /// An error at `key` (`[section] key`).
    pub fn error(&self, key: impl Into<String>, message: impl fmt::Display) -> SiteError {
        SiteError {
            file: self.path.to_path_buf(),
            key: key.into(),
            message: message.to_string(),
        }
    }

    /// A path as written in the file: relative ones are relative to the file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(path)
        }
    }
}

/// A parameter as the procedure receives it: strings as written, integers and
/// booleans in their TOML spelling; anything else is an error message.
pub fn param_value(value: toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!(
            "must be a string, integer or boolean, not {}",
            other.type_str()
        )),
    }
}

/// Turns a TOML error into one that names the key (`[section] key`) and the line.
pub fn toml_error(file: &SiteFile<'_>, text: &str, e: toml::de::Error) -> SiteError {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let message = e.message().trim_end().to_string();
    let key = line.map(|l| key_at_line(text, l)).unwrap_or_default();
    let message = match line {
        Some(l) => format!("line {l}: {message}"),
        None => message,
    };
    file.error(key, message)
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

/// A Kubernetes name: lowercase letters, digits and '-', at most 63.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
