//! `cmk-host demo` and `cmk-host sim`: the simulated cluster of `cmk-sim`, driven
//! through the same site file, runtime and checks as a real cluster.

use std::path::Path;

use cmk_sim::{Oracle, Sim, SimConfig};

use crate::exit;
use crate::launch::{self, Launch};
use crate::runtime::RunOptions;
use crate::site::Site;
use crate::trust::keys::{self, KeyId, SigningKey};
use crate::trust::verify;
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
    // The demo takes the production path: an ephemeral key signs the bundled
    // component, and the generated site file trusts that key.
    let (key_id, signed) = match sign_with_site_key(
        dir.path(),
        &files.site,
        "demo-signer",
        crate::ROTATE_COMPONENT,
    ) {
        Ok(signed) => signed,
        Err(e) => return ui::error(exit::FAILED, e),
    };
    if json {
        tracing::info!(%key_id, "signed the bundled component with an ephemeral key");
    } else {
        println!("  signed the bundled component with ephemeral key {key_id}");
    }
    let site = match Site::load(&files.site) {
        Ok(site) => site,
        Err(e) => return ui::error(exit::FAILED, e),
    };
    tracing::info!(pods, api = %sim.api_url(), "simulated cluster up");
    let options = RunOptions {
        plan: false,
        params: Vec::new(),
        limits: site.limits.clone(),
        grants: site.grants(),
        progress: terminal.progress(),
        state_dir: site
            .state
            .dir
            .clone()
            .unwrap_or_else(|| dir.path().join("state")),
        answerer: crate::caps::confirm::Answerer::Yes,
        stop: crate::stop::Stop::default(),
        hooks: Vec::new(),
        signer: None,
        key_id: None,
        events: crate::events::Events::default(),
    };
    let origin = Path::new("<bundled guest-rotate>");
    // No precompile cache: an ephemeral key makes the signed bytes new every run.
    let launch = Launch::default();
    let code = match launch::execute(&signed, origin, &site, &launch, options).await {
        // With --json, the report and what the simulator saw, in one document.
        Ok(report) if json => {
            let mut doc = serde_json::json!({ "report": report, "oracle": sim.oracle() });
            // The demo's directory is deleted when it returns: its files (the site
            // file, the audit trail) are not named, rather than named and gone.
            forget_paths_under(&mut doc, dir.path());
            println!("{doc:#}");
            report.exit_code
        }
        Ok(report) => {
            let code = launch::finish(&report, false);
            println!("{}", oracle_summary(&sim.oracle()));
            code
        }
        Err(failure) => failure.report(),
    };
    sim.shutdown().await;
    code
}

/// Removes from `value` every entry (of an object or an array) that is a string
/// naming a path under `dir`.
fn forget_paths_under(value: &mut serde_json::Value, dir: &Path) {
    use serde_json::Value;
    let under = |v: &Value| v.as_str().is_some_and(|s| Path::new(s).starts_with(dir));
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !under(v));
            map.values_mut().for_each(|v| forget_paths_under(v, dir));
        }
        Value::Array(items) => {
            items.retain(|v| !under(v));
            items.iter_mut().for_each(|v| forget_paths_under(v, dir));
        }
        _ => {}
    }
}

/// Signs `component` with the key `dir/NAME.key` (generated unless it is there)
/// and appends a `[[trust.signer]]` for it to the generated site file. Returns the
/// key id and the signed bytes.
fn sign_with_site_key(
    dir: &Path,
    site: &Path,
    name: &str,
    component: &[u8],
) -> Result<(KeyId, Vec<u8>), String> {
    let secret = dir.join(format!("{name}.key"));
    if !secret.exists() {
        keys::generate(&dir.join(name))?;
    }
    let key = SigningKey::load(&secret)?;
    let signed = verify::sign(component, &key)?;
    let entry = crate::trust::signer_entry(name, &format!("{name}.pub"));
    let mut text = std::fs::read_to_string(site)
        .map_err(|e| format!("cannot read {}: {e}", site.display()))?;
    text.push_str(&entry);
    std::fs::write(site, text).map_err(|e| format!("cannot write {}: {e}", site.display()))?;
    Ok((key.id(), signed))
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
pub async fn sim(config: SimConfig, dir: &Path) -> u8 {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return ui::error(exit::USAGE, format!("--dir {}: {e}", dir.display()));
    }
    let (pods, port) = (config.pods, config.port);
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
    let (key_id, signed) =
        match sign_with_site_key(dir, &files.site, "sim-signer", crate::ROTATE_COMPONENT) {
            Ok(signed) => signed,
            Err(e) => return ui::error(exit::FAILED, e),
        };
    if let Err(e) = std::fs::write(&component, signed) {
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
        "signed {} with key {key_id} ({}); the site file trusts it",
        component.display(),
        dir.join("sim-signer.key").display()
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
