//! The WIT bindings (wasm32 only): converts between the generated types and
//! [`crate::host`], and hands `run` to [`crate::procedure`]. No decisions here.

wit_bindgen::generate!({ path: "../wit", world: "rotation" });

use std::time::{Duration, Instant};

use self::cmk::procedure::types::Outcome as WitOutcome;
use self::cmk::procedure::{confirm, hooks, http, journal, log, pods, restart};
use self::exports::cmk::procedure::procedure as export;
use guest_kit::types::owned_pairs;

use crate::host::{self, Clock, Host};

struct Rotate;

impl export::Guest for Rotate {
    fn run(ctx: export::Context) -> Result<export::Report, export::Failure> {
        let mode = match ctx.mode {
            export::Mode::Apply => host::Mode::Apply,
            export::Mode::Plan => host::Mode::Plan,
        };
        let mut bindings = Bindings {
            start: Instant::now(),
        };
        match crate::procedure::run(&mut bindings, mode, &ctx.params, &ctx.cluster) {
            Ok(report) => Ok(export::Report {
                steps: report.steps.into_iter().map(step).collect(),
                version_before: report.version_before,
                version_after: report.version_after,
                pods: report.pods,
            }),
            Err(failure) => Err(export::Failure {
                step: failure.step,
                reason: failure.reason,
                safe_to_resume: failure.safe_to_resume,
                steps: failure.steps.into_iter().map(step).collect(),
            }),
        }
    }
}

export!(Rotate);

fn step(s: host::Step) -> export::Step {
    export::Step {
        name: s.name,
        outcome: outcome(s.outcome),
        detail: s.detail,
    }
}

fn outcome(o: host::Outcome) -> WitOutcome {
    match o {
        host::Outcome::Done => WitOutcome::Done,
        host::Outcome::Skipped => WitOutcome::Skipped,
        host::Outcome::Planned => WitOutcome::Planned,
        host::Outcome::Failed => WitOutcome::Failed,
    }
}

fn http_result(
    r: Result<http::Response, http::HttpError>,
) -> Result<host::Response, host::HttpError> {
    let response = |r: http::Response| host::Response {
        status: r.status,
        body: r.body,
    };
    r.map(response).map_err(|e| match e {
        http::HttpError::Denied(m) => host::HttpError::Denied(m),
        http::HttpError::Timeout => host::HttpError::Timeout,
        http::HttpError::Connect(m) => host::HttpError::Connect(m),
        http::HttpError::Tls(m) => host::HttpError::Tls(m),
        http::HttpError::Status(r) => host::HttpError::Status(response(r)),
        http::HttpError::Protocol(m) => host::HttpError::Protocol(m),
    })
}

/// The world's imports, behind [`Host`]; the clock is std's (WASI clocks).
struct Bindings {
    start: Instant,
}

impl Host for Bindings {
    fn list_pods(&mut self) -> Result<Vec<host::Pod>, host::PodsError> {
        pods::list()
            .map(|list| {
                list.into_iter()
                    .map(|p| host::Pod {
                        name: p.name,
                        ip: p.ip,
                        ready: p.ready,
                        phase: p.phase,
                    })
                    .collect()
            })
            .map_err(|e| match e {
                pods::PodsError::Denied(m) => host::PodsError::Denied(m),
                pods::PodsError::Unavailable(m) => host::PodsError::Unavailable(m),
            })
    }

    fn get(&mut self, url: &str) -> Result<host::Response, host::HttpError> {
        http_result(http::get(url))
    }

    fn post(&mut self, url: &str, body: Option<&str>) -> Result<host::Response, host::HttpError> {
        http_result(http::post(url, body))
    }

    fn batch(
        &mut self,
        requests: &[host::Request],
    ) -> Vec<Result<host::Response, host::HttpError>> {
        let requests: Vec<http::Request> = requests
            .iter()
            .map(|r| http::Request {
                method: match r.method {
                    host::Method::Get => http::Method::Get,
                    host::Method::Post => http::Method::Post,
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

    fn rolling_restart(&mut self) -> Result<(), host::RestartError> {
        restart::rolling_restart().map_err(|e| match e {
            restart::RestartError::Denied(m) => host::RestartError::Denied(m),
            restart::RestartError::Failed(m) => host::RestartError::Failed(m),
            restart::RestartError::Timeout(m) => host::RestartError::Timeout(m),
        })
    }

    fn log(&mut self, level: host::Level, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            host::Level::Trace => log::Level::Trace,
            host::Level::Debug => log::Level::Debug,
            host::Level::Info => log::Level::Info,
            host::Level::Warn => log::Level::Warn,
            host::Level::Error => log::Level::Error,
        };
        log::log(level, message, &owned_pairs(fields));
    }

    fn step_begin(&mut self, name: &str, detail: &str) {
        log::step_begin(name, detail);
    }

    fn step_end(&mut self, name: &str, outcome: host::Outcome, detail: &str) {
        log::step_end(name, self::outcome(outcome), detail);
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

    fn hook_after(&mut self, step: &str, outcome: host::Outcome, observed: &[(&str, &str)]) {
        hooks::after(step, self::outcome(outcome), &owned_pairs(observed));
    }
}

impl Clock for Bindings {
    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn now(&mut self) -> Duration {
        self.start.elapsed()
    }
}

fn journal_error(e: journal::JournalError) -> String {
    match e {
        journal::JournalError::Denied(m) => format!("denied: {m}"),
        journal::JournalError::TooLarge(m) => format!("too large: {m}"),
        journal::JournalError::Io(m) => format!("cannot write: {m}"),
    }
}
