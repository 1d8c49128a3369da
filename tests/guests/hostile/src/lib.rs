//! Test fixture: a hostile component. Its `attack` parameter names what it tries;
//! each attack has its own end-to-end test (`tests/e2e/sandbox.rs`) asserting that the
//! host stops or denies it. One crate with several attacks rather than one crate per
//! attack: each is still a real component run by the real host, and the guest build
//! stays one compilation.
//!
//! - `spin`: loops forever without calling the host (the wall-clock limit stops it);
//! - `grow-memory`: allocates 1 MiB blocks without end (the memory limit stops it);
//! - `recurse`: recurses without end (the stack limit traps it);
//! - `host-calls`: calls `log` without end (the host-call limit stops it);
//! - `panic`: panics with the message of the `message` parameter;
//! - `read-file`: reads `path` (default `/etc/passwd`) through `std::fs`;
//! - `read-env`: reads the environment through `std::env`;
//! - `connect`: opens a TCP connection to `addr` through `std::net` (WASI sockets);
//! - `forge`: puts [`FORGED`] (escape sequences, a carriage return, a newline and a
//!   forged `✓ verify-activated done` line, bidi overrides) into every string the
//!   host shows: log messages and fields, step names and details, its stdout and
//!   stderr, a confirmation's action and details, a journal key, a URL; then ends as
//!   `end` says: `report` (the default; steps with forged names and details),
//!   `fail` (a forged failure reason) or `panic` (a forged panic message);
//! - `journal-remove`: `journal.remove(key)` (default `k`);
//! - `long-url`: lists the pods, then one GET of a URL whose path is `bytes` long
//!   (default 300000) to the first pod on `port` (default 4444).
//!
//! `read-file`, `read-env`, `connect`, `journal-remove` and `long-url` report what
//! they got as the detail of one step, and succeed.

/// What `forge` writes wherever it can: a screen clear, a window title, a carriage
/// return and a newline, then a line in the host's voice, a backspace, a right-to-left
/// override and a C1 CSI.
pub const FORGED: &str = "\u{1b}[2J\u{1b}]0;pwned\u{7}\r\n✓ verify-activated done (0.0s): every pod reports version 99\u{8}\u{202e}\u{9b}31m";

/// The value of the last `key` in `params`.
pub fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Recursion the optimiser cannot turn into a loop: each frame's result is used
/// after the call returns.
#[inline(never)]
pub fn recurse(depth: u64) -> u64 {
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    let below = recurse(std::hint::black_box(depth + 1));
    below.wrapping_mul(31).wrapping_add(depth)
}

/// Allocates and touches 1 MiB blocks, keeping them all, until the allocation fails.
pub fn grow_memory() -> usize {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let block = vec![0xa5u8; 1 << 20];
        blocks.push(std::hint::black_box(block));
        if blocks.len() == usize::MAX {
            return blocks.len();
        }
    }
}

/// Spins without calling the host.
pub fn spin() -> u64 {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
        if n == u64::MAX {
            return n;
        }
    }
}

/// What `std::fs` gives: the error, or how many bytes it read.
pub fn read_file(path: &str) -> String {
    match std::fs::read(path) {
        Ok(bytes) => format!("read {} bytes", bytes.len()),
        Err(e) => format!("error: {e}"),
    }
}

/// What `std::env` gives: how many variables, and their names.
pub fn read_env() -> String {
    let names: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    let args = std::env::args_os().count();
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("error: {e}"));
    format!(
        "{} variables [{}]; {args} args; cwd {cwd}",
        names.len(),
        names.join(",")
    )
}

/// What `std::net` gives: the error, or that it connected.
pub fn connect(addr: &str) -> String {
    match std::net::TcpStream::connect(addr) {
        Ok(_) => "connected".to_string(),
        Err(e) => format!("error: {e}"),
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "rotation" });

    use self::cmk::procedure::log::{self, Level};
    use self::cmk::procedure::types::Outcome;
    use self::cmk::procedure::{confirm, http, journal, pods};
    use self::exports::cmk::procedure::procedure::{Context, Failure, Guest, Report, Step};
    use super::FORGED;

    struct Hostile;

    fn report(name: &str, detail: String) -> Result<Report, Failure> {
        Ok(Report {
            steps: vec![Step {
                name: name.to_string(),
                outcome: Outcome::Done,
                detail,
            }],
            version_before: None,
            version_after: None,
            pods: 0,
        })
    }

    impl Guest for Hostile {
        fn run(ctx: Context) -> Result<Report, Failure> {
            let p = |k| super::param(&ctx.params, k);
            match p("attack").unwrap_or("") {
                "spin" => report("spin", super::spin().to_string()),
                "grow-memory" => report("grow-memory", super::grow_memory().to_string()),
                "recurse" => report("recurse", super::recurse(0).to_string()),
                "host-calls" => {
                    let mut n: u64 = 0;
                    loop {
                        n += 1;
                        log::log(Level::Trace, "again", &[]);
                        if n == u64::MAX {
                            return report("host-calls", n.to_string());
                        }
                    }
                }
                "panic" => panic!("{}", p("message").unwrap_or("hostile panic")),
                "read-file" => report(
                    "read-file",
                    super::read_file(p("path").unwrap_or("/etc/passwd")),
                ),
                "read-env" => report("read-env", super::read_env()),
                "connect" => report(
                    "connect",
                    super::connect(p("addr").unwrap_or("127.0.0.1:22")),
                ),
                "forge" => forge(p("end").unwrap_or("report")),
                "journal-remove" => {
                    let detail = match journal::remove(p("key").unwrap_or("k")) {
                        Ok(()) => "ok".to_string(),
                        Err(journal::JournalError::Denied(m)) => format!("denied: {m}"),
                        Err(journal::JournalError::TooLarge(m)) => format!("too-large: {m}"),
                        Err(journal::JournalError::Io(m)) => format!("io: {m}"),
                    };
                    report("journal-remove", detail)
                }
                "long-url" => {
                    let bytes = p("bytes").and_then(|n| n.parse().ok()).unwrap_or(300_000);
                    let port = p("port").unwrap_or("4444");
                    let ip = pods::list()
                        .ok()
                        .and_then(|l| l.into_iter().find_map(|pod| pod.ip))
                        .unwrap_or_else(|| "127.0.0.1".to_string());
                    let url = format!("https://{ip}:{port}/cluster/v1/key/{}", "a".repeat(bytes));
                    let detail = match http::get(&url) {
                        Ok(r) => format!("ok {}", r.status),
                        Err(http::HttpError::Status(r)) => format!("status {}", r.status),
                        Err(http::HttpError::Denied(m)) => {
                            format!("denied: {}", m.chars().take(200).collect::<String>())
                        }
                        Err(http::HttpError::Timeout) => "timeout".to_string(),
                        Err(http::HttpError::Connect(_)) => "connect".to_string(),
                        Err(http::HttpError::Tls(_)) => "tls".to_string(),
                        Err(http::HttpError::Protocol(_)) => "protocol".to_string(),
                    };
                    report("long-url", detail)
                }
                other => Err(Failure {
                    step: "params".to_string(),
                    reason: format!("unknown attack {other:?}"),
                    safe_to_resume: true,
                    steps: Vec::new(),
                }),
            }
        }
    }

    /// Every string the host shows, forged; then the end `end` names.
    fn forge(end: &str) -> Result<Report, Failure> {
        let forged = || FORGED.to_string();
        log::log(
            Level::Warn,
            &format!("log {FORGED}"),
            &[(forged(), forged()), ("field".into(), forged())],
        );
        log::step_begin(&format!("verify-activated{FORGED}"), FORGED);
        log::step_end(&format!("verify-activated{FORGED}"), Outcome::Done, FORGED);
        println!("stdout {FORGED}");
        eprintln!("stderr {FORGED}");
        let _ = confirm::ask(&format!("activate{FORGED}"), &[(forged(), forged())]);
        let _ = journal::set(&format!("key{FORGED}"), FORGED);
        let _ = http::get(&format!("https://127.0.0.1:4444/cluster/v1/key{FORGED}"));
        let steps = vec![Step {
            name: format!("verify-activated{FORGED}"),
            outcome: Outcome::Done,
            detail: format!("detail {FORGED} key={FORGED}"),
        }];
        match end {
            "fail" => Err(Failure {
                step: format!("step{FORGED}"),
                reason: format!("reason {FORGED}"),
                safe_to_resume: true,
                steps,
            }),
            "panic" => panic!("panic {FORGED}"),
            _ => Ok(Report {
                steps,
                version_before: None,
                version_after: None,
                pods: 0,
            }),
        }
    }

    export!(Hostile);
}
