//! An in-memory cluster behind [`Read`] for the unit tests: pods as `pods.list`
//! shows them, their key status from the simulator's DSM rules ([`cmk_dsm::Db`]),
//! injected read errors, and a clock that only moves when the procedure sleeps.

use std::collections::HashMap;
use std::time::Duration;

use cmk_dsm::Db;
use guest_kit::host::{Clock, Read};
use guest_kit::types::*;

pub struct Fake {
    pub pods: Vec<Pod>,
    /// The cluster's key state, by pod name.
    pub db: Db,
    /// Answer with `kv`/`ph` instead of the documented field names.
    pub renamed: bool,
    /// Per pod index: errors returned by its next reads, in order.
    pub errors: HashMap<usize, Vec<HttpError>>,
    pub list_error: Option<PodsError>,
    pub batches: usize,
    pub batch_sizes: Vec<usize>,
    pub urls: Vec<String>,
    pub now: Duration,
    pub sleeps: Vec<Duration>,
    pub progress: guest_kit::host::ProgressLog,
}

impl Fake {
    /// `n` Ready pods at version 1, nothing proposed.
    pub fn new(n: usize) -> Fake {
        let pods: Vec<Pod> = (0..n)
            .map(|i| Pod {
                name: format!("sdkms-{i}"),
                ip: Some(format!("10.0.0.{}", i + 1)),
                ready: true,
                phase: "Running".into(),
            })
            .collect();
        let mut db = Db::new("k1".into());
        for pod in &pods {
            db.start_pod(&pod.name);
        }
        Fake {
            pods,
            db,
            renamed: false,
            errors: HashMap::new(),
            list_error: None,
            batches: 0,
            batch_sizes: Vec::new(),
            urls: Vec::new(),
            now: Duration::ZERO,
            sleeps: Vec::new(),
            progress: Default::default(),
        }
    }

    fn read(&mut self, url: &str) -> Result<Response, HttpError> {
        self.urls.push(url.to_string());
        let i = self
            .pods
            .iter()
            .position(|p| {
                p.ip.as_ref()
                    .is_some_and(|ip| url.contains(&format!("//{ip}:")))
            })
            .expect("a url of a listed pod");
        if let Some(errors) = self.errors.get_mut(&i)
            && !errors.is_empty()
        {
            return Err(errors.remove(0));
        }
        let status = self.db.status(&self.pods[i].name).expect("a running pod");
        let (vf, hf) = if self.renamed {
            ("kv", "ph")
        } else {
            ("version", "fetched_proposal_hash")
        };
        Ok(Response {
            status: 200,
            body: serde_json::json!({ vf: status.version, hf: status.fetched_hash, "node": "x" })
                .to_string(),
        })
    }
}

impl Read for Fake {
    fn list_pods(&mut self) -> Result<Vec<Pod>, PodsError> {
        match &self.list_error {
            Some(e) => Err(e.clone()),
            None => Ok(self.pods.clone()),
        }
    }

    fn get(&mut self, url: &str) -> Result<Response, HttpError> {
        self.read(url)
    }

    fn get_all(&mut self, urls: &[String]) -> Vec<Result<Response, HttpError>> {
        self.batches += 1;
        self.batch_sizes.push(urls.len());
        urls.iter().map(|u| self.read(u)).collect()
    }

    fn log(&mut self, _: Level, _: &str, _: &[(&str, &str)]) {}

    fn step_begin(&mut self, name: &str, _: &str) {
        self.progress.begin(name);
    }

    fn step_end(&mut self, name: &str, outcome: Outcome, _: &str) {
        self.progress.end(name, outcome);
    }
}

impl Clock for Fake {
    fn sleep(&mut self, duration: Duration) {
        self.sleeps.push(duration);
        self.now += duration;
    }

    fn now(&mut self) -> Duration {
        self.now
    }
}
