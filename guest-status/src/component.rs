//! The WIT bindings (wasm32 only): converts between the generated types and
//! [`crate::host`], and hands `run` to [`crate::procedure`]. No decisions here.
//!
//! Only `pods.list`, `http.batch` and `log` are called: the component never POSTs
//! and never restarts, whatever its grants.

wit_bindgen::generate!({ path: "../wit", world: "rotation" });

use std::time::{Duration, Instant};

use self::cmk::procedure::types::Outcome as WitOutcome;
use self::cmk::procedure::{http, log, pods};
use self::exports::cmk::procedure::procedure as export;
use guest_kit::types::owned_pairs;

use crate::host::{self, Clock, Host};

struct Status;

impl export::Guest for Status {
    /// Plan and apply are the same: a status read changes nothing.
    fn run(ctx: export::Context) -> Result<export::Report, export::Failure> {
        let mut bindings = Bindings {
            start: Instant::now(),
        };
        match crate::procedure::run(&mut bindings, &ctx.params) {
            Ok(report) => Ok(export::Report {
                steps: report.steps.into_iter().map(step).collect(),
                version_before: report.version,
                version_after: report.version,
                pods: report.pods,
            }),
            Err(failure) => Err(export::Failure {
                step: failure.step,
                reason: failure.reason,
                // Nothing was changed: running again is always safe.
                safe_to_resume: true,
                steps: failure.steps.into_iter().map(step).collect(),
            }),
        }
    }
}

export!(Status);

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

struct Bindings {
    start: Instant,
}

impl Host for Bindings {
    fn list_pods(&mut self) -> Result<Vec<host::Pod>, String> {
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
                pods::PodsError::Denied(m) => format!("denied: {m}"),
                pods::PodsError::Unavailable(m) => format!("unavailable: {m}"),
            })
    }

    fn get_all(&mut self, urls: &[String]) -> Vec<Result<host::Response, host::HttpError>> {
        let requests: Vec<http::Request> = urls
            .iter()
            .map(|url| http::Request {
                method: http::Method::Get,
                url: url.clone(),
                body: None,
            })
            .collect();
        let response = |r: http::Response| host::Response {
            status: r.status,
            body: r.body,
        };
        http::batch(&requests)
            .into_iter()
            .map(|r| {
                r.map(response).map_err(|e| match e {
                    http::HttpError::Denied(m) => host::HttpError::Denied(m),
                    http::HttpError::Timeout => host::HttpError::Timeout,
                    http::HttpError::Connect(m) => host::HttpError::Connect(m),
                    http::HttpError::Tls(m) => host::HttpError::Tls(m),
                    http::HttpError::Status(r) => host::HttpError::Status(response(r)),
                    http::HttpError::Protocol(m) => host::HttpError::Protocol(m),
                })
            })
            .collect()
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
}

impl Clock for Bindings {
    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn now(&mut self) -> Duration {
        self.start.elapsed()
    }
}
