//! `cmk-host fleet`: one component, many clusters, one process.
//!
//! Every site file is validated and the component admitted by every site's trust
//! before any cluster is contacted; the component is compiled once, on one engine;
//! then each cluster runs through the same [`launch::run`] as `cmk-host run`, in a
//! store of its own, with its own grants, limits, Lease, journal and audit trail.
//! Nothing of one cluster's run is shared with another's but the engine and the
//! compiled component.
//!
//! Rooms: this file (validation, the schedule, the failure policy), [`report`] (the
//! record of each cluster, the summary table and the JSON), [`job`] (the Kubernetes
//! Indexed Job that runs shards of a fleet).

pub mod job;
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tracing::Instrument;

use crate::caps::confirm::Answerer;
use crate::launch::{self, Failure, Launch, Ready};
use crate::runtime::{Loaded, RunOptions, Runtime};
use crate::site::Site;
use crate::stop::Stop;
use crate::trust::verify::Verifier;
use crate::ui;

pub use report::{ClusterRecord, FleetReport, Outcome};

/// Clusters rotated at once unless `--max-parallel` says otherwise.
pub const DEFAULT_MAX_PARALLEL: usize = 8;

/// The point of no return a fleet can stop before: the gate then refuses every
/// irreversible request of the site (`[http] irreversible`) and every confirmation.
pub const STOP_BEFORE_ACTIVATE: &str = "activate";

/// `--shard I/N`: the sites whose position in the argument list is I modulo N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn keeps(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("{s:?} is not I/N with 0 <= I < N (e.g. 0/3)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What a fleet run is asked to do (from `cli`, or `demo --clusters`).
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub component: PathBuf,
    pub sites: Vec<PathBuf>,
    pub max_parallel: usize,
    /// Once this many clusters failed, none starts and the running ones stop.
    pub max_failures: Option<usize>,
    pub shard: Option<Shard>,
    pub plan: bool,
    pub yes: bool,
    /// `--stop-before activate`.
    pub stop_before_activate: bool,
    /// `--param`s, after each site's `[params]`.
    pub params: Vec<(String, String)>,
    /// `--events`: every cluster's events, each naming its cluster, then a
    /// `cluster-end` per cluster (its record) as it ends.
    pub events: crate::events::Events,
}

/// One cluster of the fleet, validated, admitted and linked: ready to run.
struct Member {
    /// The site's position in the argument list.
    position: usize,
    site: Site,
    state_dir: PathBuf,
    ready: Ready,
}

/// Validates every site, admits the component for every site, compiles it once and
/// links each site's hooks, before any cluster is contacted; then runs the shard's
/// clusters. `stop` (SIGINT) stops them all.
pub async fn execute(
    options: &FleetOptions,
    bytes: &[u8],
    launch: &Launch<'_>,
    terminal: &ui::Terminal,
    stop: Stop,
) -> Result<FleetReport, Failure> {
    let started = Instant::now();
    if options.sites.is_empty() {
        return Err(Failure::Usage("fleet: no site file given".into()));
    }
    let sites = validate(&options.sites)?;
    // Admission for every site before any compilation: exit 3 names the site that
    // does not trust the signer, and no cluster has been contacted.
    let mut admitted = Vec::new();
    let mut refusals = Vec::new();
    // Sites that trust the same signers verify the component once.
    let verifier = Verifier::new(bytes, launch.trust.detached);
    for (site, _) in &sites {
        match launch::admit(&verifier, &options.component, site, launch, &site.grants()) {
            Ok(a) => admitted.push(a),
            Err(f) => refusals.push(format!("site file {}: {f}", site.path.display())),
        }
    }
    if !refusals.is_empty() {
        return Err(Failure::Refused(refusals.join("\n")));
    }
    let runtime =
        Runtime::new().map_err(|e| Failure::Failed(format!("cannot start wasmtime: {e:#}")))?;
    let (loaded, cache_status) = launch::compile(&runtime, bytes, &options.component, launch)?;
    let mut members = Vec::new();
    for (position, ((site, state_dir), admitted)) in sites.into_iter().zip(admitted).enumerate() {
        if options.shard.is_some_and(|s| !s.keeps(position)) {
            continue;
        }
        let ready = launch::link(&runtime, &site, launch, admitted)?;
        members.push(Member {
            position,
            site,
            state_dir,
            ready,
        });
    }
    tracing::info!(
        clusters = members.len(),
        sha256 = %loaded.sha256,
        "fleet: every site file valid, the component admitted by every site"
    );

    let shared = Arc::new(Shared {
        runtime,
        loaded,
        cache_status,
        origin: options.component.clone(),
        stop,
        failed: AtomicUsize::new(0),
        max_failures: options.max_failures,
    });
    let width = members
        .iter()
        .map(|m| m.site.cluster.name.chars().count())
        .max()
        .unwrap_or(0);
    let permits = Arc::new(tokio::sync::Semaphore::new(options.max_parallel.max(1)));
    let mut slots: Vec<Slot> = Vec::new();
    for member in members {
        let line = terminal.cluster_line(&member.site.cluster.name, width);
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if let Some(why) = shared.stop.reason() {
            let record = ClusterRecord::not_started(&member.site, &why);
            line.finish(false, &record.line());
            slots.push(Slot::Done(Box::new(record)));
            continue;
        }
        let options = run_options(options, &member, line.clone(), &shared.stop);
        let shared = shared.clone();
        // At WARN, so that the terminal (WARN unless -v) shows which cluster each
        // line is about, before the line (`cluster{name=prod-eu}: ...`), apart from
        // any field a procedure logs.
        let span = tracing::warn_span!("cluster", name = %member.site.cluster.name);
        let task = tokio::spawn(
            async move {
                let events = options.events.clone();
                let record = shared.run_one(member, options).await;
                events.emit_as(
                    "cluster-end",
                    serde_json::to_value(&record).unwrap_or_default(),
                );
                line.finish(record.outcome.is_ok(), &record.line());
                if !record.outcome.is_ok() {
                    shared.count_failure();
                }
                // The permit goes back only now: with --max-parallel 1 the next
                // cluster sees this one's failure before it starts.
                drop(permit);
                record
            }
            .instrument(span),
        );
        slots.push(Slot::Running(task));
    }
    let mut clusters = Vec::new();
    for slot in slots {
        clusters.push(match slot {
            Slot::Done(record) => *record,
            Slot::Running(task) => task
                .await
                .map_err(|e| Failure::Failed(format!("a cluster's run ended abnormally: {e}")))?,
        });
    }
    Ok(FleetReport::new(
        options,
        &shared.loaded.sha256,
        clusters,
        started,
    ))
}

/// What the clusters' runs share: the engine, the compiled component, the fleet's
/// stop and its failure count. Nothing of a single run.
struct Shared {
    runtime: Runtime,
    loaded: Loaded,
    cache_status: crate::cache::CacheStatus,
    origin: PathBuf,
    stop: Stop,
    failed: AtomicUsize,
    max_failures: Option<usize>,
}

enum Slot {
    Done(Box<ClusterRecord>),
    Running(tokio::task::JoinHandle<ClusterRecord>),
}

impl Shared {
    async fn run_one(&self, member: Member, options: RunOptions) -> ClusterRecord {
        let started = Instant::now();
        let stop = options.stop.clone();
        let result = launch::run(
            &self.runtime,
            &self.loaded,
            self.cache_status,
            member.ready,
            &self.origin,
            &member.site,
            options,
        )
        .await;
        let held = stop.hold().filter(|h| h.reached);
        let mut record = ClusterRecord::from_run(&member.site, result, held.as_ref(), started);
        record.position = member.position;
        record
    }

    fn count_failure(&self) {
        let failed = self.failed.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(k) = self.max_failures
            && failed >= k
        {
            self.stop.request(format!(
                "stopped: {failed} cluster(s) failed (--max-failures {k})"
            ));
        }
    }
}

/// One cluster's run options: its own stop (a child of the fleet's, holding before
/// activate with `--stop-before activate`), its own progress line and state.
fn run_options(
    options: &FleetOptions,
    member: &Member,
    line: Arc<ui::ClusterLine>,
    fleet_stop: &Stop,
) -> RunOptions {
    let stop = fleet_stop.child();
    if options.stop_before_activate {
        stop.hold_before(STOP_BEFORE_ACTIVATE);
    }
    let events = options.events.for_cluster(&member.site.cluster.name);
    let progress = ui::Followed::wrap(line, &events);
    RunOptions {
        plan: options.plan,
        params: options.params.clone(),
        limits: member.site.limits.clone(),
        grants: member.site.grants(),
        progress,
        state_dir: member.state_dir.clone(),
        // Many clusters cannot share one terminal prompt: --yes, or no.
        answerer: if options.yes {
            Answerer::Yes
        } else {
            Answerer::Nobody
        },
        stop,
        hooks: Vec::new(),
        events,
        // Set by `launch::run` from the site's admission.
        signer: None,
        key_id: None,
    }
}

/// Loads every site file (all errors, each naming its file and key), and refuses
/// two sites with one cluster name, or that would share a journal or an audit trail.
fn validate(paths: &[PathBuf]) -> Result<Vec<(Site, PathBuf)>, Failure> {
    let mut errors = Vec::new();
    let mut sites = Vec::new();
    for path in paths {
        match Site::load(path).map_err(Failure::from).and_then(|site| {
            let dir = launch::state_dir(&site)?;
            Ok((site, dir))
        }) {
            Ok(s) => sites.push(s),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(Failure::InvalidSite(errors.join("\n")));
    }
    // Each cluster its own name (the summary and the JSON are keyed by it), its own
    // journal (with its restart record) and its own audit trail.
    let mut names: BTreeMap<&str, &Path> = BTreeMap::new();
    let mut journals: BTreeMap<PathBuf, &Site> = BTreeMap::new();
    let mut trails: BTreeMap<PathBuf, &Site> = BTreeMap::new();
    for (site, dir) in &sites {
        let name = &site.cluster.name;
        let journal = crate::paths::journal(dir, name);
        let trail = site.audit.trail(dir, name);
        if let Some(first) = names.insert(name, &site.path) {
            errors.push(format!(
                "site file {}: [cluster] name: {name:?} is also the cluster of {}; each cluster of a fleet \
                 needs its own name (its journal, audit trail and summary line are named by it)",
                site.path.display(),
                first.display()
            ));
        } else if let Some(first) = journals.insert(journal.clone(), site) {
            errors.push(format!(
                "site file {}: [cluster] name: {name:?} and {:?}, the cluster of {}, make one file \
                 name: both would keep their journal in {}; rename one, or give it a [state] dir of \
                 its own",
                site.path.display(),
                first.cluster.name,
                first.path.display(),
                journal.display()
            ));
        } else if let Some(first) = trails.insert(trail.clone(), site) {
            errors.push(format!(
                "site file {}: [audit] path: {} is also the audit trail of {} (cluster {:?}); each \
                 cluster of a fleet needs a trail of its own",
                site.path.display(),
                trail.display(),
                first.path.display(),
                first.cluster.name
            ));
        }
    }
    if !errors.is_empty() {
        return Err(Failure::InvalidSite(errors.join("\n")));
    }
    Ok(sites)
}

/// Prints the fleet's summary table or its JSON document; returns the exit code.
pub fn finish(report: &FleetReport, json: bool) -> u8 {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                return ui::error(
                    crate::exit::FAILED,
                    format!("cannot render the report: {e}"),
                );
            }
        }
    } else {
        print!("{}", report.summary());
    }
    report.exit_code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_keeps_the_positions_congruent_to_its_index() {
        let shard: Shard = "1/3".parse().unwrap();
        let kept: Vec<usize> = (0..8).filter(|&p| shard.keeps(p)).collect();
        assert_eq!(kept, [1, 4, 7]);
        assert_eq!(shard.to_string(), "1/3");
        for bad in ["3/3", "1", "a/3", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
