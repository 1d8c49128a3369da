//! An in-memory cluster behind [`Host`], with the documented DSM semantics and fault
//! injection, so the procedure's steps are tested natively. It records every
//! mutating call: tests assert on what happened to the cluster.

use std::time::Duration;

use crate::host::*;

pub struct FakePod {
    pub name: String,
    pub ip: String,
    pub version: i64,
    pub hash: Option<String>,
    /// The proposal loaded from the database at the last restart.
    pub loaded: Option<String>,
    /// Restarted after activation without the activated proposal: answers 500.
    pub broken: bool,
}

/// An injected http error for `times` requests `METHOD path` to `pod`.
pub struct Fault {
    pub pod: String,
    pub method: Method,
    pub path: &'static str,
    pub error: HttpError,
    pub times: usize,
}

pub struct Fake {
    pub pods: Vec<FakePod>,
    pub db_version: i64,
    pub proposal: Option<String>,
    pub activated: Option<String>,
    /// `propose sdkms-0`, `fetch sdkms-1 from 10.0.0.1:4444`, `activate sdkms-0`, `restart`.
    pub mutations: Vec<String>,
    /// Every request: `GET sdkms-0 /cluster/v1/key`.
    pub requests: Vec<String>,
    pub faults: Vec<Fault>,
    /// A pod whose fetch stores a different hash.
    pub fetch_wrong: Option<String>,
    /// A pod that silently fails to load the proposal on restart.
    pub load_fails: Option<String>,
    /// The n-th restart (1-based) fails with this error.
    pub restart_error: Option<(usize, RestartError)>,
    pub restarts: usize,
    pub now: Duration,
    pub sleeps: Vec<Duration>,
    /// `begin <name>` / `end <name> <outcome>`.
    pub progress: Vec<String>,
    /// The host's journal (kept across runs on the same fake).
    pub journal: std::collections::BTreeMap<String, String>,
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
        let mut fake = Fake {
            pods: (0..n)
                .map(|i| FakePod {
                    name: format!("sdkms-{i}"),
                    ip: String::new(),
                    version: 1,
                    hash: None,
                    loaded: None,
                    broken: false,
                })
                .collect(),
            db_version: 1,
            proposal: None,
            activated: None,
            mutations: Vec::new(),
            requests: Vec::new(),
            faults: Vec::new(),
            fetch_wrong: None,
            load_fails: None,
            restart_error: None,
            restarts: 0,
            now: Duration::ZERO,
            sleeps: Vec::new(),
            progress: Vec::new(),
            journal: Default::default(),
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
        for (i, pod) in self.pods.iter_mut().enumerate() {
            pod.ip = format!("10.0.{}.{}", self.restarts, i + 1);
        }
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
        let Some(index) = self.pods.iter().position(|p| p.ip == ip) else {
            return Err(HttpError::Connect(format!("no pod at {ip}")));
        };
        let name = self.pods[index].name.clone();
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
        let ok = |status: u16, body: String| Ok(Response { status, body });
        if self.pods[index].broken {
            return Err(HttpError::Status(Response {
                status: 500,
                body: "cannot unwrap the database".into(),
            }));
        }
        match (method, path) {
            (Method::Get, "/cluster/v1/key") => {
                let pod = &self.pods[index];
                ok(
                    200,
                    serde_json::json!({
                        "version": pod.version,
                        "fetched_proposal_hash": pod.hash,
                        "other": {"x": 1},
                    })
                    .to_string(),
                )
            }
            (Method::Post, "/cluster/v1/key/propose") => {
                self.proposals += 1;
                let hash = format!("hash-{}", self.proposals);
                self.proposal = Some(hash.clone());
                self.pods[index].hash = Some(hash);
                self.mutations.push(format!("propose {name}"));
                ok(204, String::new())
            }
            (Method::Post, "/cluster/v1/key/fetch") => {
                let body: serde_json::Value =
                    serde_json::from_str(body.expect("a body")).expect("json");
                let target = body["target"].as_str().expect("target").to_string();
                let source_ip = target.rsplit_once(':').expect("ip:port").0;
                let source = self
                    .pods
                    .iter()
                    .find(|p| p.ip == source_ip)
                    .expect("a source pod");
                let mut hash = source.hash.clone();
                if self.fetch_wrong.as_deref() == Some(name.as_str()) {
                    hash = Some("hash-wrong".into());
                }
                self.pods[index].hash = hash;
                self.mutations.push(format!("fetch {name} from {target}"));
                ok(204, String::new())
            }
            (Method::Post, "/cluster/v1/key/activate") => {
                self.db_version += 1;
                self.activated = self.proposal.take();
                self.mutations.push(format!("activate {name}"));
                if std::mem::take(&mut self.activate_answer_lost) {
                    return Err(HttpError::Timeout);
                }
                ok(204, String::new())
            }
            _ => Err(HttpError::Status(Response {
                status: 404,
                body: String::new(),
            })),
        }
    }
}

impl Host for Fake {
    fn list_pods(&mut self) -> Result<Vec<Pod>, PodsError> {
        Ok(self
            .pods
            .iter()
            .map(|p| Pod {
                name: p.name.clone(),
                ip: Some(p.ip.clone()),
                ready: true,
                phase: "Running".into(),
            })
            .collect())
    }

    fn get(&mut self, url: &str) -> Result<Response, HttpError> {
        self.request(Method::Get, url, None)
    }

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
        let activated = self.activated.take();
        for pod in &mut self.pods {
            match &activated {
                Some(key) if pod.loaded.as_ref() == Some(key) => {
                    pod.version = self.db_version;
                    pod.hash = None;
                    pod.loaded = None;
                }
                Some(_) => pod.broken = true,
                None => {
                    let fails = self.load_fails.as_deref() == Some(pod.name.as_str());
                    pod.loaded = if !fails && pod.hash.is_some() && pod.hash == self.proposal {
                        pod.hash.clone()
                    } else {
                        None
                    };
                }
            }
        }
        self.assign_ips();
        Ok(())
    }

    fn log(&mut self, _level: Level, _message: &str, _fields: &[(&str, &str)]) {}

    fn step_begin(&mut self, name: &str, _detail: &str) {
        self.progress.push(format!("begin {name}"));
    }

    fn step_end(&mut self, name: &str, outcome: Outcome, _detail: &str) {
        self.progress.push(format!("end {name} {outcome:?}"));
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
