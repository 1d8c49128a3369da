//! The command line: arguments become a validated site and run options; nothing
//! past this module sees clap or the environment.

use clap::{Args, Parser, Subcommand};
use sha2::Digest;
use std::path::{Path, PathBuf};

use crate::cache::{self, Cache};
use crate::caps::confirm::Answerer;
use crate::caps::gate::Stop;
use crate::report::{RunReport, exit};
use crate::runtime::{Limits, PreparedHook, RunError, RunOptions, Runtime};
use crate::site::Site;
use crate::trust::{self, Refusal};
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

    /// Colour and other terminal escapes on stderr: `auto` (on a terminal, unless
    /// NO_COLOR is set), `always`, or `never` (plain lines, no spinners).
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto, value_name = "WHEN")]
    pub color: Color,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    Auto,
    Always,
    Never,
}

impl Color {
    /// What `--color` means here: `auto` gives way to a non-empty `NO_COLOR`
    /// (https://no-color.org); an explicit `--color always` does not.
    fn escapes(self, no_color: Option<std::ffi::OsString>) -> ui::Escapes {
        match self {
            Color::Always => ui::Escapes::Always,
            Color::Never => ui::Escapes::Never,
            Color::Auto if no_color.is_some_and(|v| !v.is_empty()) => ui::Escapes::Never,
            Color::Auto => ui::Escapes::Auto,
        }
    }

    /// `--color` as written on the command line, before clap has parsed it (so that
    /// clap's own help and errors follow it too).
    fn from_args(args: &[std::ffi::OsString]) -> Option<Color> {
        let mut value = None;
        let mut args = args.iter().skip(1).map(|a| a.to_str().unwrap_or(""));
        while let Some(arg) = args.next() {
            if arg == "--" {
                break;
            }
            if let Some(v) = arg.strip_prefix("--color=") {
                value = Some(v.to_string());
            } else if arg == "--color" {
                value = args.next().map(str::to_string);
            }
        }
        <Color as clap::ValueEnum>::from_str(&value?, true).ok()
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a signed procedure component against the cluster a site file describes.
    ///
    /// The component must be signed by a `[[trust.signer]]` of the site; it receives
    /// the site's grants narrowed to its signer's. The rotation asks before activating
    /// (on a terminal), resumes an interrupted rotation, and holds the cluster's Lease
    /// while it runs.
    #[command(after_long_help = "Examples:
  cmk-host run rotate.wasm --site /etc/cmk/prod-eu.toml --plan        # read, show the steps
  cmk-host run rotate.wasm --site /etc/cmk/prod-eu.toml               # asks before activate
  cmk-host run rotate.wasm --site /etc/cmk/prod-eu.toml --yes --json  # automation")]
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
    /// Generate a signing key pair: NAME.key (secret, mode 0600) and NAME.pub.
    ///
    /// Prints the key id: signatures carry it, and refusals name it.
    Keygen(KeygenArgs),
    /// Sign a component (Ed25519, embedded in a custom section; wasmsign2 format).
    ///
    /// Example: cmk-host sign --key ops.key rotate.wasm -o rotate.signed.wasm
    Sign(SignArgs),
    /// Verify a component's signature with one key or with a site's trusted signers.
    ///
    /// Exit 0 and the signer's name, or exit 3 and why.
    Verify(VerifyArgs),
    /// Show a component's imports, exports, size and digest, and what a site would grant it.
    ///
    /// Exit 3 when a run would refuse the component (an import outside the world).
    Inspect(InspectArgs),
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
pub struct InspectArgs {
    /// The component to describe.
    #[arg(value_name = "COMPONENT.wasm")]
    pub component: PathBuf,
    /// The site file whose grants and limits to show.
    #[arg(long, value_name = "SITE.toml")]
    pub site: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Writes NAME.key and NAME.pub; refuses to overwrite either.
    #[arg(long, value_name = "NAME")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// The secret key (from `keygen`); must not be readable by others.
    #[arg(long, value_name = "NAME.key")]
    pub key: PathBuf,
    #[arg(value_name = "IN.wasm")]
    pub component: PathBuf,
    /// Where to write the signed component (or, with --detached, the signature).
    #[arg(short = 'o', long = "output", value_name = "OUT.wasm")]
    pub output: PathBuf,
    /// Write a detached signature to OUT instead of a signed copy of the component.
    #[arg(long)]
    pub detached: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("trusted").required(true).args(["key", "site"])))]
pub struct VerifyArgs {
    /// Verify with this public key.
    #[arg(long, value_name = "NAME.pub")]
    pub key: Option<PathBuf>,
    /// Verify with the site file's [[trust.signer]] keys, and show the grants.
    #[arg(long, value_name = "SITE.toml")]
    pub site: Option<PathBuf>,
    #[arg(value_name = "IN.wasm")]
    pub component: PathBuf,
    /// A detached signature (from `sign --detached`), for a component without one.
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The procedure: a WebAssembly component (e.g. the bundled rotation, guest_rotate.wasm).
    #[arg(value_name = "COMPONENT.wasm")]
    pub component: PathBuf,
    /// The site file: cluster, TLS, restart, trusted signers, limits (see README).
    #[arg(long, value_name = "SITE.toml")]
    pub site: PathBuf,
    /// A procedure parameter; overrides the site's [params]. Repeatable.
    ///
    /// The rotation and guest-status take `port`, `version_field`, `hash_field`,
    /// `read_timeout_secs`; the rotation also `expect_pods` and `new_rotation=true`
    /// (rotate again after a completed rotation).
    #[arg(long = "param", value_name = "K=V", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Read the cluster and show the steps that would be taken; change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Print one machine-readable JSON report on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Run a component that is not signed; only when the site file has
    /// `[trust] allow_unsigned = true`. Warned about on every run.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// A detached signature (from `sign --detached`), for a component without one.
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
    /// Compile the component every time; neither read nor write the precompile cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// The precompile cache [default: $XDG_CACHE_HOME/cmk-host or ~/.cache/cmk-host].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
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
    /// The port every pod listens on (the generated site file's `[cluster] port`).
    #[arg(long, default_value_t = 4444, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// How long each pod takes to be replaced in a rolling restart (stopped,
    /// starting, Ready), e.g. `5` or `0.5`: slow enough to watch a run, or to press
    /// Ctrl-C in the middle of a restart.
    #[arg(long, value_name = "SECS", default_value = "0.06", value_parser = parse_secs)]
    pub restart_delay: std::time::Duration,
    /// Pod certificates name only this DNS name, not each pod's IP (as an
    /// appliance's name the cluster); the generated site file sets `[tls] server_name`.
    #[arg(long, value_name = "NAME")]
    pub pod_cert_name: Option<String>,
}

/// Seconds, fractions allowed, at most an hour.
fn parse_secs(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=3600.0).contains(&secs) {
        return Err(format!("{s}: must be between 0 and 3600 seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not K=V")),
    }
}

/// The whole program; returns the exit code.
pub fn main() -> u8 {
    use clap::{CommandFactory, FromArgMatches};
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let help_color = match Color::from_args(&args).map(|c| c.escapes(std::env::var_os("NO_COLOR")))
    {
        Some(ui::Escapes::Always) => clap::ColorChoice::Always,
        Some(ui::Escapes::Never) => clap::ColorChoice::Never,
        _ => clap::ColorChoice::Auto,
    };
    let parsed = Cli::command()
        .color(help_color)
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
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
    let terminal = ui::Terminal::with_escapes(cli.color.escapes(std::env::var_os("NO_COLOR")));
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
            Command::Sim(args) => {
                let config = cmk_sim::SimConfig {
                    port: args.port,
                    // A pod replacement is two pauses: stopped, then starting.
                    restart_step_delay: args.restart_delay / 2,
                    pod_certs: args
                        .pod_cert_name
                        .map_or(cmk_sim::PodCerts::IpAndName, cmk_sim::PodCerts::DnsOnly),
                    ..cmk_sim::SimConfig::pods(args.pods as usize)
                };
                crate::demo::sim(config, &args.dir).await
            }
            Command::Keygen(args) => crate::signing::keygen(&args),
            Command::Sign(args) => crate::signing::sign(&args),
            Command::Verify(args) => crate::signing::verify(&args),
            Command::Inspect(args) => inspect(args),
            Command::Audit(AuditCommand::Verify { file }) => audit_verify(&file),
        }
    })
}

async fn run(args: RunArgs, terminal: &ui::Terminal) -> u8 {
    let site = match Site::load(&args.site) {
        Ok(site) => site,
        Err(e) => return ui::error(exit::USAGE, e),
    };
    let bytes = match read_component(&args.component) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let detached = match &args.signature {
        Some(path) => match std::fs::read(path) {
            Ok(sig) => Some(sig),
            Err(e) => {
                return ui::error(
                    exit::USAGE,
                    format!("cannot read signature {}: {e}", path.display()),
                );
            }
        },
        None => None,
    };
    let launch = Launch {
        trust: trust::Request {
            allow_unsigned: args.allow_unsigned,
            detached: detached.as_deref(),
        },
        cache: open_cache(args.no_cache, args.cache_dir),
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
        hooks: Vec::new(),
    };
    match execute(&bytes, &args.component, &site, &launch, options).await {
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

/// The component's bytes, exactly as read (they are what is verified and compiled);
/// `Err` is the exit code, the message already printed.
fn read_component(path: &Path) -> Result<Vec<u8>, u8> {
    std::fs::read(path).map_err(|e| {
        ui::error(
            exit::USAGE,
            format!("cannot read component {}: {e}", path.display()),
        )
    })
}

fn inspect(args: InspectArgs) -> u8 {
    let site = match args.site.as_deref().map(Site::load).transpose() {
        Ok(site) => site,
        Err(e) => return ui::error(exit::USAGE, e),
    };
    let bytes = match read_component(&args.component) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let inspection = match crate::inspect::inspect(&bytes, &args.component, site.as_ref()) {
        Ok(i) => i,
        Err(e) => {
            return ui::error(exit::USAGE, format!("{}: {e}", args.component.display()));
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&inspection) {
            Ok(text) => println!("{text}"),
            Err(e) => return ui::error(exit::FAILED, format!("cannot render: {e}")),
        }
    } else {
        print!("{inspection}");
    }
    if inspection.refused.is_some() {
        exit::REFUSED
    } else {
        exit::DONE
    }
}

/// How a component is admitted and loaded: what `run` was told about signatures
/// and the precompile cache.
#[derive(Debug, Default)]
pub struct Launch<'a> {
    pub trust: trust::Request<'a>,
    /// `None`: compile every time (`--no-cache`, or no usable cache directory).
    pub cache: Option<Cache>,
}

/// The precompile cache `run` uses; a directory that cannot be used is warned
/// about and the run goes on without a cache.
fn open_cache(no_cache: bool, dir: Option<PathBuf>) -> Option<Cache> {
    if no_cache {
        return None;
    }
    let dir = dir.or_else(default_cache_dir)?;
    match Cache::open(&dir) {
        Ok(cache) => Some(cache),
        Err(e) => {
            tracing::warn!("cache: off: {e}");
            None
        }
    }
}

/// `$XDG_CACHE_HOME/cmk-host`, else `~/.cache/cmk-host`.
fn default_cache_dir() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_CACHE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".cache"))
        })
        .map(|d| d.join("cmk-host"))
}

/// Verifies, compiles (or loads from the cache) and runs a component; `Err`
/// carries the exit code and the message. `options.grants` are the site's: they
/// are narrowed to the grants of the signer that verified the component.
pub async fn execute(
    bytes: &[u8],
    origin: &Path,
    site: &Site,
    launch: &Launch<'_>,
    mut options: RunOptions,
) -> Result<RunReport, (u8, String)> {
    if launch.trust.allow_unsigned {
        if site.trust.allow_unsigned {
            tracing::warn!(
                site = %site.path.display(),
                "--allow-unsigned: a component without a signature will run, with the site's grants; nobody vouches for its code"
            );
        } else {
            tracing::warn!(
                site = %site.path.display(),
                "--allow-unsigned has no effect: the site file does not set [trust] allow_unsigned = true"
            );
        }
    }
    // Verify before compile: wasmtime only ever sees bytes a trusted key signed.
    let sha256 = crate::runtime::hex(&sha2::Sha256::digest(bytes));
    let admitted =
        trust::admit(bytes, &site.trust, &options.grants, &launch.trust).map_err(|refusal| {
            let hint = match refusal {
                Refusal::NotSigned => trust::unsigned_hint(&site.trust, &launch.trust),
                _ => "",
            };
            let code = if refusal.is_refusal() {
                exit::REFUSED
            } else {
                exit::USAGE
            };
            tracing::debug!(component = %origin.display(), %sha256, "refused: {refusal}");
            let what = if refusal.is_refusal() {
                "refused: "
            } else {
                ""
            };
            (
                code,
                format!(
                    "{}: {what}{refusal}{hint} (sha256 {sha256})",
                    origin.display()
                ),
            )
        })?;
    match (&admitted.signer, &admitted.key_id) {
        (Some(signer), Some(key_id)) => tracing::info!(
            component = %origin.display(),
            %sha256,
            %signer,
            %key_id,
            "verified"
        ),
        _ => tracing::warn!(
            component = %origin.display(),
            %sha256,
            "running an UNSIGNED component (--allow-unsigned)"
        ),
    }
    options.grants = admitted.grants.clone();

    let runtime =
        Runtime::new().map_err(|e| (exit::FAILED, format!("cannot start wasmtime: {e:#}")))?;
    let (loaded, cache_status) = match &launch.cache {
        Some(cache) => cache.load(&runtime, bytes),
        None => cache::load_uncached(&runtime, bytes),
    }
    .map_err(|e| (exit::USAGE, format!("{}: {e}", origin.display())))?;
    tracing::info!("cache: {cache_status}");
    // The load-time check: imports outside the world are refused before instantiation,
    // whether the component was compiled now or loaded from the cache.
    runtime.interfaces(&loaded).check().map_err(|e| {
        (
            exit::REFUSED,
            format!("{}: {}", origin.display(), RunError::Refused(e)),
        )
    })?;
    options.hooks = prepare_hooks(&runtime, site, launch)?;
    tracing::info!(
        component = %origin.display(),
        sha256 = %loaded.sha256,
        cluster = %site.cluster.name,
        "running"
    );
    let mut report = runtime.run(&loaded, site, options).await.map_err(|e| {
        let code = match e {
            RunError::Refused(_) => exit::REFUSED,
            RunError::Invalid(_) | RunError::Setup(_) => exit::USAGE,
            RunError::Limit(_) => exit::FAILED,
            // About the cluster, not the component.
            RunError::Busy(_) => {
                return (
                    exit::FAILED,
                    format!("cluster {:?}: {e}", site.cluster.name),
                );
            }
        };
        (code, format!("{}: {e}", origin.display()))
    })?;
    report.signer = admitted.signer;
    report.key_id = admitted.key_id.map(|id| id.0);
    report.cache = Some(cache_status.to_string());
    Ok(report)
}

/// Reads, verifies (the site's trust, each hook's own signer), compiles and
/// import-checks every `[[hooks]]` component, before any pod is contacted. A hook
/// that is not signed by a trusted key is refused (exit 3), naming its file.
fn prepare_hooks(
    runtime: &Runtime,
    site: &Site,
    launch: &Launch<'_>,
) -> Result<Vec<PreparedHook>, (u8, String)> {
    let allowed = crate::caps::hooks::hook_grants(&site.grants());
    let request = trust::Request {
        allow_unsigned: launch.trust.allow_unsigned,
        // A detached signature (`--signature`) is the procedure's, never a hook's.
        detached: None,
    };
    let mut prepared = Vec::new();
    for config in &site.hooks {
        let file = config.path.display();
        let bytes = std::fs::read(&config.path).map_err(|e| {
            (
                exit::USAGE,
                format!(
                    "site file {}: [[hooks]] path: hook {file}: cannot read: {e}",
                    site.path.display()
                ),
            )
        })?;
        let sha256 = crate::runtime::hex(&sha2::Sha256::digest(&bytes));
        let admitted =
            trust::admit(&bytes, &site.trust, &allowed, &request).map_err(|refusal| {
                let code = if refusal.is_refusal() {
                    exit::REFUSED
                } else {
                    exit::USAGE
                };
                (
                    code,
                    format!("hook {file}: refused: {refusal} (sha256 {sha256})"),
                )
            })?;
        let loaded = runtime
            .load(&bytes)
            .map_err(|e| (exit::USAGE, format!("hook {file}: {e}")))?;
        runtime
            .interfaces(&loaded)
            .check_hook()
            .map_err(|e| (exit::REFUSED, format!("hook {file}: {e}")))?;
        tracing::info!(
            hook = %config.name,
            file = %file,
            %sha256,
            signer = admitted.signer.as_deref().unwrap_or("(unsigned)"),
            grants = %admitted.grants,
            "hook verified"
        );
        prepared.push(PreparedHook {
            config: config.clone(),
            loaded,
            grants: admitted.grants,
            signer: admitted.signer,
        });
    }
    Ok(prepared)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn color_auto_gives_way_to_no_color_and_explicit_choices_do_not() {
        let set = || Some(std::ffi::OsString::from("1"));
        assert_eq!(Color::Auto.escapes(None), ui::Escapes::Auto);
        assert_eq!(Color::Auto.escapes(set()), ui::Escapes::Never);
        // An empty NO_COLOR is as if it were not set.
        assert_eq!(Color::Auto.escapes(Some("".into())), ui::Escapes::Auto);
        assert_eq!(Color::Always.escapes(set()), ui::Escapes::Always);
        assert_eq!(Color::Never.escapes(None), ui::Escapes::Never);
    }

    #[test]
    fn color_is_read_before_parsing_in_both_spellings() {
        let args = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert_eq!(
            Color::from_args(&args(&["cmk-host", "--color", "never", "--help"])),
            Some(Color::Never)
        );
        assert_eq!(
            Color::from_args(&args(&["cmk-host", "demo", "--color=always"])),
            Some(Color::Always)
        );
        assert_eq!(Color::from_args(&args(&["cmk-host", "demo"])), None);
        assert_eq!(
            Color::from_args(&args(&["cmk-host", "--", "--color=always"])),
            None
        );
    }
}
