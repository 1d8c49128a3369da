//! `cmk-host demo --clusters K` and `cmk-host sim --clusters K`: K independent
//! simulated clusters (each its own CA, API server and `127.x.y.z` pod addresses)
//! and one site file each, rotated by one `fleet` run.

use std::path::{Path, PathBuf};

use cmk_sim::{Sim, SimConfig};

use crate::exit;
use crate::fleet::{self, FleetOptions};
use crate::launch::Launch;
use crate::trust::keys::{self, KeyId, SigningKey};
use crate::trust::verify;
use crate::ui;

/// K running simulators and their files.
pub struct SimFleet {
    pub sims: Vec<Sim>,
    pub sites: Vec<PathBuf>,
    /// The bundled rotation, signed with the key every site trusts.
    pub component: PathBuf,
    pub key_id: KeyId,
}

/// Starts `clusters` simulators of `pods` pods, writes `dir/cluster-N/` for each (the
/// cluster named `sim-N`), signs the bundled component into `dir/rotate.wasm` with
/// `dir/NAME.key` and trusts that key in every site file.
pub async fn start(
    clusters: usize,
    config: &SimConfig,
    dir: &Path,
    signer: &str,
) -> Result<SimFleet, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("--dir {}: {e}", dir.display()))?;
    let dir = std::path::absolute(dir).map_err(|e| format!("--dir {}: {e}", dir.display()))?;
    let secret = dir.join(format!("{signer}.key"));
    if !secret.exists() {
        keys::generate(&dir.join(signer))?;
    }
    let key = SigningKey::load(&secret)?;
    let signed = verify::sign(crate::ROTATE_COMPONENT, &key)?;
    let component = dir.join("rotate.wasm");
    std::fs::write(&component, signed)
        .map_err(|e| format!("cannot write {}: {e}", component.display()))?;
    let public = dir.join(format!("{signer}.pub"));
    let mut sims = Vec::new();
    let mut sites = Vec::new();
    for n in 0..clusters {
        let sim = Sim::start(config.clone())
            .await
            .map_err(|e| format!("cannot start simulated cluster {n}: {e:#}"))?;
        let files = sim
            .write_files(&dir.join(format!("cluster-{n}")))
            .map_err(|e| format!("cannot write the files of cluster {n}: {e:#}"))?;
        let text = std::fs::read_to_string(&files.site)
            .map_err(|e| format!("cannot read {}: {e}", files.site.display()))?;
        // The simulator names every cluster "sim"; a fleet needs one name each.
        let text = text.replacen("name = \"sim\"", &format!("name = \"sim-{n}\""), 1)
            + &crate::trust::signer_entry(signer, &public.display().to_string());
        std::fs::write(&files.site, text)
            .map_err(|e| format!("cannot write {}: {e}", files.site.display()))?;
        sites.push(files.site);
        sims.push(sim);
    }
    Ok(SimFleet {
        sims,
        sites,
        component,
        key_id: key.id(),
    })
}

/// Rotates `clusters` fresh simulated clusters with one fleet run; prints the summary
/// and what each simulator saw (`--json`: the fleet's document and every oracle).
pub async fn demo(clusters: usize, pods: usize, json: bool, terminal: &ui::Terminal) -> u8 {
    let dir = match tempfile::Builder::new().prefix("cmk-fleet-demo-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            return ui::error(
                exit::FAILED,
                format!("cannot create a temporary directory: {e}"),
            );
        }
    };
    let sims = match start(clusters, &SimConfig::pods(pods), dir.path(), "demo-signer").await {
        Ok(s) => s,
        Err(e) => return ui::error(exit::FAILED, e),
    };
    if !json {
        println!(
            "  {clusters} simulated clusters of {pods} pods; signed the bundled component with ephemeral key {}",
            sims.key_id
        );
    }
    let options = FleetOptions {
        component: sims.component.clone(),
        sites: sims.sites.clone(),
        max_parallel: fleet::DEFAULT_MAX_PARALLEL,
        max_failures: None,
        shard: None,
        plan: false,
        yes: true,
        stop_before_activate: false,
        params: Vec::new(),
        events: crate::events::Events::default(),
    };
    let bytes = match std::fs::read(&sims.component) {
        Ok(b) => b,
        Err(e) => return ui::error(exit::FAILED, format!("cannot read the component: {e}")),
    };
    let code = match fleet::execute(
        &options,
        &bytes,
        &Launch::default(),
        terminal,
        crate::stop::Stop::default(),
    )
    .await
    {
        Ok(report) if json => {
            let oracles: Vec<_> = sims.sims.iter().map(|s| s.oracle()).collect();
            let doc = serde_json::json!({ "fleet": report, "oracles": oracles });
            println!("{doc:#}");
            report.exit_code
        }
        Ok(report) => {
            let code = fleet::finish(&report, false);
            for (record, sim) in report.clusters.iter().zip(&sims.sims) {
                println!(
                    "  {}: {}",
                    record.cluster,
                    crate::demo::oracle_summary(&sim.oracle())
                        .trim_start()
                        .trim_start_matches("simulator: ")
                );
            }
            code
        }
        Err(failure) => failure.report(),
    };
    for sim in sims.sims {
        sim.shutdown().await;
    }
    code
}

/// Starts `clusters` simulated clusters, writes their files into `dir`, and keeps
/// them up until Ctrl-C.
pub async fn sim(clusters: usize, config: SimConfig, dir: &Path) -> u8 {
    let pods = config.pods;
    let sims = match start(clusters, &config, dir, "sim-signer").await {
        Ok(s) => s,
        Err(e) => return ui::error(exit::FAILED, e),
    };
    println!("{clusters} simulated clusters of {pods} pods are up:");
    for (site, sim) in sims.sites.iter().zip(&sims.sims) {
        println!(
            "  {}  (Kubernetes API at {})",
            site.display(),
            sim.api_url()
        );
    }
    println!(
        "signed {} with key {}; every site file trusts it",
        sims.component.display(),
        sims.key_id
    );
    let sites: Vec<String> = sims.sites.iter().map(|s| s.display().to_string()).collect();
    println!(
        "\ntry:  cmk-host fleet --component {} --yes {}",
        sims.component.display(),
        sites.join(" ")
    );
    println!("\nCtrl-C stops the clusters.");
    let _ = tokio::signal::ctrl_c().await;
    for sim in sims.sims {
        sim.shutdown().await;
    }
    exit::DONE
}
