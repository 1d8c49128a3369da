//! Support for the end-to-end tests in `e2e/`: a simulated cluster with its files,
//! the real `cmk-host` binary as a child process, and the fixture components.
//!
//! The tests themselves are integration tests of the `cmk-host` package (see
//! `host/Cargo.toml`), so cargo builds the binary before running them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cmk_sim::{Oracle, Sim, SimConfig, SimFiles};
use tokio::net::TcpListener;
use tokio::process::Command;

/// The rotation component, built by this crate's build script.
pub const ROTATE_WASM: &str = env!("CMK_GUEST_ROTATE_WASM");
/// The policy probe: makes the http calls its parameters name (`guests/probe`).
pub const PROBE_WASM: &str = env!("CMK_GUEST_PROBE_WASM");
/// The hostile component: attacks the sandbox as its `attack` parameter names
/// (`guests/hostile`).
pub const HOSTILE_WASM: &str = env!("CMK_GUEST_HOSTILE_WASM");
/// A procedure that imports an interface outside the world (`guests/outside`).
pub const OUTSIDE_WASM: &str = env!("CMK_GUEST_OUTSIDE_WASM");
/// The read-only status procedure (`guest-status`).
pub const STATUS_WASM: &str = env!("CMK_GUEST_STATUS_WASM");
/// The example of `docs/writing-procedures.md` (`examples/hello-procedure`).
pub const HELLO_WASM: &str = env!("CMK_HELLO_PROCEDURE_WASM");
/// The example hook that vetoes propose below `min_pods` Ready pods.
pub const HOOK_QUORUM_WASM: &str = env!("CMK_HOOK_QUORUM_WASM");
/// The example hook that logs the DR nodes that must rejoin.
pub const HOOK_DR_REJOIN_WASM: &str = env!("CMK_HOOK_DR_REJOIN_WASM");
/// A hostile hook: traps or spins at a step (`tests/guests/hook-hostile`).
pub const HOOK_HOSTILE_WASM: &str = env!("CMK_GUEST_HOOK_HOSTILE_WASM");

/// The precompile cache every run of the binary uses (`XDG_CACHE_HOME`), unless a
/// test passes its own `--cache-dir` or `--no-cache`.
pub const CACHE_HOME: &str = env!("CMK_TEST_CACHE_DIR");

/// No single run of the binary in a test may take longer than this.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// A simulated cluster and the files `cmk-host sim` would write for it, plus a
/// signer ("ops") its site file trusts with everything the site grants.
pub struct Cluster {
    pub sim: Sim,
    pub files: SimFiles,
    pub ops: Signer,
    _dir: tempfile::TempDir,
}

/// The `[[trust.signer]]` grants of a signer that may do all the site allows.
pub const ALL_GRANTS: &str = r#"capabilities = ["pods", "http", "restart", "log", "journal", "confirm"]
http_methods = ["GET", "POST"]
http_paths = ["/cluster/v1/key"]"#;

/// The `[[trust.signer]]` grants of a read-only procedure such as `guest-status`:
/// the pod list, the log, and GET of the status endpoint; no POST, no restart.
pub const READ_ONLY_GRANTS: &str = r#"capabilities = ["pods", "log", "http"]
http_methods = ["GET"]
http_paths = ["/cluster/v1/key"]"#;

/// A signing key pair written as `cmk-host keygen` writes it (PEM; `.key` 0600).
pub struct Signer {
    pub name: String,
    /// The id `cmk-host` names it by (24 hex digits).
    pub key_id: String,
    pub public: PathBuf,
    pub secret: PathBuf,
    sk: wasmsign2::SecretKey,
    pk: wasmsign2::PublicKey,
}

impl Signer {
    /// Generates `dir/NAME.key` and `dir/NAME.pub`.
    pub fn generate(dir: &Path, name: &str) -> Signer {
        use std::os::unix::fs::PermissionsExt;
        let pair = wasmsign2::KeyPair::generate();
        let pk = pair.pk.attach_default_key_id();
        let key_id = pk
            .key_id()
            .expect("key id")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let public = dir.join(format!("{name}.pub"));
        let secret = dir.join(format!("{name}.key"));
        std::fs::write(&public, pk.to_pem()).expect("write the public key");
        std::fs::write(&secret, pair.sk.to_pem()).expect("write the secret key");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the secret key");
        Signer {
            name: name.to_string(),
            key_id,
            public,
            secret,
            sk: pair.sk,
            pk,
        }
    }

    /// `bytes` signed with this key (wasmsign2's embedded signature).
    pub fn sign_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let module = wasmsign2::Module::deserialize(&mut std::io::Cursor::new(bytes))
            .expect("parse the component's sections");
        let signed = self.sk.sign(module, self.pk.key_id()).expect("sign");
        let mut out = Vec::new();
        signed.serialize(&mut out).expect("serialise");
        out
    }

    /// Signs the component at `wasm` into `out`; returns `out` as a string, for args.
    pub fn sign(&self, wasm: &str, out: &Path) -> String {
        let bytes = std::fs::read(wasm).expect("read the component");
        std::fs::write(out, self.sign_bytes(&bytes)).expect("write the signed component");
        out.to_str().expect("utf-8 path").to_string()
    }
}

impl Cluster {
    pub async fn start(config: SimConfig) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let sim = Sim::start(config)
            .await
            .expect("start the simulated cluster");
        let files = sim
            .write_files(dir.path())
            .expect("write the simulator's files");
        let ops = Signer::generate(dir.path(), "ops");
        let cluster = Cluster {
            sim,
            files,
            ops,
            _dir: dir,
        };
        cluster.trust(&cluster.ops, ALL_GRANTS);
        cluster
    }

    /// Appends a `[[trust.signer]]` for `signer` with `grants` (TOML lines) to the
    /// site file.
    pub fn trust(&self, signer: &Signer, grants: &str) {
        use std::io::Write;
        let mut site = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.files.site)
            .expect("open site.toml");
        write!(
            site,
            "\n[[trust.signer]]\nname = {:?}\nkey = {:?}\n{grants}\n",
            signer.name,
            signer.public.file_name().unwrap().to_str().unwrap()
        )
        .expect("append to site.toml");
    }

    /// The component at `wasm` signed by the trusted "ops" signer, as a path argument.
    pub fn signed(&self, wasm: &str) -> String {
        let name = Path::new(wasm).file_name().expect("file name");
        let out = self
            .files
            .dir
            .join(format!("signed-{}", name.to_string_lossy()));
        self.ops.sign(wasm, &out)
    }

    pub async fn pods(n: usize) -> Cluster {
        Cluster::start(SimConfig::pods(n)).await
    }

    pub fn dir(&self) -> &Path {
        &self.files.dir
    }

    /// The records of the generated site's audit trail, in order.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        let path = self.dir().join("state/audit/sim.jsonl");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the audit trail {}: {e}", path.display()))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    pub fn site(&self) -> &Path {
        &self.files.site
    }

    /// Writes a variant of the generated site file, `edit` applied to its text.
    pub fn site_with(&self, name: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
        let text = std::fs::read_to_string(&self.files.site).expect("read site.toml");
        let path = self.files.dir.join(name);
        std::fs::write(&path, edit(text)).expect("write the site variant");
        path
    }

    pub fn oracle(&self) -> Oracle {
        self.sim.oracle()
    }
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The `--json` report on stdout.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `bin` with `args`, without a terminal, and waits for it (bounded).
pub async fn run(bin: &str, args: &[&str]) -> Outcome {
    let child = Command::new(bin)
        .args(args)
        .env("XDG_CACHE_HOME", CACHE_HOME)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start cmk-host");
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("cmk-host {args:?} ran longer than {RUN_LIMIT:?}"))
        .expect("wait for cmk-host");
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A TCP listener that counts the connections made to it: proof that a denied
/// request never left the host.
pub struct Canary {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Canary {
    pub async fn listen(addr: &str) -> Canary {
        let listener = TcpListener::bind(addr).await.expect("bind the canary");
        let addr = listener.local_addr().expect("canary address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((_stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        Canary {
            addr,
            accepted,
            task,
        }
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Asserts, on the simulator's oracle, that exactly one complete rotation
/// happened in the documented order, and that every pod ended on the new key.
pub fn assert_rotated_once(oracle: &Oracle, pods: usize) {
    let proposes = oracle.proposes();
    assert_eq!(proposes.len(), 1, "exactly one propose: {oracle:#?}");
    let proposer = proposes[0];
    let target = format!("{}:4444", proposer.ip);

    let fetches = oracle.fetches();
    assert_eq!(
        fetches.len(),
        pods - 1,
        "one fetch on each other pod: {fetches:#?}"
    );
    let mut fetched_on: Vec<&str> = fetches.iter().map(|c| c.pod.as_str()).collect();
    fetched_on.sort();
    fetched_on.dedup();
    assert_eq!(
        fetched_on.len(),
        pods - 1,
        "a fetch on each other pod, once: {fetches:#?}"
    );
    assert!(
        !fetched_on.contains(&proposer.pod.as_str()),
        "no fetch on the proposer"
    );
    for fetch in &fetches {
        let body_target = fetch.body.as_ref().and_then(|b| b["target"].as_str());
        assert_eq!(
            body_target,
            Some(target.as_str()),
            "fetch targets the proposer: {fetch:#?}"
        );
        assert!(fetch.seq > proposer.seq, "fetch after propose");
    }

    assert_eq!(
        oracle.restarts.len(),
        2,
        "two rolling restarts: {:#?}",
        oracle.restarts
    );
    assert!(
        oracle.restarts.iter().all(|r| r.ok),
        "both restarts succeeded"
    );
    let activates = oracle.activates();
    assert_eq!(activates.len(), 1, "exactly one activate");
    let (first_restart, second_restart) = (oracle.restarts[0].seq, oracle.restarts[1].seq);
    assert!(
        fetches.iter().all(|f| f.seq < first_restart),
        "every fetch before the first restart"
    );
    assert!(
        activates[0].seq > first_restart && activates[0].seq < second_restart,
        "activate between the two restarts"
    );

    assert_eq!(oracle.pods.len(), pods);
    assert_eq!(oracle.version, 2, "the database is on version 2");
    for pod in &oracle.pods {
        assert_eq!(
            pod.running_version, 2,
            "{} runs version 2: {oracle:#?}",
            pod.name
        );
        assert!(!pod.broken, "{} is not broken", pod.name);
    }
    assert!(oracle.broken_pods().is_empty());
}

/// Asserts that nothing was activated and no restart ran.
pub fn assert_no_restart_no_activate(oracle: &Oracle) {
    assert!(
        oracle.restarts.is_empty(),
        "no restart: {:#?}",
        oracle.restarts
    );
    assert!(oracle.activates().is_empty(), "no activate");
    assert_eq!(oracle.version, 1, "still on version 1");
    assert!(oracle.broken_pods().is_empty(), "no pod broken");
}

/// `text` (a site file) with its `[restart]` section replaced by `replacement`
/// (which may be empty); every other section, `[[trust.signer]]` included, is kept.
pub fn replace_restart(text: &str, replacement: &str) -> String {
    let start = text.find("[restart]").expect("a [restart] section");
    let end = text[start + 1..]
        .find("\n[")
        .map_or(text.len(), |i| start + 1 + i + 1);
    format!("{}{replacement}{}", &text[..start], &text[end..])
}

/// Starts `bin` with `args`, without a terminal, for a test that interrupts it.
pub fn spawn(bin: &str, args: &[&str]) -> tokio::process::Child {
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start cmk-host")
}

/// Polls the oracle until `moment` holds, then sends `signal` (`libc`-free: via
/// `kill -s`) to `child`, and waits for it. Returns whether the signal was sent
/// (false: the run ended before the moment came) and the exit status code.
pub async fn interrupt_when(
    child: &mut tokio::process::Child,
    cluster: &Cluster,
    signal: &str,
    moment: impl Fn(&Oracle) -> bool,
) -> (bool, Option<i32>) {
    let deadline = tokio::time::Instant::now() + RUN_LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("poll cmk-host") {
            return (false, status.code());
        }
        if moment(&cluster.oracle()) {
            if signal == "KILL" {
                child.start_kill().expect("SIGKILL cmk-host");
            } else {
                let pid = child.id().expect("a running child").to_string();
                let sent = std::process::Command::new("kill")
                    .args(["-s", signal, &pid])
                    .status()
                    .expect("run kill");
                assert!(sent.success(), "kill -s {signal} {pid}");
            }
            let status = tokio::time::timeout(RUN_LIMIT, child.wait())
                .await
                .expect("cmk-host ends after the signal")
                .expect("wait for cmk-host");
            return (true, status.code());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the moment never came: {:#?}",
            cluster.oracle()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until no rolling restart is running and every pod is Ready (what an
/// operator waits for before running again after a crash).
pub async fn settle(cluster: &Cluster) {
    let deadline = tokio::time::Instant::now() + RUN_LIMIT;
    loop {
        let o = cluster.oracle();
        if !o.restart_in_progress() && o.pods.iter().all(|p| p.ready) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never settled: {o:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts, on the oracle, that the rotation completed exactly once however many
/// runs it took: one proposal, each other pod fetched it once, one activation
/// after a completed restart, no pod broken, every pod on version 2.
pub fn assert_completed_once(oracle: &Oracle, pods: usize) {
    let proposes = oracle.proposes();
    assert_eq!(proposes.len(), 1, "exactly one propose: {oracle:#?}");
    let mut fetched_on: Vec<&str> = oracle.fetches().iter().map(|c| c.pod.as_str()).collect();
    fetched_on.sort();
    let n = fetched_on.len();
    fetched_on.dedup();
    assert_eq!(n, fetched_on.len(), "no pod fetched twice: {oracle:#?}");
    assert_eq!(n, pods - 1, "every other pod fetched: {oracle:#?}");
    let activates = oracle.activates();
    assert_eq!(activates.len(), 1, "exactly one activate: {oracle:#?}");
    let last_fetch = oracle.fetches().iter().map(|c| c.seq).max().unwrap_or(0);
    assert!(
        oracle
            .restarts
            .iter()
            .any(|r| r.ok && r.seq > last_fetch && r.seq < activates[0].seq),
        "a completed restart between the last fetch and activate: {oracle:#?}"
    );
    assert!(
        oracle.broken_pods().is_empty(),
        "no pod broken: {oracle:#?}"
    );
    assert_eq!(oracle.version, 2, "the database is on version 2");
    for pod in &oracle.pods {
        assert_eq!(
            pod.running_version, 2,
            "{} runs version 2: {oracle:#?}",
            pod.name
        );
    }
}

/// Runs `bin` with `args` and `env` on a real pseudo-terminal (120x40), as an
/// operator's shell would, and waits for it (bounded). Returns the exit code and
/// everything the terminal received, escape sequences included (stdout and stderr
/// interleaved, as on a screen).
pub async fn run_on_terminal(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let session = TerminalSession::start_with_env(bin, args, env);
    tokio::task::spawn_blocking(move || session.wait())
        .await
        .expect("the terminal session")
}

/// Runs `bin` on a pseudo-terminal, typing `answer` at once (the line waits in the
/// terminal until the program reads it); the exit code and the whole screen.
pub async fn run_on_a_terminal(bin: &str, args: &[&str], answer: &str) -> (i32, String) {
    let mut session = TerminalSession::start(bin, args);
    session.type_text(answer);
    tokio::task::spawn_blocking(move || session.wait())
        .await
        .expect("the terminal session")
}

/// `bin` running on a pseudo-terminal as an operator's interactive shell runs it:
/// stdin, stdout and stderr on the terminal, which is its controlling terminal (so
/// typing Ctrl-C, `\x03`, sends it SIGINT). [`TerminalSession::type_text`] types,
/// [`TerminalSession::wait_for`] reads the screen.
pub struct TerminalSession {
    master: std::fs::File,
    screen: Arc<std::sync::Mutex<String>>,
    child: std::process::Child,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl TerminalSession {
    pub fn start(bin: &str, args: &[&str]) -> TerminalSession {
        TerminalSession::start_with_env(bin, args, &[])
    }

    /// [`TerminalSession::start`] with `env` set (and `NO_COLOR`, `CLICOLOR_FORCE`
    /// cleared unless `env` sets them).
    pub fn start_with_env(bin: &str, args: &[&str], env: &[(&str, &str)]) -> TerminalSession {
        use std::io::Read;
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::process::CommandExt;

        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two new descriptors; name and termios are optional.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned here alone.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut cmd = std::process::Command::new(bin);
        cmd.args(args)
            .env("XDG_CACHE_HOME", CACHE_HOME)
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .envs(env.iter().copied())
            .stdin(Stdio::from(slave.try_clone().expect("dup the terminal")))
            .stdout(Stdio::from(slave.try_clone().expect("dup the terminal")))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec: a new session
        // whose controlling terminal is the pseudo-terminal (stdin, already in place).
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start cmk-host on a terminal");
        drop(cmd);
        let screen = Arc::new(std::sync::Mutex::new(String::new()));
        let mut output = std::fs::File::from(master.try_clone().expect("dup the master"));
        let shown = screen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        TerminalSession {
            master: std::fs::File::from(master),
            screen,
            child,
            reader: Some(reader),
        }
    }

    /// Everything the terminal has received so far.
    pub fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Waits (bounded) until the screen shows `text`.
    pub fn wait_for(&self, text: &str) {
        let deadline = std::time::Instant::now() + RUN_LIMIT;
        while !self.screen().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "the terminal never showed {text:?}:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Types `text` (`"\x03"` is Ctrl-C).
    pub fn type_text(&mut self, text: &str) {
        use std::io::Write;
        self.master
            .write_all(text.as_bytes())
            .expect("type on the terminal");
    }

    /// Waits (bounded) for the program to exit: its exit code and the whole screen.
    pub fn wait(mut self) -> (i32, String) {
        let deadline = std::time::Instant::now() + RUN_LIMIT;
        let code = loop {
            if let Some(status) = self.child.try_wait().expect("poll cmk-host") {
                break status.code().unwrap_or(-1);
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("cmk-host did not exit:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reader ends when the program has closed the terminal (EIO).
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let screen = self.screen.lock().unwrap().clone();
        (code, screen)
    }
}

impl Drop for TerminalSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
