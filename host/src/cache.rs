//! The precompile cache: components compiled by this host, kept on disk so the next
//! run of the same verified bytes skips Cranelift.
//!
//! Loading compiled code is `unsafe` in wasmtime (the file is machine code that is
//! mapped executable, unchecked), so an entry is used only when everything says the
//! host wrote it: the directory is the host's (created 0700, owned by this user,
//! nobody else may write), the entry is a regular file owned by this user with mode
//! 0600, and it carries the host's header with a SHA-256 of the compiled bytes that
//! still matches. Anything else is discarded and compiled again. The key is the
//! SHA-256 of the verified component bytes and the engine's compatibility hash, so
//! a different wasmtime or configuration never loads another's output.
//!
//! Only verified bytes get here: the signature is checked first, and the key is the
//! digest of those exact bytes.
//!
//! The cache is bounded: it keeps the [`KEEP`] entries used last (a hit renews an
//! entry's modification time) and removes older ones whenever it stores a new one,
//! so a machine that runs many differently signed components (every `demo` signs
//! with a new key) does not fill its disk, a megabyte per component.

use std::fmt;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::digest::hex;
use crate::runtime::{Loaded, RunError, Runtime};

/// The header of every entry the host writes, followed by the SHA-256 of the rest.
const MAGIC: &[u8; 16] = b"cmk-host cache 1";

/// Entries kept: the ones used last.
pub const KEEP: usize = 32;

/// What the cache did for one run (the log's `cache:` and the report's `cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheStatus {
    /// Loaded from the cache; nothing compiled.
    Hit,
    /// Compiled, and the result stored for the next run.
    Stored,
    /// Compiled; the result could not be stored (see the log).
    Miss,
    /// An entry was there but not usable (not the host's, damaged, or from another
    /// engine): removed, compiled again and stored.
    Discarded,
    /// `--no-cache`, or no usable cache directory: compiled, nothing stored.
    Off,
}

impl fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Stored => "stored",
            CacheStatus::Miss => "miss",
            CacheStatus::Discarded => "discarded",
            CacheStatus::Off => "off",
        })
    }
}

/// A cache directory the host has checked it owns.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    keep: usize,
}

impl Cache {
    /// Opens (creating with mode 0700) the cache at `dir`. Refuses a directory that
    /// is a symlink, owned by another user, or writable by others.
    pub fn open(dir: &Path) -> Result<Cache, String> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let meta =
            fs::symlink_metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        if meta.uid() != euid() {
            return Err(format!(
                "{} belongs to another user (uid {})",
                dir.display(),
                meta.uid()
            ));
        }
        // What matters is that nobody else can write there; a directory the host
        // creates is 0700, one given with --cache-dir may be readable by others.
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(format!(
                "{} is writable by others (mode {mode:o}); use a directory only you can write (0700)",
                dir.display()
            ));
        }
        Ok(Cache {
            dir: dir.to_path_buf(),
            keep: KEEP,
        })
    }

    /// Keeps `keep` entries instead of [`KEEP`].
    pub fn keeping(mut self, keep: usize) -> Cache {
        self.keep = keep.max(1);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the compiled form of `sha256` for `engine` lives.
    pub fn entry(&self, engine: &Engine, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{sha256}-{}.cwasm", compatibility(engine)))
    }

    /// Loads the compiled component for `bytes` (already verified), or compiles it
    /// and stores the result.
    pub fn load(&self, runtime: &Runtime, bytes: &[u8]) -> Result<(Loaded, CacheStatus), RunError> {
        let engine = runtime.engine();
        let sha256 = hex(&Sha256::digest(bytes));
        let path = self.entry(engine, &sha256);

        let mut discarded = false;
        match read_entry(&path) {
            Ok(None) => {}
            Ok(Some(compiled)) => {
                // SAFETY: `compiled` was read into memory and matched the checksum
                // this host wrote beside it, in a file only this user can have
                // written (checked in `read_entry` and `open`); deserialising from
                // memory rather than `deserialize_file` means the bytes checked are
                // the bytes loaded, even if the file changes meanwhile. wasmtime
                // itself checks the engine version and configuration.
                match unsafe { Component::deserialize(engine, &compiled) } {
                    Ok(component) => {
                        tracing::debug!(entry = %path.display(), "cache: hit");
                        // Used now: the last to go when the cache is pruned.
                        if let Ok(file) = fs::File::open(&path) {
                            let _ = file.set_modified(std::time::SystemTime::now());
                        }
                        return Ok((Loaded { component, sha256 }, CacheStatus::Hit));
                    }
                    Err(e) => {
                        tracing::warn!(entry = %path.display(), "cache: discarded an entry wasmtime cannot load: {e:#}");
                        discarded = true;
                    }
                }
            }
            Err(why) => {
                tracing::warn!(entry = %path.display(), "cache: discarded an entry: {why}");
                discarded = true;
            }
        }
        if discarded {
            let _ = fs::remove_file(&path);
        }

        let compiled = engine.precompile_component(bytes).map_err(|e| {
            RunError::Invalid(format!(
                "not a WebAssembly component this host can run: {e:#}"
            ))
        })?;
        // SAFETY: `compiled` is what this engine produced a moment ago, in memory.
        let component = unsafe { Component::deserialize(engine, &compiled) }
            .map_err(|e| RunError::Invalid(format!("cannot load the compiled component: {e:#}")))?;
        let status = match write_entry(&self.dir, &path, &compiled) {
            Ok(()) if discarded => {
                self.prune();
                CacheStatus::Discarded
            }
            Ok(()) => {
                self.prune();
                CacheStatus::Stored
            }
            Err(e) => {
                tracing::warn!(entry = %path.display(), "cache: cannot store the compiled component: {e}");
                CacheStatus::Miss
            }
        };
        Ok((Loaded { component, sha256 }, status))
    }
}

impl Cache {
    /// Removes every entry but the `keep` used last. Only names the host gives its
    /// entries are touched; a failure is logged, never fatal.
    fn prune(&self) {
        let Ok(listing) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = listing
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
            .filter_map(|e| {
                let meta = e.metadata().ok().filter(fs::Metadata::is_file)?;
                Some((meta.modified().ok()?, e.path()))
            })
            .collect();
        if entries.len() <= self.keep {
            return;
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        let old = entries.split_off(self.keep);
        for (_, path) in &old {
            if let Err(e) = fs::remove_file(path) {
                tracing::debug!(entry = %path.display(), "cache: cannot remove an old entry: {e}");
            }
        }
        tracing::debug!(
            removed = old.len(),
            kept = self.keep,
            "cache: removed the entries used least recently"
        );
    }
}

/// Compiles without a cache (`--no-cache`).
pub fn load_uncached(runtime: &Runtime, bytes: &[u8]) -> Result<(Loaded, CacheStatus), RunError> {
    runtime.load(bytes).map(|loaded| (loaded, CacheStatus::Off))
}

/// Reads an entry: `Ok(None)` when there is none, `Err` (why) when one is there but
/// was not written by this host or was damaged since.
fn read_entry(path: &Path) -> Result<Option<Vec<u8>>, String> {
    // O_NOFOLLOW and fstat: the file checked is the file read, never a symlink.
    let mut file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it (a symlink?): {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if meta.uid() != euid() {
        return Err(format!("owned by uid {}, not this user", meta.uid()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode != 0o600 {
        return Err(format!("mode {mode:o}, not the 0600 the host writes"));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut data)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let header = MAGIC.len() + 32;
    if data.len() < header || &data[..MAGIC.len()] != MAGIC {
        return Err("no cmk-host header".into());
    }
    let (sum, compiled) = data[MAGIC.len()..].split_at(32);
    if Sha256::digest(compiled).as_slice() != sum {
        return Err("its checksum does not match: damaged".into());
    }
    Ok(Some(compiled.to_vec()))
}

/// Writes an entry atomically: a new 0600 file beside it, then a rename.
fn write_entry(dir: &Path, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), rand_suffix()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(&Sha256::digest(compiled))?;
        file.write_all(compiled)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A suffix that keeps concurrent writers in one process apart.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The engine's compatibility hash as hex: `Hash` fed into SHA-256, so the name
/// is stable across builds of the same wasmtime and configuration.
fn compatibility(engine: &Engine) -> String {
    struct ShaHasher(Sha256);
    impl Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex(&h.0.finalize()[..8])
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> Runtime {
        Runtime::new().unwrap()
    }

    #[test]
    fn second_load_is_a_hit_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("c");
        let cache = Cache::open(&cache_dir).unwrap();
        let rt = runtime();
        let bytes = crate::ROTATE_COMPONENT;
        let (first, status) = cache.load(&rt, bytes).unwrap();
        assert_eq!(status, CacheStatus::Stored);
        let (second, status) = cache.load(&rt, bytes).unwrap();
        assert_eq!(status, CacheStatus::Hit);
        assert_eq!(first.sha256, second.sha256);
        let dir_mode = fs::metadata(&cache_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let entry = cache.entry(rt.engine(), &first.sha256);
        let mode = fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::read_dir(&cache_dir).unwrap().count(),
            1,
            "no temp files left"
        );
    }

    #[test]
    fn the_cache_keeps_the_entries_used_last() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c")).unwrap().keeping(2);
        let rt = runtime();
        // Three components: the same code signed by three keys.
        let [a, b, c] = std::array::from_fn(|_| {
            let key = crate::trust::keys::SigningKey::generate();
            crate::trust::verify::sign(crate::ROTATE_COMPONENT, &key).unwrap()
        });
        assert_eq!(cache.load(&rt, &a).unwrap().1, CacheStatus::Stored);
        assert_eq!(cache.load(&rt, &b).unwrap().1, CacheStatus::Stored);
        // A used again after B: B is now the one used least recently.
        assert_eq!(cache.load(&rt, &a).unwrap().1, CacheStatus::Hit);
        assert_eq!(cache.load(&rt, &c).unwrap().1, CacheStatus::Stored);
        assert_eq!(fs::read_dir(cache.dir()).unwrap().count(), 2);
        assert_eq!(cache.load(&rt, &a).unwrap().1, CacheStatus::Hit);
        assert_eq!(cache.load(&rt, &c).unwrap().1, CacheStatus::Hit);
        assert_eq!(
            cache.load(&rt, &b).unwrap().1,
            CacheStatus::Stored,
            "B was removed"
        );
    }

    #[test]
    fn a_damaged_or_foreign_entry_is_discarded_and_recompiled() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c")).unwrap();
        let rt = runtime();
        let bytes = crate::ROTATE_COMPONENT;
        let (loaded, _) = cache.load(&rt, bytes).unwrap();
        let entry = cache.entry(rt.engine(), &loaded.sha256);

        // A flipped byte in the compiled code.
        let mut data = fs::read(&entry).unwrap();
        let at = data.len() / 2;
        data[at] ^= 0xff;
        fs::write(&entry, &data).unwrap();
        assert_eq!(cache.load(&rt, bytes).unwrap().1, CacheStatus::Discarded);
        assert_eq!(cache.load(&rt, bytes).unwrap().1, CacheStatus::Hit);

        // Wasmtime's own output, but not written by the host (no header).
        fs::remove_file(&entry).unwrap();
        let raw = rt.engine().precompile_component(bytes).unwrap();
        keys_write(&entry, &raw);
        assert_eq!(cache.load(&rt, bytes).unwrap().1, CacheStatus::Discarded);

        // A valid entry others could have written.
        fs::set_permissions(&entry, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(cache.load(&rt, bytes).unwrap().1, CacheStatus::Discarded);
        assert_eq!(cache.load(&rt, bytes).unwrap().1, CacheStatus::Hit);
    }

    fn keys_write(path: &Path, bytes: &[u8]) {
        crate::trust::keys::write_new(path, bytes, 0o600).unwrap();
    }

    #[test]
    fn a_symlinked_entry_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c")).unwrap();
        let rt = runtime();
        let bytes = crate::ROTATE_COMPONENT;
        let (loaded, _) = cache.load(&rt, bytes).unwrap();
        let entry = cache.entry(rt.engine(), &loaded.sha256);
        let elsewhere = dir.path().join("elsewhere.cwasm");
        fs::rename(&entry, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
        assert_eq!(cache.load(&rt, bytes).unwrap().1, CacheStatus::Discarded);
        assert!(
            !fs::symlink_metadata(&entry)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_directory_open_to_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = Cache::open(dir.path()).unwrap_err();
        assert!(err.contains("writable by others"), "{err}");
    }
}
