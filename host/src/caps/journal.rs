//! `journal`: a small key/value record per cluster that survives the host process,
//! for what the pods' status cannot tell (a restart completed after distribution,
//! an activate that may have been sent, a rotation that completed).
//!
//! The site's `[state] dir` (default: `$XDG_STATE_HOME/cmk-host`, else
//! `~/.local/state/cmk-host`) holds one file per cluster name:
//! `journal/<cluster>.json`. Every write replaces the file atomically, so a host
//! killed at any moment leaves either the old or the new journal, never a torn one:
//! the new content goes to a spare file beside it (`.<cluster>.json.spare`),
//! synced, and the two names are swapped in one rename (Linux `RENAME_EXCHANGE`),
//! then the folder is synced. The spare then holds the previous content, and the
//! next write reuses it: no file is created or deleted per write, which on some
//! file systems (ext4 without a journal) costs more than the write itself. The
//! first write, or a file system without the exchange, renames a new file instead. Sizes are limited so
//! that a hostile guest cannot fill the disk. In plan mode writes stay in memory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Denials;
use super::gate::{Call, Gate, Permit};
use crate::frame::{SiteError, SiteFile};
use crate::wit::cmk::procedure::journal::{Host, JournalError};

/// Longest key, in bytes.
pub const MAX_KEY: usize = 128;
/// Longest value, in bytes.
pub const MAX_VALUE: usize = 1024;
/// Most entries in one journal.
pub const MAX_ENTRIES: usize = 64;

/// `[state]`: where the host keeps what must outlive a run.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// `None`: the caller's default (see [`default_dir`]).
    pub dir: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    dir: Option<PathBuf>,
}

impl RawState {
    pub fn validate(self, file: &SiteFile<'_>) -> Result<State, SiteError> {
        match self.dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                Err(file.error("[state] dir", "must not be empty"))
            }
            Some(dir) => Ok(State {
                dir: Some(file.resolve(&dir)),
            }),
            None => Ok(State { dir: None }),
        }
    }
}

/// The default state directory, from the environment the caller passes in:
/// `$XDG_STATE_HOME/cmk-host`, else `$HOME/.local/state/cmk-host`.
pub fn default_dir(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(x) = var("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("cmk-host"));
    }
    var("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".local/state/cmk-host"))
}

/// The on-disk form.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    cluster: String,
    entries: BTreeMap<String, String>,
}

/// One cluster's journal file.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
    cluster: String,
    entries: BTreeMap<String, String>,
}

impl Journal {
    /// The journal of `cluster` under `state_dir` (empty when there is none yet).
    /// A journal another cluster wrote (two names that make one file name) is an
    /// error: its entries are not this cluster's.
    pub fn open(state_dir: &Path, cluster: &str) -> Result<Journal, String> {
        let path = crate::paths::journal(state_dir, cluster);
        let entries = match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "journal {} is not valid (move it away to start afresh): {e}",
                        path.display()
                    )
                })?;
                if stored.cluster != cluster {
                    return Err(format!(
                        "journal {} is the journal of cluster {:?}, not of {cluster:?}: the two \
                         names make one file name; if they are two clusters, rename one or give \
                         it a [state] dir of its own; if this cluster was renamed, run it under \
                         its old name until its rotation is done",
                        path.display(),
                        stored.cluster
                    ));
                }
                stored.entries
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read journal {}: {e}", path.display())),
        };
        Ok(Journal {
            path,
            cluster: cluster.to_string(),
            entries,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.entries
    }

    /// Writes the entries atomically (see the module's doc).
    fn persist(&self, entries: &BTreeMap<String, String>) -> std::io::Result<()> {
        crate::blocking::off_worker(|| self.persist_here(entries))
    }

    /// The spare file the next content is written to before the swap.
    fn spare_path(&self) -> PathBuf {
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        self.path.with_file_name(format!(".{name}.spare"))
    }

    fn persist_here(&self, entries: &BTreeMap<String, String>) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let stored = Stored {
            cluster: self.cluster.clone(),
            entries: entries.clone(),
        };
        let text = serde_json::to_vec_pretty(&stored).map_err(std::io::Error::other)?;
        if !self.path.exists() || !swap_in(&self.spare_path(), &self.path, &text)? {
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            tmp.write_all(&text)?;
            tmp.as_file().sync_data()?;
            tmp.persist(&self.path).map_err(|e| e.error)?;
        }
        // The rename itself is durable once the folder is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Applies `change` and persists it (unless `dry`); on error nothing changes.
    /// Only with the gate's [`Permit`].
    fn update(
        &mut self,
        _permit: Permit,
        dry: bool,
        change: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<(), UpdateError> {
        let mut next = self.entries.clone();
        change(&mut next);
        if next.len() > MAX_ENTRIES {
            return Err(UpdateError::TooLarge(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        if !dry {
            self.persist(&next).map_err(|e| {
                UpdateError::Io(format!("cannot write {}: {e}", self.path.display()))
            })?;
        }
        self.entries = next;
        Ok(())
    }
}

/// Writes `text` into `spare` (the owner's alone, never through a symlink), syncs
/// it, and swaps it with `path` in one rename. `Ok(false)`: the swap was refused
/// (a file system without it), and nothing was renamed.
fn swap_in(spare: &Path, path: &Path, text: &[u8]) -> std::io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(spare)?;
    file.write_all(text)?;
    file.sync_data()?;
    exchange(spare, path)
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c =
        |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: two NUL-terminated paths, resolved from the current directory.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r != 0 {
        // Not supported here (EINVAL, ENOSYS; EXDEV on some overlays): the caller
        // renames a new file instead, as every other file system gets.
        tracing::debug!(error = %std::io::Error::last_os_error(), "RENAME_EXCHANGE refused");
    }
    Ok(r == 0)
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<bool> {
    Ok(false)
}

/// Why an update was not applied: over a size limit (the guest's doing), or the
/// file could not be written (the host's).
#[derive(Debug)]
enum UpdateError {
    TooLarge(String),
    Io(String),
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateError::TooLarge(m) | UpdateError::Io(m) => f.write_str(m),
        }
    }
}

/// The `journal` capability of one run.
pub struct JournalCap {
    journal: Journal,
    /// Plan mode: writes are kept for this run only.
    dry: bool,
    /// The grant: without it the journal reads empty and writes are denied.
    gate: Gate,
    denials: Denials,
    audit: crate::audit::Audit,
}

impl JournalCap {
    pub fn new(journal: Journal, dry: bool, gate: Gate, denials: Denials) -> Self {
        JournalCap {
            journal,
            dry,
            gate,
            denials,
            audit: crate::audit::Audit::default(),
        }
    }

    /// Every write is recorded in `audit` (journal values carry no secret).
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = audit;
        self
    }

    fn audited(&self, op: &str, key: &str, value: Option<&str>, result: &Result<(), JournalError>) {
        let target = format!("{op} {}", truncate(key));
        let outcome = match result {
            Ok(()) if self.dry => "ok (plan: not persisted)",
            Ok(()) => "ok",
            Err(JournalError::Denied(_)) => "denied",
            Err(JournalError::TooLarge(_)) => "too-large",
            Err(JournalError::Io(_)) => "io-error",
        };
        let body = value.map(|v| serde_json::json!({ "value": truncate(v) }));
        self.audit
            .record(crate::audit::Entry::call("journal", &target, outcome, 0).body(body));
    }

    /// Every call, reads and writes alike, passes the gate first (the grant); a write
    /// needs the permit it returns.
    async fn permit(&self, function: &'static str, key: &str) -> Result<Permit, JournalError> {
        self.gate
            .decide(Call::Journal { function, key })
            .await
            .map_err(|refusal| JournalError::Denied(refusal.into_message()))
    }

    fn check_key(&self, key: &str) -> Result<(), JournalError> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(JournalError::TooLarge(self.denials.deny(
                "journal",
                truncate(key),
                format!("a key is 1 to {MAX_KEY} bytes"),
            )));
        }
        Ok(())
    }

    /// An update's failure as the guest receives it; a size failure is a denial.
    fn update_error(&self, key: &str, e: UpdateError) -> JournalError {
        match e {
            UpdateError::TooLarge(m) => {
                JournalError::TooLarge(self.denials.deny("journal", truncate(key), m))
            }
            UpdateError::Io(m) => {
                tracing::error!(error = %m, "journal write failed");
                JournalError::Io(m)
            }
        }
    }

    fn check(&self, key: &str, value: &str) -> Result<(), JournalError> {
        self.check_key(key)?;
        if value.len() > MAX_VALUE {
            return Err(JournalError::TooLarge(self.denials.deny(
                "journal",
                truncate(key),
                format!("a value is at most {MAX_VALUE} bytes"),
            )));
        }
        Ok(())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

impl Host for JournalCap {
    async fn entries(&mut self) -> Vec<(String, String)> {
        if self.permit("entries", "entries").await.is_err() {
            return Vec::new();
        }
        self.journal
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    async fn set(&mut self, key: String, value: String) -> Result<(), JournalError> {
        let result = self.set_unaudited(&key, &value).await;
        self.audited("set", &key, Some(&value), &result);
        result
    }

    async fn remove(&mut self, key: String) -> Result<(), JournalError> {
        let result = self.remove_unaudited(&key).await;
        self.audited("remove", &key, None, &result);
        result
    }
}

impl JournalCap {
    async fn set_unaudited(&mut self, key: &str, value: &str) -> Result<(), JournalError> {
        let (key, value) = (key.to_string(), value.to_string());
        let permit = self.permit("set", &key).await?;
        self.check(&key, &value)?;
        tracing::debug!(key = %crate::text::escape(&key), dry = self.dry, "journal set");
        let result = self.journal.update(permit, self.dry, |e| {
            e.insert(key.clone(), value);
        });
        result.map_err(|e| self.update_error(&key, e))
    }

    async fn remove_unaudited(&mut self, key: &str) -> Result<(), JournalError> {
        let permit = self.permit("remove", key).await?;
        self.check_key(key)?;
        tracing::debug!(key = %crate::text::escape(key), dry = self.dry, "journal remove");
        let result = self.journal.update(permit, self.dry, |e| {
            e.remove(key);
        });
        result.map_err(|e| self.update_error(key, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_reopen_and_keeps_clusters_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "prod/eu").unwrap();
        j.update(Permit::for_tests(), false, |e| {
            e.insert("k".into(), "v".into());
        })
        .unwrap();
        assert!(j.path().ends_with("journal/prod_eu.json"));
        let again = Journal::open(dir.path(), "prod/eu").unwrap();
        assert_eq!(again.entries().get("k").map(String::as_str), Some("v"));
        let other = Journal::open(dir.path(), "prod-us").unwrap();
        assert!(other.entries().is_empty());
    }

    #[test]
    fn a_journal_another_cluster_wrote_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "prod/eu").unwrap();
        j.update(Permit::for_tests(), false, |e| {
            e.insert("proposal".into(), "h".into());
        })
        .unwrap();
        let e = Journal::open(dir.path(), "prod eu").unwrap_err();
        assert_eq!(
            e,
            format!(
                "journal {} is the journal of cluster \"prod/eu\", not of \"prod eu\": the two \
                 names make one file name; if they are two clusters, rename one or give it a \
                 [state] dir of its own; if this cluster was renamed, run it under its old name \
                 until its rotation is done",
                j.path().display()
            )
        );
    }

    #[test]
    fn writes_swap_two_files_instead_of_making_a_new_one_each_time() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "c").unwrap();
        let mut inodes = std::collections::BTreeSet::new();
        for i in 0..6 {
            j.update(Permit::for_tests(), false, |e| {
                e.insert("k".into(), format!("v{i}"));
            })
            .unwrap();
            inodes.insert(std::fs::metadata(j.path()).unwrap().ino());
            let again = Journal::open(dir.path(), "c").unwrap();
            assert_eq!(again.entries()["k"], format!("v{i}"), "the latest write");
        }
        // Where the file system cannot swap two names, each write is a new file.
        let swaps = {
            let (x, y) = (dir.path().join("x"), dir.path().join("y"));
            std::fs::write(&x, "x").unwrap();
            std::fs::write(&y, "y").unwrap();
            exchange(&x, &y).unwrap()
        };
        if swaps {
            assert_eq!(inodes.len(), 2, "the journal and its spare, swapped");
        }
        std::fs::remove_file(dir.path().join("x")).unwrap();
        std::fs::remove_file(dir.path().join("y")).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("journal"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [".c.json.spare", "c.json"],
            "nothing else left behind"
        );
        let spare = std::fs::metadata(dir.path().join("journal/.c.json.spare")).unwrap();
        assert_eq!(spare.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn dry_writes_stay_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "c").unwrap();
        j.update(Permit::for_tests(), true, |e| {
            e.insert("k".into(), "v".into());
        })
        .unwrap();
        assert_eq!(j.entries().len(), 1);
        assert!(!j.path().exists());
    }

    #[test]
    fn refuses_too_many_entries_and_keeps_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "c").unwrap();
        let err = j
            .update(Permit::for_tests(), false, |e| {
                for i in 0..=MAX_ENTRIES {
                    e.insert(i.to_string(), String::new());
                }
            })
            .unwrap_err();
        assert!(
            matches!(&err, UpdateError::TooLarge(m) if m.contains("entries")),
            "{err}"
        );
        assert!(j.entries().is_empty());
    }

    #[tokio::test]
    async fn remove_needs_the_grant_and_a_full_journal_is_too_large_not_io() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "c").unwrap();
        j.update(Permit::for_tests(), false, |e| {
            e.insert("k".into(), "v".into());
        })
        .unwrap();
        let denials = Denials::default();
        let gate = Gate::for_tests(crate::grants::Grants::none(), denials.clone());
        let mut cap = JournalCap::new(j.clone(), false, gate, denials.clone());
        assert!(matches!(
            cap.remove_unaudited("k").await,
            Err(JournalError::Denied(m)) if m.contains("not granted")
        ));
        let on_disk = Journal::open(dir.path(), "c").unwrap();
        assert_eq!(on_disk.entries().get("k").map(String::as_str), Some("v"));
        assert_eq!(denials.snapshot().len(), 1);

        let journal = crate::grants::Grants::none().allow(crate::grants::Capability::Journal);
        let gate = Gate::for_tests(journal, Denials::default());
        let mut cap = JournalCap::new(j, false, gate, Denials::default());
        for i in 1..MAX_ENTRIES {
            cap.set_unaudited(&i.to_string(), "").await.unwrap();
        }
        assert!(matches!(
            cap.set_unaudited("one-too-many", "").await,
            Err(JournalError::TooLarge(m)) if m.contains("entries")
        ));
        assert!(cap.remove_unaudited("k").await.is_ok(), "granted: removed");
    }

    #[test]
    fn a_corrupt_journal_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("journal")).unwrap();
        std::fs::write(dir.path().join("journal/c.json"), "{not json").unwrap();
        let err = Journal::open(dir.path(), "c").unwrap_err();
        assert!(err.contains("journal/c.json"), "{err}");
    }

    #[test]
    fn default_dir_prefers_xdg_state_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            default_dir(env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")])),
            Some(PathBuf::from("/s/cmk-host"))
        );
        assert_eq!(
            default_dir(env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.local/state/cmk-host"))
        );
        assert_eq!(default_dir(env(&[])), None);
    }
}
