//! Everything the host says to the operator on the terminal: step progress while a
//! procedure runs, and the summary at the end. One home for messages to the user.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::caps::log::{Fields, Progress, StepRecord};
use crate::report::RunReport;

/// A progress sink that also writes each step's start and end as an event
/// (`--events`).
pub struct Followed {
    inner: Arc<dyn Progress>,
    events: crate::events::Events,
}

impl Followed {
    /// `inner`, followed by `events` when they are on.
    pub fn wrap(inner: Arc<dyn Progress>, events: &crate::events::Events) -> Arc<dyn Progress> {
        if !events.is_on() {
            return inner;
        }
        Arc::new(Followed {
            inner,
            events: events.clone(),
        })
    }
}

impl Progress for Followed {
    fn step_begin(&self, name: &str, detail: &str) {
        self.events.emit_as(
            "step-begin",
            serde_json::json!({ "name": name, "detail": detail }),
        );
        self.inner.step_begin(name, detail);
    }

    fn step_end(&self, name: &str, outcome: &str, detail: &str, elapsed: Duration) {
        self.events.emit_as(
            "step-end",
            serde_json::json!({
                "name": name, "outcome": outcome, "detail": detail,
                "duration_ms": elapsed.as_millis() as u64,
            }),
        );
        self.inner.step_end(name, outcome, detail, elapsed);
    }
}

/// How much the terminal says: `-q`, `-v`, `--log`, `--log-file`, `RUST_LOG`.
#[derive(Debug, Clone, Default)]
pub struct Verbosity {
    /// `-q`: only the summary and errors.
    pub quiet: bool,
    /// `-v` (INFO), `-vv` (DEBUG), `-vvv` (TRACE).
    pub verbose: u8,
    /// `--log FILTER`: an explicit filter, for the terminal and the log file.
    pub filter: Option<String>,
    /// `RUST_LOG`, read by the CLI: used when `--log` is not given.
    pub env_filter: Option<String>,
    /// `--log-file FILE`: INFO (or the filter) goes there, whatever the terminal shows.
    pub log_file: Option<std::path::PathBuf>,
}

impl Verbosity {
    /// The terminal's filter. Quiet by default on a terminal (the steps, the
    /// confirmation and the summary; warnings stay visible); INFO in a pipe or CI
    /// log, where nobody watches spinners and the lines are the record.
    pub fn terminal_filter(&self, on_terminal: bool) -> String {
        if let Some(f) = self.filter.as_ref().or(self.env_filter.as_ref()) {
            return f.clone();
        }
        let level = match (self.quiet, self.verbose) {
            (true, _) => "error",
            (false, 0) if on_terminal => "warn",
            (false, 0 | 1) => "info",
            (false, 2) => "debug",
            (false, _) => "trace",
        };
        format!("{level},cmk_sim=warn")
    }

    /// The log file's filter: at least INFO.
    pub fn file_filter(&self) -> String {
        if let Some(f) = self.filter.as_ref().or(self.env_filter.as_ref()) {
            return f.clone();
        }
        match self.verbose {
            0 | 1 => "info,cmk_sim=warn".into(),
            2 => "debug,cmk_sim=info".into(),
            _ => "trace".into(),
        }
    }
}

/// Whether stderr gets colour and other escape sequences (`--color`, `NO_COLOR`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Escapes {
    /// When stderr is a terminal.
    #[default]
    Auto,
    /// Colour even into a pipe or a file.
    Always,
    /// None at all: no colour, and plain step lines instead of spinners.
    Never,
}

/// The operator's terminal (stderr): spinners when it is one, plain lines when it
/// is a pipe or a CI log. Log lines are written around the spinners, not through them.
pub struct Terminal {
    multi: Option<MultiProgress>,
    /// Colour in log lines.
    ansi: bool,
    /// stderr is a terminal (whether or not it gets escapes).
    on_terminal: bool,
    quiet: bool,
}

impl Default for Terminal {
    fn default() -> Self {
        Self::new(false)
    }
}

impl Terminal {
    /// `quiet`: no step lines either (`-q`).
    pub fn new(quiet: bool) -> Self {
        Self::with_escapes(quiet, Escapes::Auto)
    }

    pub fn with_escapes(quiet: bool, escapes: Escapes) -> Self {
        let on_terminal = std::io::stderr().is_terminal();
        // Spinners redraw with cursor escapes: only on a terminal that accepts them.
        let multi = (on_terminal && escapes != Escapes::Never)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let ansi = match escapes {
            Escapes::Auto => on_terminal,
            Escapes::Always => true,
            Escapes::Never => false,
        };
        Terminal {
            multi,
            ansi,
            on_terminal,
            quiet,
        }
    }

    /// Installs the process's `tracing` subscriber: the terminal, filtered as
    /// `verbosity` says, and the log file when there is one.
    pub fn init_tracing(&self, verbosity: &Verbosity) -> Result<(), String> {
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let terminal_filter = verbosity.terminal_filter(self.on_terminal);
        let filter = tracing_subscriber::EnvFilter::try_new(&terminal_filter)
            .map_err(|e| format!("{terminal_filter:?}: {e}"))?;
        let writer = LogWriter(self.multi.clone());
        let terminal = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(self.ansi)
            .with_target(false)
            .with_filter(filter);
        let file = match &verbosity.log_file {
            None => None,
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("--log-file {}: {e}", path.display()))?;
                let file_filter = verbosity.file_filter();
                let filter = tracing_subscriber::EnvFilter::try_new(&file_filter)
                    .map_err(|e| format!("{file_filter:?}: {e}"))?;
                Some(
                    tracing_subscriber::fmt::layer()
                        .with_writer(Mutex::new(file))
                        .with_ansi(false)
                        .with_filter(filter),
                )
            }
        };
        tracing_subscriber::registry()
            .with(terminal)
            .with(file)
            .try_init()
            .map_err(|e| e.to_string())
    }

    pub fn progress(&self) -> Arc<dyn Progress> {
        if self.quiet {
            return Arc::new(Silent);
        }
        match &self.multi {
            Some(multi) => Arc::new(Spinners {
                multi: multi.clone(),
                running: Mutex::new(Vec::new()),
            }),
            None => Arc::new(Lines),
        }
    }
}

impl Terminal {
    /// The live line of one cluster of a fleet: a spinner with the cluster's current
    /// step on a terminal, plain lines prefixed with the cluster's name otherwise.
    pub fn cluster_line(&self, cluster: &str, width: usize) -> Arc<ClusterLine> {
        // Made whole before it is added: the first frame drawn is already this one.
        let bar = self.multi.as_ref().filter(|_| !self.quiet).map(|multi| {
            let bar = ProgressBar::new_spinner()
                .with_style(
                    ProgressStyle::with_template("{spinner} {prefix} {msg} ({elapsed})")
                        .expect("static template"),
                )
                .with_prefix(format!("{cluster:<width$}"))
                .with_message("waiting");
            let bar = multi.add(bar);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Arc::new(ClusterLine {
            cluster: cluster.to_string(),
            bar,
            quiet: self.quiet,
        })
    }
}

/// One cluster's line in a fleet run (see [`Terminal::cluster_line`]).
pub struct ClusterLine {
    cluster: String,
    bar: Option<ProgressBar>,
    /// `-q`: no line at all (the summary still comes).
    quiet: bool,
}

impl ClusterLine {
    /// The line's last state: `mark` and `text` stay on screen.
    pub fn finish(&self, ok: bool, text: &str) {
        let mark = if ok { "✓" } else { "✗" };
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix} {msg}").expect("static template"),
                );
                bar.finish_with_message(format!("{mark} {text}"));
            }
            None => eprintln!("[{}] {mark} {text}", self.cluster),
        }
    }
}

impl Progress for ClusterLine {
    fn step_begin(&self, name: &str, detail: &str) {
        if self.quiet {
            return;
        }
        // The component's text is data: escaped before it reaches the terminal.
        let (name, detail) = (crate::text::escape(name), crate::text::escape(detail));
        match &self.bar {
            Some(bar) => bar.set_message(format!("▶ {name}")),
            None if detail.is_empty() => eprintln!("[{}] {GUTTER}▶ {name}", self.cluster),
            None => eprintln!("[{}] {GUTTER}▶ {name}: {detail}", self.cluster),
        }
    }

    fn step_end(&self, name: &str, outcome: &str, detail: &str, elapsed: Duration) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_message(format!(
                "{} {} {outcome}",
                mark(outcome),
                crate::text::escape(name)
            )),
            None => eprintln!(
                "[{}] {}",
                self.cluster,
                describe(name, outcome, detail, elapsed)
            ),
        }
    }
}

/// Writes log lines to stderr, hiding the spinners while it does.
#[derive(Clone)]
struct LogWriter(Option<MultiProgress>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(multi) => multi.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Prints `error: <message>` on stderr and returns `code`, for `return ui::error(..)`.
pub fn error(code: u8, message: impl std::fmt::Display) -> u8 {
    eprintln!("error: {message}");
    code
}

fn mark(outcome: &str) -> &'static str {
    match outcome {
        "done" => "✓",
        "skipped" => "↷",
        "planned" => "○",
        _ => "✗",
    }
}

/// The start of every line that shows a procedure's step: what follows is the
/// procedure's report, not the host's voice (a host line never starts so, and the
/// procedure's text, escaped, cannot start a line of its own).
pub const GUTTER: &str = "│ ";

fn describe(name: &str, outcome: &str, detail: &str, elapsed: Duration) -> String {
    let (name, detail) = (crate::text::escape(name), crate::text::escape(detail));
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    format!(
        "{GUTTER}{} {name} {outcome} ({:.1}s){detail}",
        mark(outcome),
        elapsed.as_secs_f64()
    )
}

/// Plain lines on stderr, one when a step begins and one when it ends.
pub struct Lines;

impl Progress for Lines {
    fn step_begin(&self, name: &str, detail: &str) {
        let (name, detail) = (crate::text::escape(name), crate::text::escape(detail));
        eprintln!(
            "{GUTTER}▶ {name}{}",
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        );
    }

    fn step_end(&self, name: &str, outcome: &str, detail: &str, elapsed: Duration) {
        eprintln!("{}", describe(name, outcome, detail, elapsed));
    }
}

/// No progress at all (tests, benchmarks, embedding).
pub struct Silent;

impl Progress for Silent {
    fn step_begin(&self, _: &str, _: &str) {}
    fn step_end(&self, _: &str, _: &str, _: &str, _: Duration) {}
}

/// A spinner per running step; finished steps stay on screen as lines.
pub struct Spinners {
    multi: MultiProgress,
    running: Mutex<Vec<(String, ProgressBar)>>,
}

impl Progress for Spinners {
    fn step_begin(&self, name: &str, detail: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("│ {spinner} {prefix} {msg} ({elapsed})")
                .expect("static template"),
        );
        bar.set_prefix(crate::text::escape(name));
        bar.set_message(crate::text::escape(detail));
        bar.enable_steady_tick(Duration::from_millis(120));
        self.running
            .lock()
            .expect("ui lock")
            .push((name.to_string(), bar));
    }

    fn step_end(&self, name: &str, outcome: &str, detail: &str, elapsed: Duration) {
        let mut running = self.running.lock().expect("ui lock");
        if let Some(i) = running.iter().position(|(n, _)| n == name) {
            let (_, bar) = running.remove(i);
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let _ = self.multi.println(describe(name, outcome, detail, elapsed));
    }
}

/// Longest cell the table shows whole (but the last column, shown whole): long
/// values (a hash) are cut on the terminal; `--json` has them whole.
const CELL: usize = 16;

/// The steps whose details are `key=value` pairs (a procedure's rows, such as one per
/// pod), as a table: a mark, the step's name, then one column per key in the order
/// the keys first appear. Empty when no step has such a detail.
fn table(steps: &[StepRecord]) -> String {
    let rows: Vec<(&StepRecord, &Fields)> = steps
        .iter()
        .filter_map(|s| Some((s, s.fields.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut keys: Vec<&str> = Vec::new();
    for (_, fields) in &rows {
        for (k, _) in &fields.0 {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
    }
    let cut = |v: &str, last: bool| {
        if last || v.chars().count() <= CELL {
            v.to_string()
        } else {
            format!("{}…", v.chars().take(CELL - 1).collect::<String>())
        }
    };
    let mut lines: Vec<Vec<String>> = vec![
        std::iter::once(String::new())
            .chain(keys.iter().map(|k| k.to_uppercase()))
            .collect(),
    ];
    for (step, fields) in &rows {
        let mut line = vec![step.name.to_string()];
        for (i, key) in keys.iter().enumerate() {
            let value = fields.get(key).unwrap_or("");
            line.push(cut(value, i + 1 == keys.len()));
        }
        lines.push(line);
    }
    let widths: Vec<usize> = (0..=keys.len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::from("\n");
    for (i, line) in lines.iter().enumerate() {
        let mark = match i {
            0 => " ",
            _ => mark(rows[i - 1].0.outcome),
        };
        let mut text = format!("  {mark} ");
        for (c, cell) in line.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            text.push_str(cell);
            if c + 1 < line.len() {
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out.push('\n');
    out
}

/// The summary printed at the end of a run.
pub fn summary(report: &RunReport) -> String {
    let mut out = String::new();
    let version = |v: Option<i64>| v.map_or("?".to_string(), |v| v.to_string());
    out.push_str(&format!(
        "\n{} cluster {:?}: {}\n",
        if report.exit_code == 0 { "✓" } else { "✗" },
        report.cluster,
        report.outcome_text()
    ));
    if report.pods > 0 {
        out.push_str(&format!("  pods:     {}\n", report.pods));
    }
    if report.version_before.is_none() && report.version_after.is_none() {
        // A procedure that failed before reading the key version, or reports none.
    } else if report.plan || report.version_before == report.version_after {
        out.push_str(&format!("  version:  {}\n", version(report.version_before)));
    } else {
        let note = report
            .version_note()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  version:  {} -> {}{note}\n",
            version(report.version_before),
            version(report.version_after)
        ));
    }
    for call in &report.irreversible_sent {
        out.push_str(&format!("  irreversible: {call}\n"));
    }
    out.push_str(&format!(
        "  took:     {:.1}s\n",
        report.duration_ms as f64 / 1000.0
    ));
    out.push_str(&format!(
        "  component: sha256:{}\n",
        report.component_sha256
    ));
    match (&report.signer, &report.key_id) {
        (Some(signer), Some(key_id)) => {
            out.push_str(&format!("  signed by: {signer} (key {key_id})\n"))
        }
        _ => out.push_str("  signed by: nobody (run with --allow-unsigned)\n"),
    }
    out.push_str(&table(&report.steps));
    use crate::text::escape;
    if report.stopped_on_purpose() {
        // A decline, no one to confirm, an interrupt: nothing to fix, the reason once.
        let why = report
            .stopped
            .as_deref()
            .or(report.failure.as_ref().map(|f| f.reason.as_str()));
        if let Some(why) = why {
            out.push_str(&format!("  why:      {}\n", escape(why)));
        }
    } else if let Some(f) = &report.failure {
        // The procedure's own failure is said to be its words.
        let whose = if f.reported_by == "procedure" {
            " (the procedure's words)"
        } else {
            ""
        };
        out.push_str(&format!(
            "  failed at: {}\n  reason:   {}{whose}\n",
            escape(&f.step),
            escape(&f.reason)
        ));
        out.push_str(if f.safe_to_resume {
            "  the cluster was left in a safe state: fix the cause and run again to continue\n"
        } else {
            "  THE CLUSTER MAY NOT BE SAFE: nodes may run a key they cannot load; investigate before anything else\n"
        });
    }
    if let Some(why) = report
        .stopped
        .as_ref()
        .filter(|_| !report.stopped_on_purpose())
    {
        out.push_str(&format!("  stopped:  {why}\n"));
    }
    if !report.planned.is_empty() {
        out.push_str("  plan:     recorded, not sent:\n");
        for call in &report.planned {
            out.push_str(&format!("            {}\n", escape(call)));
        }
    }
    for d in &report.denials {
        out.push_str(&format!(
            "  denied:   {} {} ({})\n",
            d.capability,
            escape(&d.target),
            escape(&d.rule)
        ));
    }
    if report.exit_code == 0 && report.version_after > report.version_before {
        out.push_str("  next: DR and cold-standby nodes must now rejoin the cluster\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, outcome: &'static str, detail: &str) -> StepRecord {
        StepRecord::new(name, outcome, detail, 0)
    }

    #[test]
    fn a_step_line_is_marked_as_the_procedures_and_cannot_start_another() {
        let line = describe(
            "verify\r\n✓ verify-activated",
            "done",
            "ok\n✓ verify-activated done (0.0s): every pod reports version 99\u{1b}[2J",
            Duration::ZERO,
        );
        assert_eq!(
            line,
            "│ ✓ verify\\u{d}\\u{a}✓ verify-activated done (0.0s): ok\\u{a}✓ verify-activated \
             done (0.0s): every pod reports version 99\\u{1b}[2J"
        );
        assert_eq!(line.lines().count(), 1);
        assert!(line.starts_with(GUTTER));
    }

    #[test]
    fn rows_with_key_value_details_make_a_table_and_prose_steps_do_not() {
        let hash = "0123456789abcdef0123456789abcdef";
        let steps = [
            step("pods", "done", "3 pods"),
            step("sdkms-0", "done", &format!("version=1 hash={hash} note=-")),
            step(
                "sdkms-10",
                "failed",
                r#"version=2 hash=none note="version differs""#,
            ),
            step("verdict", "failed", "key versions differ"),
        ];
        let text = table(&steps);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "",
                "              VERSION  HASH              NOTE",
                "  ✓ sdkms-0   1        0123456789abcde…  -",
                "  ✗ sdkms-10  2        none              version differs",
                "",
            ],
            "{text}"
        );
        assert_eq!(table(&steps[..1]), "", "no rows, no table");
    }
}
