//! An in-memory cluster behind the host traits, for the unit tests: the DSM rules are
//! the simulator's own ([`cmk_dsm::Db`]), so a rule changes in one place; this file
//! adds only what the simulator's servers add (addresses that change at every
//! restart, HTTP answers) and fault injection. It records every mutating call:
//! tests assert on what happened to the cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use cmk_dsm::{Db, DbError};
use guest_kit::host::{Act, Clock, Read};
use guest_kit::types::*;

/// An injected http error for `times` requests `METHOD path` to `pod`.
pub struct Fault {
    pub pod: String,
    pub method: Method,
    pub path: &'static str,
    pub error: HttpError,
    pub times: usize,
}

pub struct Fake {
    pub db: Db,
    /// Pod names, in order, and their current IPs (`10.0.<restarts>.<index + 1>`).
    pub pods: Vec<(String, String)>,
    /// `propose sdkms-0`, `fetch sdkms-1 from 10.0.0.1:4444`, `activate sdkms-0`, `restart`.
    pub mutations: Vec<String>,
    /// Every request: `GET sdkms-0 /cluster/v1/key`.
    pub requests: Vec<String>,
    pub faults: Vec<Fault>,
    /// A pod whose fetch stores a different hash.
    pub fetch_wrong: Option<String>,
    /// A pod the first rolling restart skips: it never loads the proposal, yet
    /// reports it (the fetched hash is persisted), and breaks after activation.
    pub load_fails: Option<String>,
    /// The n-th restart (1-based) fails with this error.
    pub restart_error: Option<(usize, RestartError)>,
    pub restarts: usize,
    pub now: Duration,
    pub sleeps: Vec<Duration>,
    /// `begin <name>` / `end <name> <outcome>`.
    pub progress: guest_kit::host::ProgressLog,
    /// The host's journal (kept across runs on the same fake).
    pub journal: BTreeMap<String, String>,
    /// Journal writes fail with this message.
    pub journal_broken: Option<String>,
    /// The answer to every confirmation (`Ok`: yes).
    pub confirm_answer: Result<(), String>,
    /// The actions asked about.
    pub asked: Vec<String>,
    /// The next activate is applied, but its answer is lost (a timeout).
    pub activate_answer_lost: bool,
    /// A hook that vetoes this step, with this reason.
    pub veto: Option<(String, String)>,
    /// `before <step> k=v ...` / `after <step> <outcome>`: the hook calls, in order.
    pub hook_calls: Vec<String>,
    proposals: usize,
}

impl Fake {
    /// `n` pods at version 1, nothing proposed.
    pub fn new(n: usize) -> Fake {
        let mut db = Db::new("hash-0".into());
        let names: Vec<String> = (0..n).map(|i| format!("sdkms-{i}")).collect();
        for name in &names {
            db.start_pod(name);
        }
        let mut fake = Fake {
            db,
            pods: names.into_iter().map(|n| (n, String::new())).collect(),
            mutations: Vec::new(),
            requests: Vec::new(),
            faults: Vec::new(),
            fetch_wrong: None,
            load_fails: None,
            restart_error: None,
            restarts: 0,
            now: Duration::ZERO,
            sleeps: Vec::new(),
            progress: Default::default(),
            journal: BTreeMap::new(),
            journal_broken: None,
            confirm_answer: Ok(()),
            asked: Vec::new(),
            activate_answer_lost: false,
            veto: None,
            hook_calls: Vec::new(),
            proposals: 0,
        };
        fake.assign_ips();
        fake
    }

    /// As an interrupted earlier run left it: `hash` proposed on `proposer` and
    /// fetched by `fetchers`, without any call recorded.
    pub fn proposed(&mut self, hash: &str, proposer: &str, fetchers: &[&str]) {
        self.db.propose(proposer, hash.into()).expect("a live pod");
        for pod in fetchers {
            self.db
                .fetch(pod, Some(proposer), "setup", None)
                .expect("a live holder");
        }
    }

    /// Every pod runs `version`, none broken.
    pub fn all_on(&self, version: i64) -> bool {
        self.pods.iter().all(|(name, _)| {
            self.db.status(name).is_ok_and(|s| s.version == version)
                && !self.db.pod(name).is_some_and(|p| p.broken)
        })
    }

    /// How many mutating calls begin with `prefix` (`activate`, `fetch sdkms-2`).
    pub fn mutated(&self, prefix: &str) -> usize {
        self.mutations
            .iter()
            .filter(|m| m.starts_with(prefix))
            .count()
    }

    /// How many requests went to a path ending in `suffix` (`/propose`).
    pub fn requested(&self, suffix: &str) -> usize {
        self.requests.iter().filter(|r| r.ends_with(suffix)).count()
    }

    pub fn fault(
        &mut self,
        pod: &str,
        method: Method,
        path: &'static str,
        error: HttpError,
        times: usize,
    ) {
        self.faults.push(Fault {
            pod: pod.into(),
            method,
            path,
            error,
            times,
        });
    }

    fn assign_ips(&mut self) {
        for (i, (_, ip)) in self.pods.iter_mut().enumerate() {
            *ip = format!("10.0.{}.{}", self.restarts, i + 1);
        }
    }

    fn name_at(&self, ip: &str) -> Option<String> {
        self.pods
            .iter()
            .find(|(_, at)| at == ip)
            .map(|(n, _)| n.clone())
    }

    fn request(
        &mut self,
        method: Method,
        url: &str,
        body: Option<&str>,
    ) -> Result<Response, HttpError> {
        let rest = url.strip_prefix("https://").expect("https url");
        let (authority, path) = rest.split_at(rest.find('/').expect("a path"));
        let ip = authority.rsplit_once(':').expect("a port").0;
        let Some(name) = self.name_at(ip) else {
            return Err(HttpError::Connect(format!("no pod at {ip}")));
        };
        self.requests.push(format!(
            "{} {name} {path}",
            if method == Method::Get { "GET" } else { "POST" }
        ));
        if let Some(fault) = self
            .faults
            .iter_mut()
            .find(|f| f.pod == name && f.method == method && f.path == path && f.times > 0)
        {
            fault.times -= 1;
            return Err(fault.error.clone());
        }
        if let Err(e @ DbError::Broken(_)) = self.db.check_usable(&name) {
            return Err(status(500, e.to_string()));
        }
        let answer = match (method, path) {
            (Method::Get, "/cluster/v1/key") => {
                let s = self
                    .db
                    .status(&name)
                    .map_err(|e| status(503, e.to_string()))?;
                let body = serde_json::json!({
                    "version": s.version,
                    "fetched_proposal_hash": s.fetched_hash,
                    "other": {"x": 1},
                });
                return Ok(Response {
                    status: 200,
                    body: body.to_string(),
                });
            }
            (Method::Post, "/cluster/v1/key/propose") => {
                self.proposals += 1;
                let hash = format!("hash-{}", self.proposals);
                self.mutations.push(format!("propose {name}"));
                self.db.propose(&name, hash)
            }
            (Method::Post, "/cluster/v1/key/fetch") => {
                let body: serde_json::Value =
                    serde_json::from_str(body.expect("a body")).expect("json");
                let target = body["target"].as_str().expect("target").to_string();
                let source = self.name_at(target.rsplit_once(':').expect("ip:port").0);
                let diverge = (self.fetch_wrong.as_deref() == Some(name.as_str()))
                    .then(|| "hash-wrong".to_string());
                self.mutations.push(format!("fetch {name} from {target}"));
                self.db.fetch(&name, source.as_deref(), &target, diverge)
            }
            (Method::Post, "/cluster/v1/key/activate") => {
                self.mutations.push(format!("activate {name}"));
                let activated = self.db.activate(&name).map(|_| ());
                if activated.is_ok() && std::mem::take(&mut self.activate_answer_lost) {
                    return Err(HttpError::Timeout);
                }
                activated
            }
            _ => return Err(status(404, String::new())),
        };
        answer
            .map(|()| Response {
                status: 204,
                body: String::new(),
            })
            .map_err(|e| status(409, e.to_string()))
    }
}

fn status(code: u16, body: String) -> HttpError {
    HttpError::Status(Response { status: code, body })
}

impl Read for Fake {
    fn list_pods(&mut self) -> Result<Vec<Pod>, PodsError> {
        Ok(self
            .pods
            .iter()
            .map(|(name, ip)| Pod {
                name: name.clone(),
                ip: Some(ip.clone()),
                ready: true,
                phase: "Running".into(),
            })
            .collect())
    }

    fn get(&mut self, url: &str) -> Result<Response, HttpError> {
        self.request(Method::Get, url, None)
    }

    fn get_all(&mut self, urls: &[String]) -> Vec<Result<Response, HttpError>> {
        urls.iter()
            .map(|u| self.request(Method::Get, u, None))
            .collect()
    }

    fn log(&mut self, _level: Level, _message: &str, _fields: &[(&str, &str)]) {}

    fn step_begin(&mut self, name: &str, _detail: &str) {
        self.progress.begin(name);
    }

    fn step_end(&mut self, name: &str, outcome: Outcome, _detail: &str) {
        self.progress.end(name, outcome);
    }
}

impl Act for Fake {
    fn post(&mut self, url: &str, body: Option<&str>) -> Result<Response, HttpError> {
        self.request(Method::Post, url, body)
    }

    fn batch(&mut self, requests: &[Request]) -> Vec<Result<Response, HttpError>> {
        requests
            .iter()
            .map(|r| self.request(r.method, &r.url, r.body.as_deref()))
            .collect()
    }

    fn rolling_restart(&mut self) -> Result<(), RestartError> {
        self.restarts += 1;
        self.mutations.push("restart".into());
        if let Some((n, e)) = &self.restart_error
            && *n == self.restarts
        {
            return Err(e.clone());
        }
        for (name, _) in &self.pods {
            if self.restarts == 1 && self.load_fails.as_deref() == Some(name.as_str()) {
                continue;
            }
            self.db.stop_pod(name);
            self.db.start_pod(name);
        }
        self.assign_ips();
        Ok(())
    }

    fn journal_entries(&mut self) -> Vec<(String, String)> {
        self.journal
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn journal_set(&mut self, key: &str, value: &str) -> Result<(), String> {
        if let Some(m) = &self.journal_broken {
            return Err(m.clone());
        }
        self.journal.insert(key.into(), value.into());
        Ok(())
    }

    fn journal_remove(&mut self, key: &str) -> Result<(), String> {
        if let Some(m) = &self.journal_broken {
            return Err(m.clone());
        }
        self.journal.remove(key);
        Ok(())
    }

    fn confirm(&mut self, action: &str, _details: &[(&str, &str)]) -> Result<(), String> {
        self.asked.push(action.into());
        self.confirm_answer.clone()
    }

    fn hook_before(&mut self, step: &str, observed: &[(&str, &str)]) -> Result<(), String> {
        let seen: Vec<String> = observed.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.hook_calls.push(
            format!("before {step} {}", seen.join(" "))
                .trim_end()
                .into(),
        );
        match &self.veto {
            Some((vetoed, reason)) if vetoed == step => Err(reason.clone()),
            _ => Ok(()),
        }
    }

    fn hook_after(&mut self, step: &str, outcome: Outcome, _observed: &[(&str, &str)]) {
        self.hook_calls.push(format!("after {step} {outcome:?}"));
    }
}

impl Clock for Fake {
    fn sleep(&mut self, duration: Duration) {
        self.now += duration;
        self.sleeps.push(duration);
    }

    fn now(&mut self) -> Duration {
        self.now
    }
}
