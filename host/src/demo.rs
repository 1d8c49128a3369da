//! `cmk-host demo` and `cmk-host sim`: the simulated cluster of `cmk-sim`, driven
//! through the same site file, runtime and checks as a real cluster.

use std::path::Path;

use cmk_sim::{Oracle, Sim, SimConfig};

use crate::report::exit;
use crate::runtime::{Limits, RunOptions};
use crate::site::Site;
use crate::ui;

/// Rotates the key of a fresh simulated cluster of `pods` pods with the bundled
/// component, then shows what the simulator's oracle saw.
pub async fn demo(pods: usize, json: bool, terminal: &ui::Terminal) -> u8 {
    let dir = match tempfile::Builder::new().prefix("cmk-demo-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            return ui::error(
                exit::FAILED,
                format!("cannot create a temporary directory: {e}"),
            );
        }
    };
    let sim = match Sim::start(SimConfig::pods(pods)).await {
        Ok(sim) => sim,
        Err(e) => {
            return ui::error(
                exit::FAILED,
                format!("cannot start the simulated cluster: {e:#}"),
            );
        }
    };
    let files = match sim.write_files(dir.path()) {
        Ok(files) => files,
        Err(e) => {
            return ui::error(
                exit::FAILED,
                format!("cannot write the simulator's files: {e:#}"),
            );
        }
    };
    let site = match Site::load(&files.site) {
        Ok(site) => site,
        Err(e) => return ui::error(exit::FAILED, e),
    };
    tracing::info!(pods, api = %sim.api_url(), "simulated cluster up");
    let options = RunOptions {
        plan: false,
        params: Vec::new(),
        limits: Limits::for_site(&site),
        grants: site.grants(),
        progress: terminal.progress(),
        state_dir: site
            .state
            .dir
            .clone()
            .unwrap_or_else(|| dir.path().join("state")),
        answerer: crate::caps::confirm::Answerer::Yes,
        stop: crate::caps::gate::Stop::default(),
    };
    let origin = Path::new("<bundled guest-rotate>");
    let code = match crate::cli::execute(crate::ROTATE_COMPONENT, origin, &site, options).await {
        // With --json, the report and what the simulator saw, in one document.
        Ok(report) if json => {
            let doc = serde_json::json!({ "report": report, "oracle": sim.oracle() });
            println!("{doc:#}");
            report.exit_code
        }
        Ok(report) => {
            let code = crate::cli::finish(&report, false);
            println!("{}", oracle_summary(&sim.oracle()));
            code
        }
        Err((code, message)) => ui::error(code, message),
    };
    sim.shutdown().await;
    code
}

/// What happened to the simulated cluster, in one paragraph.
pub fn oracle_summary(oracle: &Oracle) -> String {
    let on_version = oracle
        .pods
        .iter()
        .filter(|p| p.running_version == oracle.version)
        .count();
    format!(
        "  simulator: {} propose, {} fetch, {} activate, {} rolling restarts; \
         {}/{} pods on version {}; {} broken",
        oracle.proposes().len(),
        oracle.fetches().len(),
        oracle.activates().len(),
        oracle.restarts.len(),
        on_version,
        oracle.pods.len(),
        oracle.version,
        oracle.broken_pods().len()
    )
}

/// Starts a simulated cluster, writes its files into `dir`, and keeps it up until
/// Ctrl-C.
pub async fn sim(pods: usize, port: u16, dir: &Path) -> u8 {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return ui::error(exit::USAGE, format!("--dir {}: {e}", dir.display()));
    }
    let config = SimConfig {
        port,
        ..SimConfig::pods(pods)
    };
    let sim = match Sim::start(config).await {
        Ok(sim) => sim,
        Err(e) => {
            return ui::error(
                exit::FAILED,
                format!("cannot start the simulated cluster: {e:#}"),
            );
        }
    };
    let files = match sim.write_files(dir) {
        Ok(files) => files,
        Err(e) => {
            return ui::error(
                exit::FAILED,
                format!("cannot write into {}: {e:#}", dir.display()),
            );
        }
    };
    let component = dir.join("rotate.wasm");
    if let Err(e) = std::fs::write(&component, crate::ROTATE_COMPONENT) {
        return ui::error(
            exit::FAILED,
            format!("cannot write {}: {e}", component.display()),
        );
    }
    println!(
        "simulated cluster with {pods} pods is up; Kubernetes API at {}",
        sim.api_url()
    );
    for (name, ip) in sim.pod_ips() {
        println!("  {name}  https://{ip}:{port}");
    }
    println!(
        "\nwrote {}, {}, {}, {}",
        files.kubeconfig.display(),
        files.ca.display(),
        files.restart_script.display(),
        files.site.display()
    );
    println!(
        "\ntry:  cmk-host run {} --site {}",
        component.display(),
        files.site.display()
    );
    println!(
        "oracle: curl --cacert {} -H 'Authorization: Bearer {}' {}/sim/v1/oracle",
        files.ca.display(),
        sim.token(),
        sim.api_url()
    );
    println!("\nCtrl-C stops the cluster.");
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    exit::DONE
}
