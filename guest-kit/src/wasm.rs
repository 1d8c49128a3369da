//! The bindings of the `rotation` world, generated once for every procedure, and
//! their conversions (wasm32 only): [`WitHost`] implements [`Read`] and [`Act`] on
//! the real imports, and [`run`] turns the export's `context` into [`Context`] and
//! the procedure's result back. A procedure's component module is then three lines:
//!
//! ```ignore
//! struct Rotate;
//! impl guest_kit::wasm::Guest for Rotate {
//!     fn run(ctx: guest_kit::wasm::WitContext) -> guest_kit::wasm::WitResult {
//!         guest_kit::wasm::run(ctx, crate::procedure::run)
//!     }
//! }
//! guest_kit::wasm::export!(Rotate);
//! ```

wit_bindgen::generate!({
    path: "../wit",
    world: "rotation",
    pub_export_macro: true,
    default_bindings_module: "guest_kit::wasm",
});

use std::time::{Duration, Instant};

use self::cmk::procedure::types::Outcome as WitOutcome;
use self::cmk::procedure::{confirm, hooks, http, journal, log, pods, restart};
use self::exports::cmk::procedure::procedure as export;

pub use self::exports::cmk::procedure::procedure::Guest;
/// The export's argument and result, as `Guest::run` spells them.
pub type WitContext = export::Context;
pub type WitResult = Result<export::Report, export::Failure>;

use crate::grants::Grants;
use crate::host::{Act, Clock, Read};
use crate::types::{
    Context, Failure, HttpError, Level, Method, Mode, Outcome, Pod, PodsError, Report, Request,
    Response, RestartError, Step, owned_pairs,
};

/// Runs `procedure` on the real imports with the export's `ctx`, and converts its
/// result for the host.
pub fn run(
    ctx: WitContext,
    procedure: impl FnOnce(&mut WitHost, &Context) -> Result<Report, Failure>,
) -> WitResult {
    let ctx = Context {
        mode: match ctx.mode {
            export::Mode::Apply => Mode::Apply,
            export::Mode::Plan => Mode::Plan,
        },
        params: ctx.params,
        cluster: ctx.cluster,
        grants: Grants {
            capabilities: ctx.grants.capabilities,
            http_methods: ctx.grants.http_methods,
            http_paths: ctx.grants.http_paths,
            confirm_answerable: ctx.grants.confirm_answerable,
        },
    };
    let mut host = WitHost {
        start: Instant::now(),
    };
    match procedure(&mut host, &ctx) {
        Ok(r) => Ok(export::Report {
            steps: r.steps.into_iter().map(step).collect(),
            version_before: r.version_before,
            version_after: r.version_after,
            pods: r.pods,
        }),
        Err(f) => Err(export::Failure {
            step: f.step,
            reason: f.reason,
            safe_to_resume: f.safe_to_resume,
            steps: f.steps.into_iter().map(step).collect(),
        }),
    }
}

fn step(s: Step) -> export::Step {
    export::Step {
        name: s.name,
        outcome: outcome(s.outcome),
        detail: s.detail,
    }
}

fn outcome(o: Outcome) -> WitOutcome {
    match o {
        Outcome::Done => WitOutcome::Done,
        Outcome::Skipped => WitOutcome::Skipped,
        Outcome::Planned => WitOutcome::Planned,
        Outcome::Failed => WitOutcome::Failed,
        Outcome::Refused => WitOutcome::Refused,
    }
}

fn http_result(r: Result<http::Response, http::HttpError>) -> Result<Response, HttpError> {
    let response = |r: http::Response| Response {
        status: r.status,
        body: r.body,
    };
    r.map(response).map_err(|e| match e {
        http::HttpError::Denied(m) => HttpError::Denied(m),
        http::HttpError::Timeout => HttpError::Timeout,
        http::HttpError::Connect(m) => HttpError::Connect(m),
        http::HttpError::Tls(m) => HttpError::Tls(m),
        http::HttpError::Status(r) => HttpError::Status(response(r)),
        http::HttpError::Protocol(m) => HttpError::Protocol(m),
    })
}

fn journal_error(e: journal::JournalError) -> String {
    match e {
        journal::JournalError::Denied(m) => format!("denied: {m}"),
        journal::JournalError::TooLarge(m) => format!("too large: {m}"),
        journal::JournalError::Io(m) => format!("cannot write: {m}"),
    }
}

/// The world's imports; the clock is std's (WASI clocks).
pub struct WitHost {
    start: Instant,
}

impl Clock for WitHost {
    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn now(&mut self) -> Duration {
        self.start.elapsed()
    }
}

impl Read for WitHost {
    fn list_pods(&mut self) -> Result<Vec<Pod>, PodsError> {
        pods::list()
            .map(|list| {
                list.into_iter()
                    .map(|p| Pod {
                        name: p.name,
                        ip: p.ip,
                        ready: p.ready,
                        phase: p.phase,
                    })
                    .collect()
            })
            .map_err(|e| match e {
                pods::PodsError::Denied(m) => PodsError::Denied(m),
                pods::PodsError::Unavailable(m) => PodsError::Unavailable(m),
            })
    }

    fn get(&mut self, url: &str) -> Result<Response, HttpError> {
        http_result(http::get(url))
    }

    fn get_all(&mut self, urls: &[String]) -> Vec<Result<Response, HttpError>> {
        let requests: Vec<Request> = urls
            .iter()
            .map(|url| Request {
                method: Method::Get,
                url: url.clone(),
                body: None,
            })
            .collect();
        self.batch(&requests)
    }

    fn log(&mut self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            Level::Trace => log::Level::Trace,
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
            Level::Error => log::Level::Error,
        };
        log::log(level, message, &owned_pairs(fields));
    }

    fn step_begin(&mut self, name: &str, detail: &str) {
        log::step_begin(name, detail);
    }

    fn step_end(&mut self, name: &str, outcome: Outcome, detail: &str) {
        log::step_end(name, self::outcome(outcome), detail);
    }
}

impl Act for WitHost {
    fn post(&mut self, url: &str, body: Option<&str>) -> Result<Response, HttpError> {
        http_result(http::post(url, body))
    }

    fn batch(&mut self, requests: &[Request]) -> Vec<Result<Response, HttpError>> {
        let requests: Vec<http::Request> = requests
            .iter()
            .map(|r| http::Request {
                method: match r.method {
                    Method::Get => http::Method::Get,
                    Method::Post => http::Method::Post,
                },
                url: r.url.clone(),
                body: r.body.clone(),
            })
            .collect();
        http::batch(&requests)
            .into_iter()
            .map(http_result)
            .collect()
    }

    fn rolling_restart(&mut self) -> Result<(), RestartError> {
        restart::rolling_restart().map_err(|e| match e {
            restart::RestartError::Denied(m) => RestartError::Denied(m),
            restart::RestartError::Failed(m) => RestartError::Failed(m),
            restart::RestartError::Timeout(m) => RestartError::Timeout(m),
        })
    }

    fn journal_entries(&mut self) -> Vec<(String, String)> {
        journal::entries()
    }

    fn journal_set(&mut self, key: &str, value: &str) -> Result<(), String> {
        journal::set(key, value).map_err(journal_error)
    }

    fn journal_remove(&mut self, key: &str) -> Result<(), String> {
        journal::remove(key).map_err(journal_error)
    }

    fn confirm(&mut self, action: &str, details: &[(&str, &str)]) -> Result<(), String> {
        confirm::ask(action, &owned_pairs(details))
    }

    fn hook_before(&mut self, step: &str, observed: &[(&str, &str)]) -> Result<(), String> {
        hooks::before(step, &owned_pairs(observed))
    }

    fn hook_after(&mut self, step: &str, outcome: Outcome, observed: &[(&str, &str)]) {
        hooks::after(step, self::outcome(outcome), &owned_pairs(observed));
    }
}
