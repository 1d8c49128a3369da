//! The record of a restart command while it runs: `<state dir>/restart/<cluster>.pid`.
//!
//! The command runs in its own process group, so that a Ctrl-C on the host's
//! terminal does not stop a rolling restart half-way; for the same reason it
//! outlives a host that is killed. The Lease of a killed host is taken over at once
//! by the next run on this machine, so that run must not read the cluster while the
//! dead run's restart is still replacing pods: it would see a pod list without the
//! pod being replaced, and could take the rest of the cluster for the whole. The
//! record names the command's process (pid and start time, so a reused pid is not
//! mistaken for it); the next mutating run waits for that process to end first.
//! The command's stdout and stderr go to `<cluster>.out` and `<cluster>.err` beside
//! it, which the host follows: a pipe to a dead host would end the command at its
//! next line of output.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a run looks whether the earlier run's restart command has ended.
const POLL: Duration = Duration::from_millis(100);

/// Where one cluster's running restart is recorded.
#[derive(Debug, Clone)]
pub struct Running {
    path: PathBuf,
}

impl Running {
    pub fn at(state_dir: &Path, cluster: &str) -> Running {
        Running {
            path: crate::paths::restart_record(state_dir, cluster),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The command `pid` started. A failure to record is logged: the restart itself
    /// goes on.
    pub fn started(&self, pid: u32) {
        let written = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                let stamp = start_time(pid).map_or(String::new(), |t| t.to_string());
                std::fs::write(&self.path, format!("{pid} {stamp}\n"))
            });
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), "cannot record the running restart: {e}");
        }
    }

    /// The command ended (or was killed at its timeout).
    pub fn ended(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Fresh files for the command's stdout and stderr (`<cluster>.out`, `.err`
    /// beside the record, 0600), each with the host's reading end.
    pub fn output(&self) -> std::io::Result<(Output, Output)> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if let Some(dir) = self.path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let open = |ext: &str| -> std::io::Result<Output> {
            let path = self.path.with_extension(ext);
            let writer = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)?;
            let reader = std::fs::File::open(&path)?;
            Ok(Output {
                writer,
                reader: Tail {
                    file: reader,
                    partial: Vec::new(),
                },
            })
        };
        Ok((open("out")?, open("err")?))
    }

    /// The recorded process, if it is still running.
    fn still_running(&self) -> Option<u32> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let mut fields = text.split_whitespace();
        let pid: u32 = fields.next()?.parse().ok()?;
        let recorded: Option<u64> = fields.next().and_then(|t| t.parse().ok());
        let alive = match (start_time(pid), recorded) {
            // The same process only if it started when the recorded one did.
            (Some(now), Some(then)) => now == then,
            (now, None) => now.is_some() || exists(pid),
            (None, Some(_)) => false,
        };
        alive.then_some(pid)
    }

    /// Waits while a restart command that an earlier run started is still running,
    /// for at most `timeout`; then forgets the record. `Err` names the process.
    pub async fn wait_for_earlier(&self, timeout: Duration) -> Result<(), String> {
        let started = Instant::now();
        let mut said = false;
        while let Some(pid) = self.still_running() {
            if !said {
                tracing::warn!(
                    pid,
                    record = %self.path.display(),
                    "a restart command started by an earlier run is still running: waiting for it to end before reading the cluster"
                );
                said = true;
            }
            if started.elapsed() >= timeout {
                return Err(format!(
                    "a restart command started by an earlier run (process {pid}, recorded in {}) \
                     is still running after {}s; let it finish or stop it, then run again",
                    self.path.display(),
                    timeout.as_secs()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        if said {
            tracing::info!("the earlier run's restart command has ended");
        }
        self.ended();
        Ok(())
    }
}

/// One of the command's output files: the end it writes to, and the host's.
pub struct Output {
    pub writer: std::fs::File,
    pub reader: Tail,
}

/// Reads a file as it grows, line by line.
pub struct Tail {
    file: std::fs::File,
    partial: Vec<u8>,
}

impl Tail {
    /// Calls `line` with every line completed since the last call (`last`: the
    /// unterminated rest too), without its newline.
    pub fn lines(&mut self, last: bool, mut line: impl FnMut(&str)) {
        use std::io::Read;
        let _ = self.file.read_to_end(&mut self.partial);
        let mut start = 0;
        while let Some(n) = self.partial[start..].iter().position(|&b| b == b'\n') {
            line(&String::from_utf8_lossy(&self.partial[start..start + n]));
            start += n + 1;
        }
        self.partial.drain(..start);
        if last && !self.partial.is_empty() {
            line(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
    }
}

/// When process `pid` started (clock ticks since boot: `/proc/<pid>/stat` field 22),
/// if it exists.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after it
    // are counted from its last ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let sent = unsafe { libc::kill(pid, 0) } == 0;
    sent || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_gives_each_line_once_and_the_last_partial_one_at_the_end() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let (mut out, _) = Running::at(dir.path(), "c").output().unwrap();
        let mut seen = Vec::new();
        out.writer.write_all(b"one\ntw").unwrap();
        out.reader.lines(false, |l| seen.push(l.to_string()));
        out.writer.write_all(b"o\nthree").unwrap();
        out.reader.lines(false, |l| seen.push(l.to_string()));
        out.reader.lines(true, |l| seen.push(l.to_string()));
        assert_eq!(seen, ["one", "two", "three"]);
    }

    #[tokio::test]
    async fn a_recorded_command_is_waited_for_and_a_reused_pid_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let running = Running::at(dir.path(), "prod/eu");
        assert!(running.path().ends_with("restart/prod_eu.pid"));
        // Nothing recorded: nothing to wait for.
        running.wait_for_earlier(Duration::ZERO).await.unwrap();

        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        running.started(child.id());
        let err = running
            .wait_for_earlier(Duration::from_millis(250))
            .await
            .unwrap_err();
        assert!(err.contains(&format!("process {}", child.id())), "{err}");
        assert!(running.path().exists(), "kept while the command runs");

        // The same pid with another start time is another process.
        std::fs::write(running.path(), format!("{} 1\n", child.id())).unwrap();
        running.wait_for_earlier(Duration::ZERO).await.unwrap();
        assert!(!running.path().exists(), "forgotten once it is not running");

        running.started(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        running
            .wait_for_earlier(Duration::from_secs(5))
            .await
            .unwrap();
        assert!(!running.path().exists());
    }
}
