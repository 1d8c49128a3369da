//! `restart`: the cluster's rolling restart, by the mechanism the site fixes.
//!
//! `[restart] kind = "command"` (the default when `command` is given): the argv runs
//! as a child process (no shell), in the site's working directory, with only the
//! environment variables the site lists; its output goes to the log.
//! `kind = "kubernetes"`: the workload's pod template is patched as
//! `kubectl rollout restart` does, and the rollout is awaited as `kubectl rollout
//! status` does ([`kubernetes`]). Either way the call returns once every pod
//! matching the selector is Ready with an IP, all within the site's timeout.
//! Without a `[restart]` section the call is denied.

pub mod kubernetes;
pub mod running;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::process::Command;

use super::gate::{Call, Gate, Permit};
use super::pods::PodLister;
use super::{Denials, LatestPods};
use crate::frame::{SiteError, SiteFile, is_dns_label, is_executable};
use crate::wit::cmk::procedure::pods::Pod;
use crate::wit::cmk::procedure::restart::{Host, RestartError};
pub use kubernetes::{Workload, WorkloadKind};

/// Environment variables the restart command inherits when the site lists none;
/// everything else is cleared so that the host's secrets (tokens, credentials) do
/// not leak into it.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "KUBECONFIG"];

/// How often the pod list is read while waiting for every pod to be Ready.
const READY_POLL: Duration = Duration::from_millis(200);

/// `[restart]`: how the cluster is restarted. Without it, `restart` is denied.
#[derive(Debug, Clone)]
pub struct Restart {
    pub mechanism: Mechanism,
    /// The whole restart: the command or rollout, and the wait for Ready pods.
    pub timeout: Duration,
    /// Rolling restarts one run may make (the gate counts them).
    pub max_per_run: u32,
}

/// What a rotation needs: one restart to load the proposal, one to run the new key.
pub const DEFAULT_MAX_PER_RUN: u32 = 2;
const MAX_MAX_PER_RUN: u32 = 100;

/// The two ways a site can restart its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// `kind = "command"`: a program the host runs.
    Command {
        /// argv: the program and its arguments. Run directly, never through a shell.
        argv: Vec<String>,
        /// Where it runs; the host's working directory when absent.
        working_dir: Option<PathBuf>,
        /// The names of the host's environment variables it inherits.
        env: Vec<String>,
    },
    /// `kind = "kubernetes"`: a rollout restart of a workload in the site's namespace.
    Kubernetes(Workload),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestart {
    kind: Option<String>,
    command: Option<Vec<String>>,
    working_dir: Option<PathBuf>,
    env: Option<Vec<String>>,
    /// `statefulset/NAME` or `deployment/NAME`, as kubectl writes it.
    workload: Option<String>,
    #[serde(default = "default_restart_timeout")]
    timeout_secs: u64,
    max_per_run: Option<u32>,
}

fn default_restart_timeout() -> u64 {
    DEFAULT_TIMEOUT.as_secs()
}

/// `[restart] timeout_secs` when the site does not set it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

impl RawRestart {
    pub fn validate(self, file: &SiteFile<'_>) -> Result<Restart, SiteError> {
        if self.timeout_secs == 0 {
            return Err(file.error("[restart] timeout_secs", "must be at least 1"));
        }
        let timeout = Duration::from_secs(self.timeout_secs);
        let max_per_run = self.max_per_run.unwrap_or(DEFAULT_MAX_PER_RUN);
        if !(1..=MAX_MAX_PER_RUN).contains(&max_per_run) {
            return Err(file.error(
                "[restart] max_per_run",
                format!("must be 1..={MAX_MAX_PER_RUN}, not {max_per_run}"),
            ));
        }
        let kind = match (self.kind.as_deref(), &self.command, &self.workload) {
            (Some(kind), _, _) => kind,
            (None, Some(_), _) => "command",
            (None, None, Some(_)) => "kubernetes",
            (None, None, None) => {
                return Err(file.error(
                    "[restart]",
                    "say how to restart: `command = [...]`, or `kind = \"kubernetes\"` with `workload = \"statefulset/NAME\"`",
                ));
            }
        };
        let mechanism = match kind {
            "command" => self.command_mechanism(file)?,
            "kubernetes" => {
                for (key, set) in [
                    ("command", self.command.is_some()),
                    ("working_dir", self.working_dir.is_some()),
                    ("env", self.env.is_some()),
                ] {
                    if set {
                        return Err(
                            file.error(format!("[restart] {key}"), "only for kind = \"command\"")
                        );
                    }
                }
                let Some(workload) = &self.workload else {
                    return Err(file.error(
                        "[restart] workload",
                        "missing: kind = \"kubernetes\" restarts `statefulset/NAME` or `deployment/NAME`",
                    ));
                };
                let workload =
                    Workload::parse(workload).map_err(|e| file.error("[restart] workload", e))?;
                Mechanism::Kubernetes(workload)
            }
            other => {
                return Err(file.error(
                    "[restart] kind",
                    format!("{other:?} is not a restart kind: \"command\" or \"kubernetes\""),
                ));
            }
        };
        Ok(Restart {
            mechanism,
            timeout,
            max_per_run,
        })
    }

    fn command_mechanism(&self, file: &SiteFile<'_>) -> Result<Mechanism, SiteError> {
        if self.workload.is_some() {
            return Err(file.error("[restart] workload", "only for kind = \"kubernetes\""));
        }
        let Some(program) = self.command.as_ref().and_then(|c| c.first()) else {
            return Err(file.error("[restart] command", "must name a program"));
        };
        let mut argv = self.command.clone().unwrap_or_default();
        if program.contains('/') {
            let resolved = file.resolve(Path::new(program));
            if !is_executable(&resolved) {
                return Err(file.error(
                    "[restart] command",
                    format!("{} is not an executable file", resolved.display()),
                ));
            }
            argv[0] = resolved.display().to_string();
        }
        let working_dir = match &self.working_dir {
            Some(dir) => {
                let dir = file.resolve(dir);
                if !dir.is_dir() {
                    return Err(file.error(
                        "[restart] working_dir",
                        format!("{} is not a directory", dir.display()),
                    ));
                }
                Some(dir)
            }
            None => None,
        };
        let env = match &self.env {
            Some(names) => {
                for name in names {
                    let valid = !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        && !name.as_bytes()[0].is_ascii_digit();
                    if !valid {
                        return Err(file.error(
                            "[restart] env",
                            format!("{name:?} is not an environment variable name"),
                        ));
                    }
                }
                names.clone()
            }
            None => INHERITED_ENV.iter().map(|s| s.to_string()).collect(),
        };
        Ok(Mechanism::Command {
            argv,
            working_dir,
            env,
        })
    }
}

/// Whether `name` is a valid name of a Kubernetes object (DNS subdomain).
pub(crate) fn is_object_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// The `restart` capability of one run.
pub struct RestartCap {
    config: Option<Restart>,
    lister: PodLister,
    denials: Denials,
    count: u32,
    /// The grant, the per-run limit, plan mode, stop requests, the Lease fence and
    /// the guards: a restart passes it before it starts.
    gate: Gate,
    audit: crate::audit::Audit,
    /// Where a restart command records itself and its output while it runs.
    running: running::Running,
}

impl RestartCap {
    /// A restart command records itself and its output in `running` while it runs
    /// (for the next run, should this host die meanwhile).
    pub fn new(
        config: Option<Restart>,
        lister: PodLister,
        gate: Gate,
        denials: Denials,
        running: running::Running,
    ) -> Self {
        RestartCap {
            config,
            lister,
            denials,
            count: 0,
            gate,
            audit: crate::audit::Audit::default(),
            running,
        }
    }

    /// Every restart, run or refused, is recorded in `audit`.
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = audit;
        self
    }

    /// Runs the restart: only with the gate's [`Permit`].
    async fn run(&mut self, _permit: Permit, config: Restart) -> Result<(), RestartError> {
        self.count += 1;
        let n = self.count;
        let deadline = Instant::now() + config.timeout;
        match &config.mechanism {
            Mechanism::Command {
                argv,
                working_dir,
                env,
            } => {
                tracing::info!(restart = n, command = %argv.join(" "), "rolling restart started");
                run_command(
                    argv,
                    working_dir.as_deref(),
                    env,
                    deadline,
                    config.timeout,
                    &self.running,
                )
                .await?;
            }
            Mechanism::Kubernetes(workload) => {
                tracing::info!(restart = n, %workload, "rollout restart started");
                kubernetes::rollout_restart(
                    &self.lister.client(),
                    self.lister.namespace(),
                    workload,
                    deadline,
                    config.timeout,
                )
                .await?;
            }
        }
        let result = self.wait_ready(deadline, config.timeout).await;
        // The cluster changed under any confirmation given before: the host's view is
        // the list it waited on (or the next one the procedure reads).
        self.latest().observe(result.clone().unwrap_or_default());
        result?;
        tracing::info!(restart = n, "rolling restart done: every pod Ready");
        Ok(())
    }

    fn latest(&self) -> &LatestPods {
        self.gate.latest_pods()
    }

    /// Waits until the selector matches at least one pod and every one is Ready with
    /// an IP; returns that list.
    async fn wait_ready(
        &self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Vec<Pod>, RestartError> {
        let mut last: String;
        loop {
            match self.lister.list().await {
                Ok(pods) if !pods.is_empty() && pods.iter().all(|p| p.ready && p.ip.is_some()) => {
                    return Ok(pods);
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

/// Runs the site's restart command to completion within the deadline: its stdout
/// and stderr go to the log, a non-zero exit is a failure naming its last error line.
///
/// Its output goes to files beside its record (see [`running`]), not to pipes, and
/// the host follows them: a command writing after the host was killed would get
/// EPIPE (or SIGPIPE) from a pipe and die half-way through the restart.
async fn run_command(
    argv: &[String],
    working_dir: Option<&Path>,
    env: &[String],
    deadline: Instant,
    timeout: Duration,
    running: &running::Running,
) -> Result<(), RestartError> {
    let line = argv.join(" ");
    let cannot = |e: std::io::Error| RestartError::Failed(format!("cannot start {line}: {e}"));
    let (out, err) = running.output().map_err(cannot)?;
    let mut cmd = Command::new(&argv[0]);
    if let Some(dir) = working_dir {
        cmd.current_dir(dir);
    }
    cmd.args(&argv[1..])
        .env_clear()
        .envs(env.iter().filter_map(|k| Some((k, std::env::var_os(k)?))))
        .stdin(Stdio::null())
        .stdout(out.writer)
        .stderr(err.writer)
        // Its own process group: a Ctrl-C on the terminal stops the host at a
        // safe point, and must not kill a restart half-way.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(cannot)?;
    if let Some(pid) = child.id() {
        running.started(pid);
    }
    let mut follow = Follow {
        out: out.reader,
        err: err.reader,
        last_err: String::new(),
    };
    let waited = tokio::time::timeout_at(deadline.into(), async {
        loop {
            tokio::select! {
                status = child.wait() => break status,
                () = tokio::time::sleep(FOLLOW_POLL) => follow.forward(false),
            }
        }
    })
    .await;
    follow.forward(true);
    running.ended();
    let status = match waited {
        Err(_) => {
            // kill_on_drop ends the child; say so explicitly for the log.
            let _ = child.start_kill();
            return Err(RestartError::Timeout(format!(
                "{line} did not finish within {}s",
                timeout.as_secs()
            )));
        }
        Ok(status) => status.map_err(|e| RestartError::Failed(format!("{line}: {e}")))?,
    };
    if !status.success() {
        let tail = if follow.last_err.is_empty() {
            String::new()
        } else {
            format!(": {}", follow.last_err)
        };
        return Err(RestartError::Failed(format!(
            "{line} exited with {status}{tail}"
        )));
    }
    Ok(())
}

/// How often the command's output files are read while it runs.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// The host's reading ends of the command's output files.
struct Follow {
    out: running::Tail,
    err: running::Tail,
    /// The last line on stderr (for the failure's message).
    last_err: String,
}

impl Follow {
    /// Sends every complete line written since to the log (`last`: the partial
    /// last line too).
    fn forward(&mut self, last: bool) {
        self.out
            .lines(last, |l| tracing::info!(target: "cmk_host::restart", "{l}"));
        let last_err = &mut self.last_err;
        self.err.lines(last, |l| {
            tracing::warn!(target: "cmk_host::restart", "{l}");
            *last_err = l.to_string();
        });
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
        let target = match self.config.as_ref().map(|c| &c.mechanism) {
            None => "rolling-restart".to_string(),
            Some(Mechanism::Command { argv, .. }) => argv.join(" "),
            Some(Mechanism::Kubernetes(workload)) => format!("rollout restart {workload}"),
        };
        self.audit.record(
            crate::audit::Entry::call(
                "restart",
                &target,
                outcome,
                started.elapsed().as_millis() as u64,
            )
            .detail(detail),
        );
        result
    }
}

impl RestartCap {
    async fn rolling_restart_unaudited(&mut self) -> Result<(), RestartError> {
        let Some(config) = self.config.clone() else {
            return Err(RestartError::Denied(self.denials.deny(
                "restart",
                "rolling-restart",
                "the site file grants no restart (no [restart] section)",
            )));
        };
        let permit = self
            .gate
            .decide(Call::Restart {
                target: "rolling-restart",
            })
            .await
            .map_err(|refusal| RestartError::Denied(refusal.into_message()))?;
        self.run(permit, config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_command_names_its_last_error_line_and_its_output_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let running = running::Running::at(dir.path(), "c");
        let argv = [
            "/bin/sh",
            "-c",
            "echo working; echo first >&2; echo last-words >&2; exit 3",
        ]
        .map(String::from);
        let err = run_command(
            &argv,
            None,
            &[],
            Instant::now() + Duration::from_secs(30),
            Duration::from_secs(30),
            &running,
        )
        .await
        .unwrap_err();
        let RestartError::Failed(message) = err else {
            panic!("{err:?}")
        };
        assert!(
            message.ends_with("exited with exit status: 3: last-words"),
            "{message}"
        );
        assert!(!running.path().exists(), "no record once it ended");
        let out = std::fs::read_to_string(running.path().with_extension("out")).unwrap();
        assert_eq!(out, "working\n");
    }
}
