//! The command line: arguments become a validated site and run options; nothing
//! past this module sees clap or the environment.

use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

use crate::caps::confirm::Answerer;
use crate::caps::gate::Stop;
use crate::report::{RunReport, exit};
use crate::runtime::{Limits, RunError, RunOptions, Runtime};
use crate::site::Site;
use crate::ui;

/// Runs key-management procedures, such as a Cluster Master Key rotation of a
/// Fortanix DSM cluster, as sandboxed WebAssembly components.
///
/// A component receives only what the site file grants: the cluster's pods, HTTPS to
/// those pods, the site's rolling restart, and a log.
///
/// Exit codes: 0 done; 1 the procedure failed or was stopped (the summary says
/// whether the cluster is safe to resume); 2 usage or site file error; 3 refused.
#[derive(Parser, Debug)]
#[command(name = "cmk-host", version, max_term_width = 100)]
pub struct Cli {
    /// Log filter, e.g. `info`, `debug`, `cmk_host=debug,guest=info`.
    #[arg(
        long,
        global = true,
        default_value = "info,cmk_sim=warn",
        value_name = "FILTER"
    )]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a procedure component against the cluster a site file describes.
    ///
    /// Example: cmk-host run rotate.wasm --site /etc/cmk/prod-eu.toml
    Run(RunArgs),
    /// Rotate the master key of a simulated cluster with the bundled component.
    ///
    /// Starts a simulated DSM cluster on loopback addresses, rotates its key end to
    /// end, and prints what the simulator saw happen.
    Demo(DemoArgs),
    /// Start a simulated cluster and keep it up, for trying `run` by hand.
    ///
    /// Writes DIR/kubeconfig, DIR/ca.pem, DIR/restart.sh and DIR/site.toml, then
    /// waits until interrupted (Ctrl-C).
    Sim(SimArgs),
    /// Work with audit trails.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check an audit trail's hash chain; name the first record that was altered,
    /// removed or reordered. Exit 0 only for an intact chain.
    Verify {
        /// The trail (JSON Lines), e.g. ~/.local/state/cmk-host/audit/prod-eu.jsonl
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The procedure: a WebAssembly component (e.g. the bundled rotation, guest_rotate.wasm).
    #[arg(value_name = "COMPONENT.wasm")]
    pub component: PathBuf,
    /// The site file: cluster, TLS, restart mechanism (see README).
    #[arg(long, value_name = "SITE.toml")]
    pub site: PathBuf,
    /// A procedure parameter; overrides the site's [params]. Repeatable.
    ///
    /// The rotation takes `port`, `version_field`, `hash_field`, `read_timeout_secs`.
    #[arg(long = "param", value_name = "K=V", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Read the cluster and show the steps that would be taken; change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Print one machine-readable JSON report on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Answer yes to the confirmation before the point of no return (activation),
    /// for automation. Without it, and without a terminal, the run stops before it.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Pods in the simulated cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub pods: u16,
    /// Print the run's JSON report on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Pods in the simulated cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub pods: u16,
    /// Where to write kubeconfig, ca.pem, restart.sh and site.toml (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The port every pod listens on.
    #[arg(long, default_value_t = 4444)]
    pub port: u16,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not K=V")),
    }
}

/// The whole program; returns the exit code.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::DONE
            };
        }
    };
    let terminal = ui::Terminal::new();
    if let Err(e) = terminal.init_tracing(&cli.log) {
        eprintln!("error: --log {:?}: {e}", cli.log);
        return exit::USAGE;
    }
    // kube and reqwest are both given ring explicitly; this covers any other rustls user.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run(args, &terminal).await,
            Command::Demo(args) => {
                crate::demo::demo(args.pods as usize, args.json, &terminal).await
            }
            Command::Sim(args) => crate::demo::sim(args.pods as usize, args.port, &args.dir).await,
            Command::Audit(AuditCommand::Verify { file }) => audit_verify(&file),
        }
    })
}

async fn run(args: RunArgs, terminal: &ui::Terminal) -> u8 {
    let site = match Site::load(&args.site) {
        Ok(site) => site,
        Err(e) => return ui::error(exit::USAGE, e),
    };
    let bytes = match std::fs::read(&args.component) {
        Ok(b) => b,
        Err(e) => {
            return ui::error(
                exit::USAGE,
                format!("cannot read component {}: {e}", args.component.display()),
            );
        }
    };
    let Some(state_dir) = site
        .state
        .dir
        .clone()
        .or_else(|| crate::caps::journal::default_dir(|k| std::env::var(k).ok()))
    else {
        return ui::error(
            exit::USAGE,
            format!(
                "site file {}: [state] dir: not set, and neither XDG_STATE_HOME nor HOME is",
                args.site.display()
            ),
        );
    };
    let options = RunOptions {
        plan: args.plan,
        params: args.params,
        limits: Limits::for_site(&site),
        grants: site.grants(),
        progress: terminal.progress(),
        state_dir,
        answerer: Answerer::detect(args.yes),
        stop: on_interrupt(),
    };
    match execute(&bytes, &args.component, &site, options).await {
        Ok(report) => finish(&report, args.json),
        Err((code, message)) => ui::error(code, message),
    }
}

fn audit_verify(file: &Path) -> u8 {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return ui::error(exit::USAGE, format!("cannot read {}: {e}", file.display())),
    };
    match crate::audit::verify(&text) {
        crate::audit::Verdict::Intact(n, head) => {
            println!(
                "✓ {}: {n} records, chain intact; last hash {head}",
                file.display()
            );
            exit::DONE
        }
        crate::audit::Verdict::Broken(line, why) => {
            println!("✗ {}: line {line}: {why}", file.display());
            exit::FAILED
        }
    }
}

/// SIGINT (Ctrl-C) asks the run to stop at its next change; a second one exits at
/// once (the journal lets a rerun continue; the Lease then expires by itself).
fn on_interrupt() -> Stop {
    let stop = Stop::default();
    let requested = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!(
            "\ninterrupted: stopping before the next change to the cluster (Ctrl-C again to exit now)"
        );
        requested.request("interrupted (SIGINT)");
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted twice: exiting now; run again to continue");
            std::process::exit(i32::from(exit::FAILED));
        }
    });
    stop
}

/// Compiles and runs a component; `Err` carries the exit code and the message.
pub async fn execute(
    bytes: &[u8],
    origin: &Path,
    site: &Site,
    options: RunOptions,
) -> Result<RunReport, (u8, String)> {
    let runtime =
        Runtime::new().map_err(|e| (exit::FAILED, format!("cannot start wasmtime: {e:#}")))?;
    let loaded = runtime
        .load(bytes)
        .map_err(|e| (exit::USAGE, format!("{}: {e}", origin.display())))?;
    tracing::info!(
        component = %origin.display(),
        sha256 = %loaded.sha256,
        cluster = %site.cluster.name,
        "running"
    );
    runtime.run(&loaded, site, options).await.map_err(|e| {
        let code = match e {
            RunError::Refused(_) => exit::REFUSED,
            RunError::Invalid(_) | RunError::Setup(_) => exit::USAGE,
            // About the cluster, not the component.
            RunError::Busy(_) => {
                return (
                    exit::FAILED,
                    format!("cluster {:?}: {e}", site.cluster.name),
                );
            }
        };
        (code, format!("{}: {e}", origin.display()))
    })
}

/// Prints the report (summary or JSON) and returns its exit code.
pub fn finish(report: &RunReport, json: bool) -> u8 {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => return ui::error(exit::FAILED, format!("cannot render the report: {e}")),
        }
    } else {
        print!("{}", ui::summary(report));
    }
    report.exit_code
}
