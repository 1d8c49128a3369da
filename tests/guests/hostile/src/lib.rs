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
//! - `claim-rotated`: calls nothing and reports a finished rotation, version 1 -> 2;
//! - `journal-remove`: `journal.remove(key)` (default `k`);
//! - `long-url`: lists the pods, then one GET of a URL whose path is `bytes` long
//!   (default 300000) to the first pod on `port` (default 4444);
//! - `post`: lists the pods and POSTs each of `path` (comma-separated, default
//!   `/cluster/v1/key/propose`) to the first one on `port` (default 4444), in order,
//!   whatever the host answered before (`batch=true`: all in one `http.batch`) and
//!   whatever the site's hooks say: when `hooks_step` is given it calls
//!   `hooks.before(hooks_step)` first and ignores the answer (a veto included);
//!   without it, it never calls its hooks;
//! - `restart`: the same, with a rolling restart instead of the POST.
//!
//! - `activate`: lists the pods, asks `confirm.ask` first when `ask=true` (and lists
//!   again after it when `relist=true`), then POSTs `/cluster/v1/key/activate` on the
//!   first pod `times` times (default 2), ignoring every answer;
//! - `batch`: one `http.batch` of `count` (default 5000) GETs of the first pod's status;
//! - `restart-loop`: calls `restart.rolling-restart` `times` times (default 6);
//! - `post-loop`: POSTs `path` (default `/cluster/v1/key/nothing`) on the first pod
//!   up to `times` times (default 2000), until one is denied.
//!
//! `read-file`, `read-env`, `connect`, `journal-remove`, `long-url`, `activate`,
//! `batch`, `restart-loop` and `post-loop` report what they got as the detail of one
//! step per call, and succeed; `post` and `restart` fail with the error of their call
//! (a denial), or succeed when it went out.

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

    use self::cmk::procedure::http::{self, HttpError, Method, Request};
    use self::cmk::procedure::log::{self, Level};
    use self::cmk::procedure::types::Outcome;
    use self::cmk::procedure::{confirm, hooks, journal, pods, restart};
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

    fn step(name: String, detail: String) -> Step {
        Step {
            name,
            outcome: Outcome::Done,
            detail,
        }
    }

    fn steps(steps: Vec<Step>) -> Result<Report, Failure> {
        Ok(Report {
            steps,
            version_before: None,
            version_after: None,
            pods: 0,
        })
    }

    fn render(result: &Result<http::Response, HttpError>) -> String {
        match result {
            Ok(r) => format!("ok {}", r.status),
            Err(HttpError::Denied(m)) => format!("denied: {m}"),
            Err(HttpError::Status(r)) => format!("status {}", r.status),
            Err(HttpError::Timeout) => "timeout".to_string(),
            Err(HttpError::Connect(m)) => format!("connect: {m}"),
            Err(HttpError::Tls(m)) => format!("tls: {m}"),
            Err(HttpError::Protocol(m)) => format!("protocol: {m}"),
        }
    }

    /// The first listed pod's base URL, `https://IP:PORT`.
    fn first_pod(port: &str) -> Result<String, Failure> {
        let listed = pods::list().map_err(|e| Failure {
            step: "pods".to_string(),
            reason: format!("{e:?}"),
            safe_to_resume: true,
            steps: Vec::new(),
        })?;
        let ip = listed
            .iter()
            .find_map(|p| p.ip.clone())
            .unwrap_or_else(|| "0.0.0.0".to_string());
        Ok(format!("https://{ip}:{port}"))
    }

    fn count(p: Option<&str>, default: usize) -> usize {
        p.and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    fn failed(step: &str, reason: String) -> Result<Report, Failure> {
        Err(Failure {
            step: step.to_string(),
            reason,
            safe_to_resume: true,
            steps: Vec::new(),
        })
    }

    /// Calls `hooks.before(step)` when `step` is given, logs its answer, and goes
    /// on whatever it was.
    fn ignore_hooks(step: Option<&str>) {
        if let Some(step) = step {
            let answer = hooks::before(step, &[]);
            log::log(
                Level::Warn,
                &format!("hooks.before({step}) answered {answer:?}; going on anyway"),
                &[],
            );
        }
    }

    fn post(ctx: &Context) -> Result<Report, Failure> {
        let p = |k| super::param(&ctx.params, k);
        ignore_hooks(p("hooks_step"));
        let pods = match pods::list() {
            Ok(pods) => pods,
            Err(e) => return failed("post", format!("cannot list the pods: {e:?}")),
        };
        let Some(ip) = pods.iter().find_map(|pod| pod.ip.clone()) else {
            return failed("post", "no pod has an IP".into());
        };
        let urls: Vec<String> = p("path")
            .unwrap_or("/cluster/v1/key/propose")
            .split(',')
            .map(|path| format!("https://{ip}:{}{path}", p("port").unwrap_or("4444")))
            .collect();
        let results = if p("batch") == Some("true") {
            let requests: Vec<Request> = urls
                .iter()
                .map(|url| Request {
                    method: Method::Post,
                    url: url.clone(),
                    body: None,
                })
                .collect();
            http::batch(&requests)
        } else {
            urls.iter().map(|url| http::post(url, None)).collect()
        };
        let mut answers = Vec::new();
        let mut refused = false;
        for (url, result) in urls.iter().zip(results) {
            answers.push(match result {
                Ok(r) => format!("POST {url} sent: {}", r.status),
                Err(HttpError::Denied(why)) => {
                    refused = true;
                    format!("POST {url} denied: {why}")
                }
                Err(e) => {
                    refused = true;
                    format!("POST {url} failed: {e:?}")
                }
            });
        }
        if refused {
            failed("post", answers.join("; "))
        } else {
            report("post", answers.join("; "))
        }
    }

    fn restart(ctx: &Context) -> Result<Report, Failure> {
        ignore_hooks(super::param(&ctx.params, "hooks_step"));
        match restart::rolling_restart() {
            Ok(()) => report("restart", "restarted".into()),
            Err(e) => failed("restart", format!("rolling restart: {e:?}")),
        }
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
                "claim-rotated" => Ok(Report {
                    steps: vec![step(
                        "verify-activated".into(),
                        "every pod reports version 2".into(),
                    )],
                    version_before: Some(1),
                    version_after: Some(2),
                    pods: 3,
                }),
                "activate" => {
                    let base = first_pod(p("port").unwrap_or("4444"))?;
                    let mut out = Vec::new();
                    if p("ask") == Some("true") {
                        let answer = confirm::ask(
                            "activate \u{1b}[2Jthe new key",
                            &[("proposal hash".to_string(), "h".to_string())],
                        );
                        out.push(step("ask".into(), format!("{answer:?}")));
                        if p("relist") == Some("true") {
                            let _ = pods::list();
                        }
                    }
                    for i in 1..=count(p("times"), 2) {
                        let r = http::post(&format!("{base}/cluster/v1/key/activate"), None);
                        out.push(step(format!("activate {i}"), render(&r)));
                    }
                    steps(out)
                }
                "batch" => {
                    let base = first_pod(p("port").unwrap_or("4444"))?;
                    let n = count(p("count"), 5000);
                    let requests: Vec<Request> = (0..n)
                        .map(|_| Request {
                            method: Method::Get,
                            url: format!("{base}/cluster/v1/key"),
                            body: None,
                        })
                        .collect();
                    let results = http::batch(&requests);
                    let ok = results.iter().filter(|r| r.is_ok()).count();
                    let denied: Vec<String> = results
                        .iter()
                        .filter(|r| matches!(r, Err(HttpError::Denied(_))))
                        .map(render)
                        .collect();
                    steps(vec![step(
                        "batch".into(),
                        format!(
                            "{} results, {ok} ok, {} denied: {}",
                            results.len(),
                            denied.len(),
                            denied.first().cloned().unwrap_or_default()
                        ),
                    )])
                }
                "restart-loop" => {
                    let mut out = Vec::new();
                    for i in 1..=count(p("times"), 6) {
                        let r = restart::rolling_restart();
                        out.push(step(format!("restart {i}"), format!("{r:?}")));
                    }
                    steps(out)
                }
                "post-loop" => {
                    let base = first_pod(p("port").unwrap_or("4444"))?;
                    let path = p("path").unwrap_or("/cluster/v1/key/nothing");
                    let mut sent = 0;
                    let mut last = String::new();
                    for _ in 0..count(p("times"), 2000) {
                        let r = http::post(&format!("{base}{path}"), None);
                        last = render(&r);
                        if matches!(r, Err(HttpError::Denied(_))) {
                            break;
                        }
                        sent += 1;
                    }
                    steps(vec![step(
                        "post-loop".into(),
                        format!("{sent} sent; last: {last}"),
                    )])
                }
                "post" => post(&ctx),
                "restart" => restart(&ctx),
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
