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
//!
//! The trail survives hostile input: every string a record takes from a component
//! (a URL, a step's detail, a confirmation's details) is escaped and bounded; a
//! longer one is cut, and `cut` keeps its original length and SHA-256. The last
//! record is found by reading back from the end, whatever its size, so no record a
//! run wrote can stop a later run from starting. Every record names the run's
//! signer and key id. The file is created 0600, its folder 0700.
//!
//! Durability: a record of anything that changes the cluster or the Lease, or
//! that was refused, is synced to disk before the call it records returns to the
//! component. A record of a read that succeeded (an HTTP GET, a pod list), of a
//! journal write that succeeded (the journal file is itself synced before the call
//! returns) or of a step's progress is written at once but reaches the disk with
//! the next synced record, at the run's end at the latest: a host killed in between
//! loses at most those records since the last change, never a change.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::hex;
use crate::frame::{SiteError, SiteFile};
use crate::text::{Cut, bounded};

/// JSON body fields that may be kept verbatim in the trail.
const PLAIN_BODY_FIELDS: &[&str] = &["target"];
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `[audit]`.
#[derive(Debug, Clone, Default)]
pub struct AuditConfig {
    /// `None`: `<state dir>/audit/<cluster>.jsonl`.
    pub path: Option<PathBuf>,
}

impl AuditConfig {
    /// The trail a run of `cluster` appends to.
    pub fn trail(&self, state_dir: &Path, cluster: &str) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| crate::paths::default_trail(state_dir, cluster))
    }
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
    /// The `[[trust.signer]]` that verified the component (`null`: it ran unsigned).
    pub signer: Option<String>,
    /// The id of the key that verified it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
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
    /// The fields that were cut (`target`, `detail`, `body`): their whole length
    /// and SHA-256.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cut: BTreeMap<String, Cut>,
    pub prev: String,
}

/// Longest `target` kept (a URL, a journal key), in bytes.
pub const MAX_TARGET: usize = 1024;
/// Longest `detail` kept.
pub const MAX_DETAIL: usize = 4096;
/// Longest string inside a `body`, and longest `body` as JSON.
const MAX_BODY_STRING: usize = 1024;
const MAX_BODY: usize = 8192;

/// What one run writes into every record.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub run_id: String,
    pub cluster: String,
    pub component_sha256: String,
    pub signer: Option<String>,
    pub key_id: Option<String>,
}

struct Writer {
    path: PathBuf,
    file: std::fs::File,
    /// The hash of the last record this run wrote.
    head: String,
    /// Where this run's last record ended and its `seq`: while the file is that long,
    /// nobody appended since, and the chain goes on without reading the file back.
    end: Option<(u64, u64)>,
    /// Records written since the last sync.
    unsynced: bool,
    ctx: RunContext,
    /// `--events`: each record, as it is appended.
    events: crate::events::Events,
}

impl Drop for Writer {
    /// Reads recorded after the last synced record reach the disk when the trail
    /// closes, however the run ended (its last record, `run end`, is synced anyway).
    fn drop(&mut self) {
        if self.unsynced {
            let _ = self.file.sync_data();
        }
    }
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
    /// Whether the record may wait for the next sync (see the module's
    /// "Durability"): a read or a journal write that succeeded, or a step's progress.
    fn may_wait(&self) -> bool {
        match (self.kind, self.capability) {
            ("step", _) => true,
            ("call", "pods") => self.outcome.starts_with("ok"),
            ("call", "journal") => self.outcome == "ok",
            ("call", "http") => {
                self.target.starts_with("GET ") && self.outcome.bytes().all(|b| b.is_ascii_digit())
            }
            _ => false,
        }
    }

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

    /// A record of the run itself (`start`, `end`, `reminder`).
    pub fn run(target: &'a str, outcome: &'a str, duration_ms: u64) -> Self {
        Entry {
            kind: "run",
            ..Entry::call("run", target, outcome, duration_ms)
        }
    }

    /// With `detail` (a `String`, or an `Option` of one).
    pub fn detail(mut self, detail: impl Into<Option<String>>) -> Self {
        self.detail = detail.into();
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
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Folders it creates are the owner's alone; an existing one is left as the
            // site made it, and warned about when others may enter it.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(err)?;
            if let Ok(meta) = std::fs::metadata(dir)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    dir = %dir.display(),
                    mode = format!("{:o}", meta.permissions().mode() & 0o777),
                    "the audit trail's folder is open to other users"
                );
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        // A trail created before, with wider permissions, is narrowed to its owner.
        let meta = file.metadata().map_err(err)?;
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(err)?;
        }
        let last = tail(&mut file).map_err(|e| format!("audit trail {}: {e}", path.display()))?;
        if last.torn {
            tracing::warn!(
                path = %path.display(),
                "the audit trail's last record was cut short (a run killed while writing it?): \
                 the chain goes on from the record before it; `cmk-host audit verify` names the line"
            );
        }
        let head = last.hash;
        Ok(Audit(Some(Arc::new(Mutex::new(Writer {
            path: path.to_path_buf(),
            file,
            head,
            end: None,
            unsynced: false,
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

    /// Appends one record, and syncs it unless it may wait (see the module's
    /// "Durability"). The file is locked while the last record is found and the new
    /// one appended, so that runs sharing a trail (a plan next to a rotation) extend
    /// one chain. A failure is logged, never fatal to the call being recorded.
    pub fn record(&self, entry: Entry<'_>) {
        // The sync blocks: the worker's other tasks move meanwhile.
        crate::blocking::off_worker(|| self.record_here(entry))
    }

    fn record_here(&self, entry: Entry<'_>) {
        let Some(w) = &self.0 else { return };
        let mut w = w.lock().expect("audit lock");
        let w = &mut *w;
        let sync = !entry.may_wait();
        let written = (|| -> std::io::Result<(String, serde_json::Value)> {
            w.file.lock()?;
            let result = (|| {
                let len = w.file.metadata()?.len();
                let (seq, prev, needs_newline) = match w.end {
                    Some((end, seq)) if end == len => (seq, w.head.clone(), false),
                    _ => {
                        let t = tail(&mut w.file)?;
                        (t.seq, t.hash, t.needs_newline)
                    }
                };
                let mut cut = BTreeMap::new();
                let (target, c) = bounded(entry.target, MAX_TARGET);
                cut.extend(c.map(|c| ("target".to_string(), c)));
                let detail = entry.detail.as_deref().map(|d| {
                    let (d, c) = bounded(d, MAX_DETAIL);
                    cut.extend(c.map(|c| ("detail".to_string(), c)));
                    d
                });
                let body = entry.body.map(|b| {
                    let (b, c) = bounded_body(b);
                    cut.extend(c.map(|c| ("body".to_string(), c)));
                    b
                });
                let record = Record {
                    seq: seq + 1,
                    time: now(),
                    run_id: w.ctx.run_id.clone(),
                    cluster: w.ctx.cluster.clone(),
                    component_sha256: w.ctx.component_sha256.clone(),
                    signer: w.ctx.signer.clone(),
                    key_id: w.ctx.key_id.clone(),
                    kind: entry.kind.to_string(),
                    capability: entry.capability.to_string(),
                    target,
                    outcome: bounded(entry.outcome, MAX_TARGET).0,
                    duration_ms: entry.duration_ms,
                    detail,
                    body,
                    cut,
                    prev,
                };
                let (line, hash) = seal(&record).map_err(std::io::Error::other)?;
                let lead = if needs_newline { "\n" } else { "" };
                let text = format!("{lead}{line}\n");
                w.file.write_all(text.as_bytes())?;
                w.end = Some((len + text.len() as u64, record.seq));
                if sync {
                    w.file.sync_data()?;
                }
                w.unsynced = !sync;
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

/// A body with every string in it escaped and bounded; a body still over
/// [`MAX_BODY`] as JSON is replaced by its length and digest.
fn bounded_body(body: serde_json::Value) -> (serde_json::Value, Option<Cut>) {
    use serde_json::Value;
    fn walk(v: Value, cut: &mut bool) -> Value {
        match v {
            Value::String(s) => {
                let (s, c) = bounded(&s, MAX_BODY_STRING);
                *cut |= c.is_some();
                Value::String(s)
            }
            Value::Array(a) => Value::Array(a.into_iter().map(|v| walk(v, cut)).collect()),
            Value::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, v)| {
                        let (k, c) = bounded(&k, MAX_BODY_STRING);
                        *cut |= c.is_some();
                        (k, walk(v, cut))
                    })
                    .collect(),
            ),
            v => v,
        }
    }
    let whole = body.to_string();
    let mut was_cut = false;
    let kept = walk(body, &mut was_cut);
    let summary = || Cut {
        bytes: whole.len(),
        sha256: hex(&Sha256::digest(whole.as_bytes())),
    };
    if kept.to_string().len() > MAX_BODY {
        let c = summary();
        return (
            serde_json::json!({ "sha256": c.sha256, "bytes": c.bytes }),
            Some(c),
        );
    }
    (kept, was_cut.then(summary))
}

/// Where the chain continues: the last complete record's `seq` and `hash`, and
/// whether the file ends without a newline (the next record starts a line first).
struct Tail {
    seq: u64,
    hash: String,
    needs_newline: bool,
    /// The last line was cut short (a run killed while writing it): the chain
    /// continues from the record before it, and `audit verify` names the line.
    torn: bool,
}

/// The last record of `file` (see [`Tail`]); (0, zeros) when it is empty.
///
/// Reads back from the end in blocks, keeping only positions, so a last line of any
/// size is found with one block of memory; then reads the record's `seq` from the
/// line's start and its `hash` from its end (the writer puts them there). The chain
/// itself is `audit verify`'s job. A last line without its newline that is not a
/// record is a write cut short: the record before it is where the chain goes on,
/// so no run, however it ended, stops the next from starting.
fn tail(file: &mut std::fs::File) -> std::io::Result<Tail> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.seek(SeekFrom::End(0))?;
    let mut last = [0u8; 1];
    let needs_newline = len > 0 && {
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        last[0] != b'\n'
    };
    let bad = || {
        std::io::Error::other(
            "the last record is not a readable audit record; run `cmk-host audit verify`",
        )
    };
    let Some((start, end)) = last_line(file, len)? else {
        return Ok(Tail {
            seq: 0,
            hash: GENESIS.to_string(),
            needs_newline,
            torn: false,
        });
    };
    if let Some((seq, hash)) = seq_and_hash(file, start, end)? {
        return Ok(Tail {
            seq,
            hash,
            needs_newline,
            torn: false,
        });
    }
    if !needs_newline {
        return Err(bad());
    }
    let (seq, hash) = match last_line(file, start)? {
        None => (0, GENESIS.to_string()),
        Some((s, e)) => seq_and_hash(file, s, e)?.ok_or_else(bad)?,
    };
    Ok(Tail {
        seq,
        hash,
        needs_newline,
        torn: true,
    })
}

/// The last non-blank line before `before`: (its start, one past its last byte).
fn last_line(file: &mut std::fs::File, before: u64) -> std::io::Result<Option<(u64, u64)>> {
    use std::io::{Read, Seek, SeekFrom};
    const BLOCK: usize = 64 << 10;
    let mut block = vec![0u8; BLOCK];
    let mut pos = before;
    let mut end: Option<u64> = None;
    while pos > 0 {
        let n = pos.min(BLOCK as u64) as usize;
        pos -= n as u64;
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut block[..n])?;
        for i in (0..n).rev() {
            let at = pos + i as u64;
            match (end, block[i]) {
                (None, b) if !b.is_ascii_whitespace() => end = Some(at + 1),
                (Some(e), b'\n') => return Ok(Some((at + 1, e))),
                _ => {}
            }
        }
    }
    Ok(end.map(|e| (0, e)))
}

/// The `seq` at the start and the `hash` at the end of the line `start..end`, if
/// it is a sealed record.
fn seq_and_hash(
    file: &mut std::fs::File,
    start: u64,
    end: u64,
) -> std::io::Result<Option<(u64, String)>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut read_at = |from: u64, n: u64| -> std::io::Result<String> {
        let mut buf = vec![0u8; n as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    let line_len = end - start;
    let head = read_at(start, line_len.min(48))?;
    let foot = read_at(end - line_len.min(96), line_len.min(96))?;
    let seq = head
        .strip_prefix("{\"seq\":")
        .and_then(|rest| rest.split_once(','))
        .and_then(|(n, _)| n.parse::<u64>().ok());
    let hash = foot
        .strip_suffix("\"}")
        .and_then(|rest| rest.rsplit_once(",\"hash\":\""))
        .map(|(_, h)| h)
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    Ok(seq.zip(hash.map(str::to_string)))
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
            signer: Some("ops".into()),
            key_id: Some("0011".into()),
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
    fn a_huge_record_is_cut_and_any_last_line_is_read_back() {
        let (_d, path) = trail(2);
        let ctx = || RunContext {
            run_id: "r2".into(),
            cluster: "c".into(),
            component_sha256: "ab".into(),
            signer: Some("ops".into()),
            key_id: Some("0011".into()),
        };
        let url = format!(
            "GET https://10.0.0.1:4444/cluster/v1/key/{}",
            "a".repeat(300_000)
        );
        let audit = Audit::open(&path, ctx()).unwrap();
        audit.record(Entry::call("http", &url, "404", 1).detail("x\u{1b}[2J".repeat(2000)));
        drop(audit);
        let text = std::fs::read_to_string(&path).unwrap();
        let last: Record =
            serde_json::from_str(&unseal(text.lines().last().unwrap()).unwrap().0).unwrap();
        assert!(text.lines().last().unwrap().len() < 16 << 10, "bounded");
        assert_eq!(last.cut["target"].bytes, url.len());
        assert_eq!(
            last.cut["target"].sha256,
            hex(&Sha256::digest(url.as_bytes()))
        );
        assert!(last.cut.contains_key("detail"));
        assert!(!text.contains('\u{1b}'), "escaped");
        assert_eq!(
            (last.signer.as_deref(), last.key_id.as_deref()),
            (Some("ops"), Some("0011"))
        );

        // A trail whose last line is 300 KB (written before records were bounded):
        // the next run still opens it and continues the chain.
        let record = Record {
            seq: 4,
            time: now(),
            run_id: "old".into(),
            cluster: "c".into(),
            component_sha256: "ab".into(),
            signer: None,
            key_id: None,
            kind: "call".into(),
            capability: "http".into(),
            target: url.clone(),
            outcome: "404".into(),
            duration_ms: 0,
            detail: None,
            body: None,
            cut: BTreeMap::new(),
            prev: match verify(&text) {
                Verdict::Intact(3, head) => head,
                v => panic!("{v:?}"),
            },
        };
        let (line, _) = seal(&record).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(format!("{line}\n\n").as_bytes())
            .unwrap();
        let audit = Audit::open(&path, ctx()).unwrap();
        audit.record(Entry::call("run", "start", "started", 0));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            matches!(verify(&text), Verdict::Intact(5, _)),
            "{:?}",
            verify(&text)
        );
    }

    #[test]
    fn a_record_cut_short_does_not_stop_the_next_run_and_verify_names_it() {
        let (_d, path) = trail(4);
        let whole = std::fs::read_to_string(&path).unwrap();
        let torn = "{\"seq\":5,\"time\":\"2026-";
        std::fs::write(&path, format!("{whole}{torn}")).unwrap();
        let ctx = RunContext {
            run_id: "r3".into(),
            cluster: "c".into(),
            component_sha256: "ab".into(),
            signer: None,
            key_id: None,
        };
        let audit = Audit::open(&path, ctx).unwrap();
        audit.record(Entry::call("run", "start", "started", 0));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            matches!(verify(&text), Verdict::Broken(5, m) if m.contains("not a sealed")),
            "{text}"
        );
        // Without the cut line, the chain is whole: the new record follows seq 4.
        let mended: String = text
            .lines()
            .filter(|l| *l != torn)
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(matches!(verify(&mended), Verdict::Intact(5, _)), "{mended}");

        // A last line that is complete but not a record is still refused.
        std::fs::write(&path, format!("{whole}not a record\n")).unwrap();
        let ctx = RunContext {
            run_id: "r4".into(),
            cluster: "c".into(),
            component_sha256: "ab".into(),
            signer: None,
            key_id: None,
        };
        assert!(Audit::open(&path, ctx).is_err());
    }

    #[test]
    fn only_successful_reads_and_steps_wait_for_the_next_sync() {
        let step = Entry {
            kind: "step",
            capability: "log",
            target: "propose",
            outcome: "done",
            duration_ms: 0,
            detail: None,
            body: None,
        };
        assert!(step.may_wait());
        for (capability, target, outcome) in [
            ("http", "GET https://10.0.0.1:4444/cluster/v1/key", "200"),
            ("http", "GET https://10.0.0.1:4444/cluster/v1/key", "503"),
            ("pods", "sdkms/app=sdkms", "ok: 3 pods"),
            ("journal", "set rotation", "ok"),
            ("journal", "remove rotation", "ok"),
        ] {
            assert!(
                Entry::call(capability, target, outcome, 0).may_wait(),
                "{capability} {target} {outcome}"
            );
        }
        for (capability, target, outcome) in [
            (
                "http",
                "POST https://10.0.0.1:4444/cluster/v1/key/propose",
                "204",
            ),
            ("http", "GET https://10.0.0.9:4444/cluster/v1/key", "denied"),
            (
                "http",
                "GET https://10.0.0.1:4444/cluster/v1/key",
                "timeout",
            ),
            ("pods", "sdkms/app=sdkms", "denied"),
            ("restart", "/opt/restart.sh", "ok"),
            ("journal", "set rotation", "denied"),
            ("journal", "set rotation", "io-error"),
            ("lease", "cmk-host-rotation", "taken"),
            ("confirm", "activate", "yes (--yes)"),
            ("run", "end", "done"),
        ] {
            assert!(
                !Entry::call(capability, target, outcome, 0).may_wait(),
                "{capability} {target} {outcome} must be synced at once"
            );
        }
    }

    #[test]
    fn two_runs_appending_in_turn_extend_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/c.jsonl");
        let ctx = |run: &str| RunContext {
            run_id: run.into(),
            cluster: "c".into(),
            component_sha256: "ab".into(),
            signer: None,
            key_id: None,
        };
        let (a, b) = (
            Audit::open(&path, ctx("a")).unwrap(),
            Audit::open(&path, ctx("b")).unwrap(),
        );
        for i in 0..3 {
            a.record(Entry::call("http", &format!("GET a{i}"), "200", 0));
            a.record(Entry::call("http", &format!("POST a{i}"), "204", 0));
            b.record(Entry::call("http", &format!("GET b{i}"), "200", 0));
        }
        drop((a, b));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(matches!(verify(&text), Verdict::Intact(9, _)), "{text}");
    }

    #[test]
    fn the_trail_is_the_owners_alone() {
        let (dir, path) = trail(1);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("audit")), 0o700);
    }

    #[test]
    fn a_body_is_escaped_and_bounded() {
        let (kept, cut) = bounded_body(serde_json::json!({ "k\u{1b}": "v\u{202e}" }));
        assert_eq!(kept, serde_json::json!({ "k\\u{1b}": "v\\u{202e}" }));
        assert!(cut.is_none(), "escaped, not cut");
        let many: serde_json::Map<String, serde_json::Value> = (0..32)
            .map(|i| (format!("k{i}"), serde_json::Value::String("x".repeat(1000))))
            .collect();
        let (kept, cut) = bounded_body(serde_json::Value::Object(many));
        let cut = cut.expect("over 8 KiB: replaced");
        assert_eq!(kept["bytes"], cut.bytes);
        assert_eq!(kept["sha256"], cut.sha256.as_str());
        assert!(cut.bytes > MAX_BODY);
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
