//! The audit trail: one JSON line per capability call, per step and per run
//! start/end, appended to the site's `[audit] path` (default:
//! `<state dir>/audit/<cluster>.jsonl`).
//!
//! Each record carries `hash`, the SHA-256 of the record as written without that
//! field, and `prev`, the `hash` of the record before it (zeros for the first), and
//! a `seq` that counts up by one across runs. `cmk-host audit verify FILE` recomputes
//! all three and names the first record that was altered, removed or reordered.
//! The chain is not signed: it detects edits, deletions and reorderings, not an
//! attacker who rewrites every hash after the change, nor a cut at the end; the run
//! report carries the last hash (`audit_head`) so it can be kept elsewhere.
//!
//! Request bodies are kept only when every field is known to carry no secret
//! (`target` of a fetch); other bodies are recorded by their SHA-256.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::hex;
use crate::frame::{SiteError, SiteFile};

/// JSON body fields that may be kept verbatim in the trail.
const PLAIN_BODY_FIELDS: &[&str] = &["target"];
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `[audit]`.
#[derive(Debug, Clone, Default)]
pub struct AuditConfig {
    /// `None`: `<state dir>/audit/<cluster>.jsonl`.
    pub path: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    path: Option<PathBuf>,
}

impl RawAudit {
    pub fn validate(self, file: &SiteFile<'_>) -> Result<AuditConfig, SiteError> {
        match self.path {
            Some(p) if p.as_os_str().is_empty() => {
                Err(file.error("[audit] path", "must not be empty"))
            }
            p => Ok(AuditConfig {
                path: p.map(|p| file.resolve(&p)),
            }),
        }
    }
}

/// One record, in the order its fields are written (`hash` is appended last).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub time: String,
    pub run_id: String,
    pub cluster: String,
    pub component_sha256: String,
    pub signer: Option<String>,
    /// `run`, `call` or `step`.
    pub kind: String,
    pub capability: String,
    pub target: String,
    pub outcome: String,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    pub prev: String,
}

/// What one run writes into every record.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub run_id: String,
    pub cluster: String,
    pub component_sha256: String,
    pub signer: Option<String>,
}

struct Writer {
    path: PathBuf,
    file: std::fs::File,
    /// The hash of the last record this run wrote.
    head: String,
    ctx: RunContext,
    /// `--events`: each record, as it is appended.
    events: crate::events::Events,
}

/// The audit trail of one run; cheap to clone, shared by the capabilities. The
/// default records nothing (a capability built without a trail, in unit tests).
#[derive(Clone, Default)]
pub struct Audit(Option<Arc<Mutex<Writer>>>);

/// One entry to record; `Audit::record` adds the run's context and the chain.
pub struct Entry<'a> {
    pub kind: &'a str,
    pub capability: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub duration_ms: u64,
    pub detail: Option<String>,
    pub body: Option<serde_json::Value>,
}

impl<'a> Entry<'a> {
    pub fn call(capability: &'a str, target: &'a str, outcome: &'a str, duration_ms: u64) -> Self {
        Entry {
            kind: "call",
            capability,
            target,
            outcome,
            duration_ms,
            detail: None,
            body: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn body(mut self, body: Option<serde_json::Value>) -> Self {
        self.body = body;
        self
    }
}

/// A request body as the trail keeps it: verbatim when every field is plain,
/// else only its SHA-256.
pub fn body_for_trail(body: &str) -> serde_json::Value {
    let plain = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .filter(|v| {
            v.as_object().is_some_and(|o| {
                o.iter()
                    .all(|(k, v)| PLAIN_BODY_FIELDS.contains(&k.as_str()) && v.is_string())
            })
        });
    plain.unwrap_or_else(|| serde_json::json!({ "sha256": hex(&Sha256::digest(body.as_bytes())) }))
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// The line for `record` and its hash: the JSON without `hash`, then `hash` added last.
fn seal(record: &Record) -> Result<(String, String), serde_json::Error> {
    let body = serde_json::to_string(record)?;
    let hash = hex(&Sha256::digest(body.as_bytes()));
    let line = format!("{},\"hash\":\"{hash}\"}}", &body[..body.len() - 1]);
    Ok((line, hash))
}

/// Splits a written line into (record body as hashed, the hash it claims).
fn unseal(line: &str) -> Option<(String, &str)> {
    let rest = line.strip_suffix("\"}")?;
    let (body, hash) = rest.rsplit_once(",\"hash\":\"")?;
    Some((format!("{body}}}"), hash))
}

impl Audit {
    /// Opens (creating it and its folder if needed) the trail at `path`. Its chain
    /// is continued from whatever record is last when each record is appended.
    pub fn open(path: &Path, ctx: RunContext) -> Result<Audit, String> {
        let err = |e: std::io::Error| format!("audit trail {}: {e}", path.display());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        let (_, head) =
            tail(&mut file).map_err(|e| format!("audit trail {}: {e}", path.display()))?;
        Ok(Audit(Some(Arc::new(Mutex::new(Writer {
            path: path.to_path_buf(),
            file,
            head,
            ctx,
            events: crate::events::Events::default(),
        })))))
    }

    /// Every record appended from now on is also an event (`--events`).
    pub fn with_events(self, events: crate::events::Events) -> Self {
        if let Some(w) = &self.0 {
            w.lock().expect("audit lock").events = events;
        }
        self
    }

    /// Appends one record and syncs it. The file is locked while the last record
    /// is read and the new one appended, so that runs sharing a trail (a plan next
    /// to a rotation) extend one chain. A failure is logged, never fatal to the
    /// call being recorded.
    pub fn record(&self, entry: Entry<'_>) {
        let Some(w) = &self.0 else { return };
        let mut w = w.lock().expect("audit lock");
        let w = &mut *w;
        let written = (|| -> std::io::Result<(String, serde_json::Value)> {
            w.file.lock()?;
            let result = (|| {
                let (seq, prev) = tail(&mut w.file)?;
                let record = Record {
                    seq: seq + 1,
                    time: now(),
                    run_id: w.ctx.run_id.clone(),
                    cluster: w.ctx.cluster.clone(),
                    component_sha256: w.ctx.component_sha256.clone(),
                    signer: w.ctx.signer.clone(),
                    kind: entry.kind.to_string(),
                    capability: entry.capability.to_string(),
                    target: entry.target.to_string(),
                    outcome: entry.outcome.to_string(),
                    duration_ms: entry.duration_ms,
                    detail: entry.detail,
                    body: entry.body,
                    prev,
                };
                let (line, hash) = seal(&record).map_err(std::io::Error::other)?;
                w.file.write_all(format!("{line}\n").as_bytes())?;
                w.file.sync_data()?;
                let event = if w.events.is_on() {
                    serde_json::to_value(&record).unwrap_or_default()
                } else {
                    serde_json::Value::Null
                };
                Ok((hash, event))
            })();
            let _ = w.file.unlock();
            result
        })();
        match written {
            Ok((hash, event)) => {
                w.head = hash;
                if w.events.is_on() {
                    let kind = event["kind"].as_str().unwrap_or("call").to_string();
                    w.events.emit_as(&kind, event);
                }
            }
            Err(e) => {
                tracing::error!(path = %w.path.display(), error = %e, "cannot write the audit trail")
            }
        }
    }

    /// The hash of the last record written (to keep outside the trail).
    pub fn head(&self) -> Option<String> {
        self.0
            .as_ref()
            .map(|w| w.lock().expect("audit lock").head.clone())
    }

    pub fn path(&self) -> Option<PathBuf> {
        self.0
            .as_ref()
            .map(|w| w.lock().expect("audit lock").path.clone())
    }
}

/// The last record's (seq, hash) in `file`, or (0, zeros) when it is empty.
fn tail(file: &mut std::fs::File) -> std::io::Result<(u64, String)> {
    use std::io::{Read, Seek, SeekFrom};
    const WINDOW: u64 = 256 * 1024;
    let len = file.seek(SeekFrom::End(0))?;
    let start = len.saturating_sub(WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut text = String::new();
    file.take(WINDOW).read_to_string(&mut text)?;
    let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
        return Ok((0, GENESIS.to_string()));
    };
    let bad = || {
        std::io::Error::other(
            "the last record is not a readable audit record; run `cmk-host audit verify`",
        )
    };
    let (body, hash) = unseal(last).ok_or_else(bad)?;
    let record: Record = serde_json::from_str(&body).map_err(|_| bad())?;
    Ok((record.seq, hash.to_string()))
}

/// The outcome of `audit verify`.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every record chains to the one before: (records, last hash).
    Intact(u64, String),
    /// The first broken record: its line number (1-based) and what is wrong.
    Broken(usize, String),
}

/// Checks the chain of the trail in `text`.
pub fn verify(text: &str) -> Verdict {
    // Every line first: an unreadable or altered line is named where it is.
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let Some((body, claimed)) = unseal(line) else {
            return Verdict::Broken(n, "not a sealed audit record (no trailing hash)".into());
        };
        let Ok(record) = serde_json::from_str::<Record>(&body) else {
            return Verdict::Broken(n, "not a readable audit record".into());
        };
        if hex(&Sha256::digest(body.as_bytes())) != claimed {
            return Verdict::Broken(
                n,
                format!(
                    "record seq {} was altered: its content does not match its hash",
                    record.seq
                ),
            );
        }
        records.push((n, record, claimed.to_string()));
    }
    let mut prev_hash = GENESIS.to_string();
    for (k, (n, record, hash)) in records.iter().enumerate() {
        let expected = k as u64 + 1;
        if record.seq != expected {
            let later = records[k + 1..].iter().any(|(_, r, _)| r.seq == expected);
            let what = if later {
                "records were reordered"
            } else {
                "a record was removed"
            };
            return Verdict::Broken(
                *n,
                format!("{what}: found seq {}, expected seq {expected}", record.seq),
            );
        }
        if record.prev != prev_hash {
            return Verdict::Broken(
                *n,
                format!(
                    "record seq {} does not chain to the record before it (altered, removed \
                     or moved)",
                    record.seq
                ),
            );
        }
        prev_hash = hash.clone();
    }
    Verdict::Intact(records.len() as u64, prev_hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trail(n: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/c.jsonl");
        let ctx = RunContext {
            run_id: "r1".into(),
            cluster: "c".into(),
            component_sha256: "ab".into(),
            signer: None,
        };
        let audit = Audit::open(&path, ctx.clone()).unwrap();
        for i in 0..n / 2 {
            audit.record(Entry::call("http", &format!("GET {i}"), "200", 1));
        }
        drop(audit);
        // A second run continues the chain.
        let audit = Audit::open(&path, ctx).unwrap();
        for i in n / 2..n {
            audit.record(Entry::call("http", &format!("GET {i}"), "200", 1));
        }
        (dir, path)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn an_untouched_trail_verifies_across_runs() {
        let (_d, path) = trail(6);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(matches!(verify(&text), Verdict::Intact(6, _)), "{text}");
    }

    #[test]
    fn an_edited_record_is_named() {
        let (_d, path) = trail(6);
        let mut l = lines(&path);
        l[2] = l[2].replace("\"GET 2\"", "\"GET 9\"");
        let v = verify(&l.join("\n"));
        assert!(
            matches!(&v, Verdict::Broken(3, m) if m.contains("altered")),
            "{v:?}"
        );
    }

    #[test]
    fn a_deleted_record_is_named() {
        let (_d, path) = trail(6);
        let mut l = lines(&path);
        l.remove(3);
        let v = verify(&l.join("\n"));
        assert!(
            matches!(&v, Verdict::Broken(4, m) if m.contains("removed")),
            "{v:?}"
        );
    }

    #[test]
    fn a_swapped_pair_is_named() {
        let (_d, path) = trail(6);
        let mut l = lines(&path);
        l.swap(1, 2);
        let v = verify(&l.join("\n"));
        assert!(
            matches!(&v, Verdict::Broken(2, m) if m.contains("reordered")),
            "{v:?}"
        );
    }

    #[test]
    fn bodies_are_kept_only_when_plain() {
        assert_eq!(
            body_for_trail(r#"{"target":"10.0.0.1:4444"}"#),
            serde_json::json!({"target": "10.0.0.1:4444"})
        );
        let hidden = body_for_trail(r#"{"secret":"s3cr3t"}"#);
        assert!(hidden["sha256"].is_string());
        assert!(!hidden.to_string().contains("s3cr3t"));
    }
}
