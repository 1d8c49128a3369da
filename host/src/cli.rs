//! The command line: arguments become a validated site and run options; nothing
//! past this module sees clap or the environment.

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

use crate::caps::confirm::Answerer;
use crate::caps::log::Progress;
use crate::events::Events;
use crate::exit;
use crate::launch::{self, Failure, Launch};
use crate::report::RunReport;
use crate::runtime::RunOptions;
use crate::signing::{KeygenArgs, SignArgs, VerifyArgs};
use crate::site::Site;
use crate::stop::Stop;
use crate::trust;
use crate::ui;

/// `--version`: this host, the wasmtime it runs components with, and the WIT package
/// of the world components are built against (`-V` prints the first line only).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nwasmtime ",
    env!("CMK_WASMTIME_VERSION"),
    "\nwit ",
    env!("CMK_WIT_PACKAGE"),
);

/// Runs key-management procedures, such as a Cluster Master Key rotation of a
/// Fortanix DSM cluster, as sandboxed WebAssembly components.
///
/// A component receives only what the site file grants: the cluster's pods, HTTPS to
/// those pods, the site's rolling restart, and a log.
///
/// Exit codes: 0 done; 1 the procedure failed or was stopped (the summary says
/// whether the cluster is safe to resume); 2 usage or site file error; 3 refused.
#[derive(Parser, Debug)]
#[command(name = "cmk-host", version, long_version = LONG_VERSION, max_term_width = 100)]
pub struct Cli {
    /// Say more: INFO lines (-v), DEBUG (-vv), TRACE (-vvv). On a terminal the
    /// default shows the steps, questions, warnings and the summary.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Say less: only the summary and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Also write INFO lines (and above) to FILE, whatever the terminal shows.
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// A log filter instead of -v/-q, e.g. `info`, `cmk_host=debug,guest=info`
    /// (RUST_LOG works too).
    #[arg(long, global = true, value_name = "FILTER", display_order = 1000)]
    pub log: Option<String>,

    /// Colour and other terminal escapes on stderr: `auto` (on a terminal, unless
    /// NO_COLOR is set), `always`, or `never` (plain lines, no spinners).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = Color::Auto,
        value_name = "WHEN",
        display_order = 1000
    )]
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
    /// Run one signed component against many clusters, in one process.
    ///
    /// Every site file is validated, and the component admitted by every site's
    /// trust, before any cluster is contacted; the component is compiled once. Each
    /// cluster runs as `run` would run it (its own store, grants, limits, Lease,
    /// journal and audit trail), at most --max-parallel at once. Exit 0 when every
    /// cluster is done (or ready, with --stop-before activate); 1 when any is not.
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_long_help = "Examples:
  cmk-host fleet --component rotate.wasm --yes sites/*.toml
  cmk-host fleet --component rotate.wasm --stop-before activate sites/*.toml   # prepare everywhere
  cmk-host fleet --component rotate.wasm --yes sites/*.toml                    # then activate everywhere
  cmk-host fleet job --image registry.example.com/cmk-host:0.1.0 --shards 4 \
      --component rotate.wasm --yes sites/*.toml | kubectl apply -f -"
    )]
    Fleet(Box<FleetArgs>),
    /// Check a cluster: every pod's key version, proposal hash and readiness.
    ///
    /// Runs the bundled read-only procedure (guest-status) with the site's grants
    /// made read-only: the pod list, the log and GET under the site's paths. It needs
    /// no signature or trusted signer, takes no Lease (it can look at a cluster while
    /// a rotation runs) and never changes anything. Exit 0 when every pod is Ready
    /// and agrees; 1 when a pod disagrees, is not Ready or cannot be read.
    #[command(after_long_help = "Examples:
  cmk-host status --site /etc/cmk/prod-eu.toml
  cmk-host status --site /etc/cmk/prod-eu.toml --json")]
    Status(StatusArgs),
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
    /// With --site, the signature is verified first, as `run` does; the grants shown
    /// are the site's narrowed to the signer. Exit 3 when a run would refuse the
    /// component (unsigned, an untrusted key, modified, an import outside the world).
    Inspect(InspectArgs),
    /// Work with audit trails.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print a shell completion script on stdout.
    ///
    /// Examples: cmk-host completions bash > /etc/bash_completion.d/cmk-host;
    /// cmk-host completions zsh > "${fpath[1]}/_cmk-host";
    /// cmk-host completions fish > ~/.config/fish/completions/cmk-host.fish
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print a manual page (roff) on stdout, or write every page into a folder.
    ///
    /// Examples: cmk-host man | man -l -; cmk-host man run | man -l -;
    /// cmk-host man --dir /usr/local/share/man/man1 (cmk-host.1, cmk-host-run.1, ...)
    Man {
        /// The subcommand whose page to print (default: cmk-host's own page).
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
        /// Write cmk-host.1 and one page per subcommand (cmk-host-run.1,
        /// cmk-host-audit-verify.1, ...) into DIR instead (created if missing).
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
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
    /// The site file whose trust, grants and limits to judge it by: its signature
    /// is verified first, as `run` does.
    #[arg(long, value_name = "SITE.toml")]
    pub site: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Judge it as `run --allow-unsigned` would.
    #[arg(long, requires = "site")]
    pub allow_unsigned: bool,
    /// A detached signature (from `sign --detached`), as `run --signature`.
    #[arg(long, value_name = "FILE", requires = "site")]
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
    /// Print one machine-readable JSON document on stdout, whatever the exit code
    /// (progress stays on stderr; schema: docs/json.md).
    #[arg(long)]
    pub json: bool,
    /// Write one JSON line per step and capability call to FILE as it happens
    /// (`-`: standard error), for tools that follow a run (schema: docs/json.md).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Answer yes to the confirmation before the point of no return (activation),
    /// for automation. Without it, and without a terminal, the run stops before it.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Args, Debug)]
pub struct FleetArgs {
    #[command(subcommand)]
    pub job: Option<FleetCommand>,
    #[command(flatten)]
    pub run: FleetRunArgs,
}

#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Write the manifests of a Kubernetes Indexed Job whose pods each run one shard.
    ///
    /// Prints one JSON List for `kubectl apply -f -`: a Secret per site (the site file,
    /// its kubeconfig, CA, signer keys and hooks, paths rewritten to the mount), the
    /// service account (and, for a site without a kubeconfig, its Role), the state
    /// volume and the Job. The component comes from a ConfigMap you create.
    Job(JobArgs),
}

#[derive(Args, Debug)]
pub struct FleetRunArgs {
    /// The procedure every cluster runs (signed by a key each site trusts).
    #[arg(long, value_name = "COMPONENT.wasm", required = true)]
    pub component: Option<PathBuf>,
    /// The site files, one per cluster.
    #[arg(value_name = "SITE.toml", required = true)]
    pub sites: Vec<PathBuf>,
    /// Clusters rotated at once.
    #[arg(long, default_value_t = crate::fleet::DEFAULT_MAX_PARALLEL, value_parser = clap::value_parser!(u16).range(1..=1024).map(usize::from))]
    pub max_parallel: usize,
    /// Once K clusters have failed, start no other and stop the running ones at
    /// their next safe point. Default: go on with the others.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..).map(|k| k as usize))]
    pub max_failures: Option<usize>,
    /// Keep only the sites whose position in the list is I modulo N (0-based).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<crate::fleet::Shard>,
    /// Read every cluster and show the steps; change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Answer yes to every cluster's confirmation before activation.
    #[arg(long)]
    pub yes: bool,
    /// Take every cluster up to the point of no return and stop there ("ready to
    /// activate", exit 0): the host refuses the activate request whatever the
    /// component does. Run again without it to finish.
    #[arg(long, value_name = "STEP", value_parser = ["activate"])]
    pub stop_before: Option<String>,
    /// One JSON document on stdout with a record per cluster.
    #[arg(long)]
    pub json: bool,
    /// Write one JSON line per step and capability call of every cluster to FILE as
    /// it happens (`-`: standard error), each naming its `cluster`; a
    /// `cluster-end` line as each cluster ends, the fleet's document last.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// A procedure parameter for every cluster; overrides each site's [params].
    #[arg(long = "param", value_name = "K=V", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Args, Debug)]
pub struct JobArgs {
    /// The image whose entrypoint is cmk-host.
    #[arg(long)]
    pub image: String,
    /// Indexes of the Job: each runs `fleet --shard I/N` over the same site list.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000).map(usize::from))]
    pub shards: usize,
    /// The signed component (its file name is looked up in the ConfigMap).
    #[arg(long, value_name = "COMPONENT.wasm")]
    pub component: PathBuf,
    /// The ConfigMap holding the component (`kubectl create configmap NAME --from-file=...`).
    #[arg(long, default_value = "cmk-component")]
    pub component_configmap: String,
    /// The Job's name and the prefix of its objects.
    #[arg(long, default_value = "cmk-fleet")]
    pub name: String,
    /// The namespace of the Job, its Secrets and its state volume.
    #[arg(long, default_value = "cmk-fleet")]
    pub namespace: String,
    /// Where the pods see the component and the site Secrets.
    #[arg(long, default_value = "/etc/cmk", value_name = "DIR")]
    pub mount_root: PathBuf,
    /// Where the pods keep journals, audit trails and the cache (the state volume).
    #[arg(long, default_value = "/var/lib/cmk-host", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The PersistentVolumeClaim of the state (keep it for the activate Job).
    #[arg(long, default_value = "cmk-fleet-state")]
    pub state_claim: String,
    /// Retries of a failed index (a retry resumes from the journal).
    #[arg(long, default_value_t = 0)]
    pub backoff_per_index: i32,
    /// Clusters each shard rotates at once.
    #[arg(long)]
    pub max_parallel: Option<u16>,
    /// Passed to every shard.
    #[arg(long, value_name = "K")]
    pub max_failures: Option<u32>,
    /// Passed to every shard: answer yes before activation.
    #[arg(long)]
    pub yes: bool,
    /// Passed to every shard: stop every cluster before activate.
    #[arg(long, value_name = "STEP", value_parser = ["activate"])]
    pub stop_before: Option<String>,
    /// Passed to every shard.
    #[arg(long = "param", value_name = "K=V", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Write the manifests here instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The site files, in the order the shards count them.
    #[arg(value_name = "SITE.toml", required = true)]
    pub sites: Vec<PathBuf>,
}

/// How `run` and `fleet` admit and load the component.
#[derive(Args, Debug)]
pub struct LoadArgs {
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
}

impl LoadArgs {
    /// The detached signature's bytes, read before anything runs.
    fn detached(&self) -> Result<Option<Vec<u8>>, Failure> {
        self.signature
            .as_deref()
            .map(|path| launch::read_file("signature", path))
            .transpose()
    }

    /// How the component is admitted and loaded, given the detached signature.
    fn launch<'a>(&self, detached: Option<&'a [u8]>) -> Launch<'a> {
        Launch {
            trust: trust::Request {
                allow_unsigned: self.allow_unsigned,
                detached,
            },
            cache: launch::open_cache(self.no_cache, self.cache_dir.clone()),
        }
    }
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The site file of the cluster to check.
    #[arg(long, value_name = "SITE.toml")]
    pub site: PathBuf,
    /// A parameter of the check (`port`, `version_field`, `hash_field`,
    /// `read_timeout_secs`); overrides the site's [params]. Repeatable.
    #[arg(long = "param", value_name = "K=V", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Print one machine-readable JSON document on stdout, whatever the exit code.
    #[arg(long)]
    pub json: bool,
    /// Write one JSON line per step and capability call to FILE as it happens
    /// (`-`: standard error).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Simulated clusters, rotated by one `fleet` run (1: a plain `run`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=200))]
    pub clusters: u16,
    /// Pods in the simulated cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub pods: u16,
    /// Print the run's JSON report on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Independent simulated clusters, each with its own API server and pod
    /// addresses; their files go to DIR/cluster-N/.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=200))]
    pub clusters: u16,
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
            if !e.use_stderr() {
                return exit::DONE;
            }
            // `--json` promises a document on every exit, a usage error included.
            if std::env::args().any(|a| a == "--json") {
                let message = e.kind().as_str().unwrap_or("usage error").to_string();
                println!("{:#}", Failure::Usage(message).document(None));
            }
            return exit::USAGE;
        }
    };
    let terminal =
        ui::Terminal::with_escapes(cli.quiet, cli.color.escapes(std::env::var_os("NO_COLOR")));
    let verbosity = ui::Verbosity {
        quiet: cli.quiet,
        verbose: cli.verbose,
        filter: cli.log.clone(),
        env_filter: std::env::var("RUST_LOG").ok().filter(|f| !f.is_empty()),
        log_file: cli.log_file.clone(),
    };
    if let Err(e) = terminal.init_tracing(&verbosity) {
        eprintln!("error: logging: {e}");
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
            Command::Fleet(args) => match *args {
                FleetArgs {
                    job: Some(FleetCommand::Job(job)),
                    ..
                } => fleet_job(job),
                FleetArgs { run, .. } => fleet(run, &terminal).await,
            },
            Command::Demo(args) if args.clusters > 1 => {
                crate::fleet_demo::demo(
                    args.clusters as usize,
                    args.pods as usize,
                    args.json,
                    &terminal,
                )
                .await
            }
            Command::Status(args) => status(args, &terminal).await,
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
                if args.clusters > 1 {
                    crate::fleet_demo::sim(args.clusters as usize, config, &args.dir).await
                } else {
                    crate::demo::sim(config, &args.dir).await
                }
            }
            Command::Keygen(args) => crate::signing::keygen(&args),
            Command::Sign(args) => crate::signing::sign(&args),
            Command::Verify(args) => crate::signing::verify(&args),
            Command::Inspect(args) => inspect(args),
            Command::Audit(AuditCommand::Verify { file }) => audit_verify(&file),
            Command::Completions { shell } => {
                use clap::CommandFactory;
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "cmk-host", &mut script);
                print_whole(&script, "the script")
            }
            Command::Man { command, dir } => man(command.as_deref(), dir.as_deref()),
        }
    })
}

/// Writes `bytes` on stdout whole, so that a closed pipe (`| head`) is an error, not
/// a panic; a closed pipe is not a failure.
fn print_whole(bytes: &[u8], what: &str) -> u8 {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Ok(()) => exit::DONE,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::DONE,
        Err(e) => ui::error(exit::FAILED, format!("cannot write {what}: {e}")),
    }
}

/// `cmk-host man`: one page on stdout, or every page into `dir`.
fn man(command: Option<&str>, dir: Option<&Path>) -> u8 {
    use clap::CommandFactory;
    // Every page names the program and its version, a subcommand's too.
    fn page(cmd: clap::Command) -> clap_mangen::Man {
        clap_mangen::Man::new(cmd).source(format!("cmk-host {}", env!("CARGO_PKG_VERSION")))
    }
    fn write_all(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
        for sub in cmd.get_subcommands() {
            write_all(sub, dir)?;
        }
        page(cmd.clone()).generate_to(dir).map(drop)
    }
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    if let Some(dir) = dir {
        return match std::fs::create_dir_all(dir).and_then(|()| write_all(&cli, dir)) {
            Ok(()) => exit::DONE,
            Err(e) => ui::error(
                exit::FAILED,
                format!("cannot write the manual pages into {}: {e}", dir.display()),
            ),
        };
    }
    let cmd = match command {
        None => cli,
        Some(name) => match cli.find_subcommand(name) {
            Some(sub) => sub.clone(),
            None => {
                let names: Vec<&str> = cli.get_subcommands().map(|s| s.get_name()).collect();
                return ui::error(
                    exit::USAGE,
                    format!(
                        "no command `{name}` has a manual page; one of: {}",
                        names.join(", ")
                    ),
                );
            }
        },
    };
    let mut roff = Vec::new();
    if let Err(e) = page(cmd).render(&mut roff) {
        return ui::error(exit::FAILED, format!("cannot render the manual page: {e}"));
    }
    print_whole(&roff, "the manual page")
}

async fn run(args: RunArgs, terminal: &ui::Terminal) -> u8 {
    let (json, site, events) = (args.json, args.site.clone(), args.events.clone());
    concluded(json, &site, events.as_deref(), |events| {
        run_component(args, terminal, events)
    })
    .await
}

/// Opens `--events FILE`, runs `body` with it, and concludes: one document on every
/// exit with `--json`, the closing event last (`launch::conclude`).
async fn concluded<Fut>(
    json: bool,
    site: &Path,
    events: Option<&Path>,
    body: impl FnOnce(Events) -> Fut,
) -> u8
where
    Fut: std::future::Future<Output = Result<RunReport, Failure>>,
{
    let events = match open_events(events) {
        Ok(events) => events,
        Err(failure) => return launch::conclude(Err(failure), json, &Events::default(), site),
    };
    let result = body(events.clone()).await;
    launch::conclude(result, json, &events, site)
}

/// `--events FILE`, opened before anything runs.
fn open_events(path: Option<&Path>) -> Result<Events, Failure> {
    match path {
        None => Ok(Events::default()),
        Some(path) => Events::open(path)
            .map_err(|e| Failure::Usage(format!("--events {}: {e}", path.display()))),
    }
}

/// The terminal's progress, followed by `--events` when it is on.
fn progress(terminal: &ui::Terminal, events: &Events) -> std::sync::Arc<dyn Progress> {
    ui::Followed::wrap(terminal.progress(), events)
}

async fn run_component(
    args: RunArgs,
    terminal: &ui::Terminal,
    events: Events,
) -> Result<RunReport, Failure> {
    let site = Site::load(&args.site)?;
    let bytes = launch::read_file("component", &args.component)?;
    let detached = args.load.detached()?;
    let launch = args.load.launch(detached.as_deref());
    let state_dir = launch::state_dir(&site)?;
    let options = RunOptions {
        plan: args.plan,
        params: args.params,
        limits: site.limits.clone(),
        grants: site.grants(),
        progress: progress(terminal, &events),
        state_dir,
        answerer: Answerer::detect(args.yes),
        stop: on_interrupt(),
        hooks: Vec::new(),
        signer: None,
        key_id: None,
        events,
    };
    launch::execute(&bytes, &args.component, &site, &launch, options).await
}

async fn status(args: StatusArgs, terminal: &ui::Terminal) -> u8 {
    let (json, site, events) = (args.json, args.site.clone(), args.events.clone());
    concluded(json, &site, events.as_deref(), |events| {
        status_of(args, terminal, events)
    })
    .await
}

async fn status_of(
    args: StatusArgs,
    terminal: &ui::Terminal,
    events: Events,
) -> Result<RunReport, Failure> {
    let site = Site::load(&args.site)?;
    let options = RunOptions {
        plan: false,
        params: args.params,
        limits: site.limits.clone(),
        grants: site.grants(),
        progress: progress(terminal, &events),
        state_dir: launch::state_dir(&site)?,
        answerer: Answerer::Nobody,
        stop: on_interrupt(),
        hooks: Vec::new(),
        signer: None,
        key_id: None,
        events,
    };
    let origin = Path::new("<bundled guest-status>");
    // Compiled into the binary: the precompile cache would only add a disk write.
    let launch = Launch::default();
    launch::execute_bundled(crate::STATUS_COMPONENT, origin, &site, &launch, options).await
}

async fn fleet(args: FleetRunArgs, terminal: &ui::Terminal) -> u8 {
    let json = args.json;
    let (result, events) = match open_events(args.events.as_deref()) {
        Ok(events) => (
            fleet_component(args, terminal, events.clone()).await,
            events,
        ),
        Err(failure) => (Err(failure), Events::default()),
    };
    match result {
        Ok(report) => {
            events.emit_as("report", serde_json::to_value(&report).unwrap_or_default());
            crate::fleet::finish(&report, json)
        }
        Err(failure) => {
            let document = failure.document(None);
            events.emit_as("report", document.clone());
            // `--json` promises one document on every exit.
            if json {
                println!("{document:#}");
            }
            failure.report()
        }
    }
}

async fn fleet_component(
    args: FleetRunArgs,
    terminal: &ui::Terminal,
    events: Events,
) -> Result<crate::fleet::FleetReport, Failure> {
    let component = args
        .component
        .ok_or_else(|| Failure::Usage("fleet: --component is required".into()))?;
    let bytes = launch::read_file("component", &component)?;
    let detached = args.load.detached()?;
    let launch = args.load.launch(detached.as_deref());
    let options = crate::fleet::FleetOptions {
        component,
        sites: args.sites,
        max_parallel: args.max_parallel,
        max_failures: args.max_failures,
        shard: args.shard,
        plan: args.plan,
        yes: args.yes,
        stop_before_activate: args.stop_before.is_some(),
        params: args.params,
        events,
    };
    crate::fleet::execute(&options, &bytes, &launch, terminal, on_interrupt()).await
}

fn fleet_job(args: JobArgs) -> u8 {
    let mut fleet_args = Vec::new();
    if let Some(n) = args.max_parallel {
        fleet_args.extend(["--max-parallel".to_string(), n.to_string()]);
    }
    if let Some(k) = args.max_failures {
        fleet_args.extend(["--max-failures".to_string(), k.to_string()]);
    }
    if args.yes {
        fleet_args.push("--yes".into());
    }
    if let Some(step) = args.stop_before {
        fleet_args.extend(["--stop-before".to_string(), step]);
    }
    for (k, v) in args.params {
        fleet_args.extend(["--param".to_string(), format!("{k}={v}")]);
    }
    let options = crate::fleet::job::JobOptions {
        image: args.image,
        shards: args.shards,
        name: args.name,
        namespace: args.namespace,
        component: args.component,
        component_configmap: args.component_configmap,
        mount_root: args.mount_root,
        state_dir: args.state_dir,
        state_claim: args.state_claim,
        backoff_per_index: args.backoff_per_index,
        fleet_args,
        sites: args.sites,
    };
    let manifests = match crate::fleet::job::manifests(&options) {
        Ok(m) => m,
        Err(failure) => return failure.report(),
    };
    let text = format!("{manifests:#}\n");
    match args.output {
        Some(path) => match std::fs::write(&path, text) {
            Ok(()) => exit::DONE,
            Err(e) => ui::error(exit::USAGE, format!("cannot write {}: {e}", path.display())),
        },
        None => {
            print!("{text}");
            exit::DONE
        }
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
        requested.interrupt("interrupted (SIGINT)");
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted twice: exiting now; run again to continue");
            std::process::exit(i32::from(exit::FAILED));
        }
    });
    stop
}

fn inspect(args: InspectArgs) -> u8 {
    let site = match args.site.as_deref().map(Site::load).transpose() {
        Ok(site) => site,
        Err(e) => return Failure::from(e).report(),
    };
    let bytes = match launch::read_file("component", &args.component) {
        Ok(b) => b,
        Err(failure) => return failure.report(),
    };
    let detached = match args
        .signature
        .as_deref()
        .map(|p| launch::read_file("signature", p))
    {
        Some(Err(failure)) => return failure.report(),
        Some(Ok(sig)) => Some(sig),
        None => None,
    };
    let request = trust::Request {
        allow_unsigned: args.allow_unsigned,
        detached: detached.as_deref(),
    };
    let inspection = match crate::inspect::inspect(&bytes, &args.component, site.as_ref(), &request)
    {
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

    /// Every positional argument of every command says what it is in `--help`.
    #[test]
    fn every_positional_argument_is_described() {
        use clap::CommandFactory;
        fn check(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_positionals() {
                if arg.get_help().is_none() {
                    missing.push(format!("{path} <{}>", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                check(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        check(&Cli::command(), "cmk-host", &mut missing);
        assert!(
            missing.is_empty(),
            "positional arguments without help: {missing:?}"
        );
        Cli::command().debug_assert();
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
