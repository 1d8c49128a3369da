//! `restart`: the cluster's rolling restart, by the mechanism the site fixes.
//!
//! The site's `[restart] command` runs as a child process (argv, no shell), with a
//! minimal environment; its output goes to the log. The call returns once the
//! command exited 0 and every pod matching the selector is Ready with an IP, all
//! within the site's timeout. Without a `[restart]` section the call is denied.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::Denials;
use super::pods::PodLister;
use crate::runtime::bindings::cmk::procedure::restart::{Host, RestartError};
use crate::site::{SiteError, SiteFile, is_executable};

/// Environment variables the restart command inherits; everything else is cleared
/// so that the host's secrets (tokens, credentials) do not leak into it.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "KUBECONFIG"];

/// How often the pod list is read while waiting for every pod to be Ready.
const READY_POLL: Duration = Duration::from_millis(200);

/// `[restart]`: how the cluster is restarted. Without it, `restart` is denied.
#[derive(Debug, Clone)]
pub struct Restart {
    /// argv: the program and its arguments. Run directly, never through a shell.
    pub command: Vec<String>,
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestart {
    command: Vec<String>,
    #[serde(default = "default_restart_timeout")]
    timeout_secs: u64,
}

fn default_restart_timeout() -> u64 {
    1800
}

impl RawRestart {
    pub fn validate(self, file: &SiteFile<'_>) -> Result<Restart, SiteError> {
        let Some(program) = self.command.first() else {
            return Err(file.error("[restart] command", "must name a program"));
        };
        let mut command = self.command.clone();
        if program.contains('/') {
            let resolved = file.resolve(Path::new(program));
            if !is_executable(&resolved) {
                return Err(file.error(
                    "[restart] command",
                    format!("{} is not an executable file", resolved.display()),
                ));
            }
            command[0] = resolved.display().to_string();
        }
        if self.timeout_secs == 0 {
            return Err(file.error("[restart] timeout_secs", "must be at least 1"));
        }
        Ok(Restart {
            command,
            timeout: Duration::from_secs(self.timeout_secs),
        })
    }
}

/// The `restart` capability of one run.
pub struct RestartCap {
    config: Option<Restart>,
    lister: PodLister,
    granted: bool,
    denials: Denials,
    count: u32,
    /// Plan mode and stop requests: a restart passes it before it starts.
    gate: super::gate::Gate,
    audit: crate::audit::Audit,
}

impl RestartCap {
    pub fn new(
        config: Option<Restart>,
        lister: PodLister,
        granted: bool,
        denials: Denials,
    ) -> Self {
        RestartCap {
            config,
            lister,
            granted,
            denials,
            count: 0,
            gate: super::gate::Gate::default(),
            audit: crate::audit::Audit::default(),
        }
    }

    /// Every restart, run or refused, is recorded in `audit`.
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = audit;
        self
    }

    /// Every restart passes `gate` (plan mode, stop requests) before it starts.
    pub fn with_gate(mut self, gate: super::gate::Gate) -> Self {
        self.gate = gate;
        self
    }

    async fn run(&mut self, config: Restart) -> Result<(), RestartError> {
        self.count += 1;
        let n = self.count;
        let deadline = Instant::now() + config.timeout;
        let argv = config.command.join(" ");
        tracing::info!(restart = n, command = %argv, "rolling restart started");

        let mut cmd = Command::new(&config.command[0]);
        cmd.args(&config.command[1..])
            .env_clear()
            .envs(
                INHERITED_ENV
                    .iter()
                    .filter_map(|k| Some((k, std::env::var_os(k)?))),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C on the terminal stops the host at a
            // safe point, and must not kill a restart half-way.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| RestartError::Failed(format!("cannot start {argv}: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let forward = async {
            let mut out = BufReader::new(stdout).lines();
            let mut err = BufReader::new(stderr).lines();
            let (mut out_open, mut err_open) = (true, true);
            let mut last_err = String::new();
            while out_open || err_open {
                tokio::select! {
                    line = out.next_line(), if out_open => match line {
                        Ok(Some(l)) => tracing::info!(target: "cmk_host::restart", "{l}"),
                        _ => out_open = false,
                    },
                    line = err.next_line(), if err_open => match line {
                        Ok(Some(l)) => {
                            tracing::warn!(target: "cmk_host::restart", "{l}");
                            last_err = l;
                        }
                        _ => err_open = false,
                    },
                }
            }
            last_err
        };
        let waited = tokio::time::timeout_at(deadline.into(), async {
            let last_err = forward.await;
            (child.wait().await, last_err)
        })
        .await;
        let (status, last_err) = match waited {
            Err(_) => {
                // kill_on_drop ends the child; say so explicitly for the log.
                let _ = child.start_kill();
                return Err(RestartError::Timeout(format!(
                    "{argv} did not finish within {}s",
                    config.timeout.as_secs()
                )));
            }
            Ok((status, last_err)) => (status, last_err),
        };
        let status = status.map_err(|e| RestartError::Failed(format!("{argv}: {e}")))?;
        if !status.success() {
            let tail = if last_err.is_empty() {
                String::new()
            } else {
                format!(": {last_err}")
            };
            return Err(RestartError::Failed(format!(
                "{argv} exited with {status}{tail}"
            )));
        }
        self.wait_ready(deadline, config.timeout).await?;
        tracing::info!(restart = n, "rolling restart done: every pod Ready");
        Ok(())
    }

    /// Waits until the selector matches at least one pod and every one is Ready with an IP.
    async fn wait_ready(&self, deadline: Instant, timeout: Duration) -> Result<(), RestartError> {
        let mut last: String;
        loop {
            match self.lister.list().await {
                Ok(pods) if !pods.is_empty() && pods.iter().all(|p| p.ready && p.ip.is_some()) => {
                    return Ok(());
                }
                Ok(pods) => {
                    let waiting: Vec<_> = pods
                        .iter()
                        .filter(|p| !(p.ready && p.ip.is_some()))
                        .map(|p| p.name.as_str())
                        .collect();
                    last = if pods.is_empty() {
                        "no pod matches the selector".into()
                    } else {
                        format!("not Ready: {}", waiting.join(", "))
                    };
                }
                Err(e) => last = e,
            }
            if Instant::now() + READY_POLL > deadline {
                return Err(RestartError::Timeout(format!(
                    "pods not all Ready within {}s after the restart ({last})",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

impl Host for RestartCap {
    async fn rolling_restart(&mut self) -> Result<(), RestartError> {
        let started = Instant::now();
        let result = self.rolling_restart_unaudited().await;
        let (outcome, detail) = match &result {
            Ok(()) => ("ok", None),
            Err(RestartError::Denied(m)) => ("denied", Some(m.clone())),
            Err(RestartError::Failed(m)) => ("failed", Some(m.clone())),
            Err(RestartError::Timeout(m)) => ("timeout", Some(m.clone())),
        };
        let target = self
            .config
            .as_ref()
            .map_or("rolling-restart".into(), |c| c.command.join(" "));
        let mut entry = crate::audit::Entry::call(
            "restart",
            &target,
            outcome,
            started.elapsed().as_millis() as u64,
        );
        entry.detail = detail;
        self.audit.record(entry);
        result
    }
}

impl RestartCap {
    async fn rolling_restart_unaudited(&mut self) -> Result<(), RestartError> {
        match self.config.clone() {
            Some(config) if self.granted => {
                self.gate
                    .check("rolling-restart")
                    .map_err(RestartError::Denied)?;
                self.run(config).await
            }
            Some(_) => Err(RestartError::Denied(self.denials.deny(
                "restart",
                "rolling-restart",
                "restart is not granted to this component",
            ))),
            None => Err(RestartError::Denied(self.denials.deny(
                "restart",
                "rolling-restart",
                "the site file grants no restart (no [restart] section)",
            ))),
        }
    }
}
