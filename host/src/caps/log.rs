//! `log`: the procedure's structured log lines and step progress.
//!
//! Log lines become `tracing` events (target `guest`), so they go wherever the
//! host's subscriber sends them. Steps go to the run's [`Progress`] (the terminal's
//! spinners, or plain lines) and are kept for the report.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Denials;
use crate::text::ComponentText;
use crate::wit::cmk::procedure::log::{Host, Level};
use crate::wit::cmk::procedure::types::Outcome;

/// Where step progress goes. The names and details are the component's words,
/// already escaped ([`ComponentText`]); the terminal marks their lines as the
/// procedure's (`ui::GUTTER`).
pub trait Progress: Send + Sync {
    fn step_begin(&self, name: &str, detail: &str);
    fn step_end(&self, name: &str, outcome: &str, detail: &str, elapsed: Duration);
}

/// A step as the host saw it (begin and end), for the report. Its name and detail
/// are the component's words, escaped and bounded ([`ComponentText`]).
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub name: ComponentText,
    pub outcome: &'static str,
    pub detail: ComponentText,
    pub duration_ms: u64,
    /// The detail's `key=value` pairs, when it is written that way (see [`Fields`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Fields>,
}

impl StepRecord {
    /// From the component's raw `name` and `detail`: escaped and bounded here, the
    /// detail's pairs read before (so the escaping of the pairs is the table's).
    pub fn new(name: &str, outcome: &'static str, detail: &str, duration_ms: u64) -> Self {
        let fields = Fields::parse(detail).map(|f| {
            Fields(
                f.0.into_iter()
                    .map(|(k, v)| {
                        (
                            ComponentText::new(&k).into_string(),
                            ComponentText::new(&v).into_string(),
                        )
                    })
                    .collect(),
            )
        });
        StepRecord {
            name: ComponentText::new(name),
            outcome,
            detail: ComponentText::new(detail),
            duration_ms,
            fields,
        }
    }
}

/// A step detail written as `key=value` pairs separated by spaces, each value bare
/// (no space, quote, backslash or `=`) or double-quoted with `\"` and `\\` escapes:
/// `version=1 hash=none note="hash differs"`. Procedures that report rows (one step
/// per pod, as `guest-status` does) write their details so; the summary shows those
/// steps as a table and `--json` carries the pairs as an object, in their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// `None` unless the whole detail is pairs (prose details stay prose).
    pub fn parse(detail: &str) -> Option<Fields> {
        let mut pairs = Vec::new();
        let mut rest = detail.trim_start();
        while !rest.is_empty() {
            let eq = rest.find('=')?;
            let key = &rest[..eq];
            let key_ok = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            if !key_ok {
                return None;
            }
            rest = &rest[eq + 1..];
            let value;
            if let Some(quoted) = rest.strip_prefix('"') {
                let mut v = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        '\\' => v.push(chars.next()?.1),
                        c => v.push(c),
                    }
                }
                value = v;
                rest = &quoted[end?..];
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                value = rest[..end].to_string();
                if value.is_empty() || value.contains(['"', '\\', '=']) {
                    return None;
                }
                rest = &rest[end..];
            }
            if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
                return None;
            }
            pairs.push((key.to_string(), value));
            rest = rest.trim_start();
        }
        (!pairs.is_empty()).then_some(Fields(pairs))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The `log` capability of one run.
pub struct LogCap {
    progress: Arc<dyn Progress>,
    /// Decides every call (the grant); without it, lines and steps are dropped and
    /// only the first denial is recorded.
    gate: crate::caps::gate::Gate,
    denials: Denials,
    denied_once: bool,
    started: HashMap<String, Instant>,
    steps: Vec<StepRecord>,
    audit: crate::audit::Audit,
    /// A hook's name: its lines are prefixed with it, and it reports no steps.
    hook: Option<String>,
}

impl LogCap {
    pub fn new(
        progress: Arc<dyn Progress>,
        gate: crate::caps::gate::Gate,
        denials: Denials,
    ) -> Self {
        LogCap {
            progress,
            gate,
            denials,
            denied_once: false,
            started: HashMap::new(),
            steps: Vec::new(),
            audit: crate::audit::Audit::default(),
            hook: None,
        }
    }

    /// The log of the hook `name`: lines say which hook wrote them; steps belong to
    /// the procedure, so a hook's `step-begin` and `step-end` are denied.
    pub fn for_hook(mut self, name: &str) -> Self {
        self.hook = Some(name.to_string());
        self
    }

    /// Every step's end is recorded in `audit`.
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = audit;
        self
    }

    pub fn steps(&self) -> &[StepRecord] {
        &self.steps
    }

    /// Whether the gate lets the call go on. A grant cannot change during a run, so
    /// after the first denial (recorded by the gate) later calls are dropped silently.
    async fn permitted(&mut self, function: &'static str) -> bool {
        if self.denied_once {
            return false;
        }
        let call = crate::caps::gate::Call::Plain {
            interface: "log",
            function,
            target: function,
        };
        match self.gate.decide(call).await {
            Ok(_) => true,
            Err(_) => {
                self.denied_once = true;
                false
            }
        }
    }
}

pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Done => "done",
        Outcome::Skipped => "skipped",
        Outcome::Planned => "planned",
        Outcome::Failed => "failed",
        Outcome::Refused => "refused",
    }
}

fn cut(s: String) -> String {
    ComponentText::new(&s).into_string()
}

impl crate::wit::cmk::procedure::types::Host for LogCap {}

impl Host for LogCap {
    async fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        if !self.permitted("log").await {
            return;
        }
        // Attributed: a guest's line never reads as the host's own.
        let message = match &self.hook {
            Some(hook) => format!("{hook}: {}", cut(message)),
            None => format!("procedure: {}", cut(message)),
        };
        let fields: String = fields
            .into_iter()
            .take(32)
            .map(|(k, v)| format!(" {}={}", cut(k), cut(v)))
            .collect();
        match level {
            Level::Trace => tracing::trace!(target: "guest", "{message}{fields}"),
            Level::Debug => tracing::debug!(target: "guest", "{message}{fields}"),
            Level::Info => tracing::info!(target: "guest", "{message}{fields}"),
            Level::Warn => tracing::warn!(target: "guest", "{message}{fields}"),
            Level::Error => tracing::error!(target: "guest", "{message}{fields}"),
        }
    }

    async fn step_begin(&mut self, name: String, detail: String) {
        if !self.permitted("step-begin").await {
            return;
        }
        if let Some(hook) = &self.hook {
            self.denials.deny(
                "log",
                format!("{hook} step-begin"),
                "a hook reports no steps",
            );
            return;
        }
        let (name, detail) = (ComponentText::new(&name), ComponentText::new(&detail));
        self.started.insert(name.to_string(), Instant::now());
        self.progress.step_begin(&name, &detail);
    }

    async fn step_end(&mut self, name: String, outcome: Outcome, detail: String) {
        if !self.permitted("step-end").await {
            return;
        }
        if let Some(hook) = &self.hook {
            self.denials
                .deny("log", format!("{hook} step-end"), "a hook reports no steps");
            return;
        }
        let elapsed = self
            .started
            .remove(ComponentText::new(&name).as_str())
            .map(|t| t.elapsed())
            .unwrap_or(Duration::ZERO);
        let outcome = outcome_name(outcome);
        let step = StepRecord::new(&name, outcome, &detail, elapsed.as_millis() as u64);
        self.progress
            .step_end(&step.name, outcome, &step.detail, elapsed);
        self.audit.record(crate::audit::Entry {
            kind: "step",
            capability: "log",
            target: &step.name,
            outcome,
            duration_ms: step.duration_ms,
            detail: Some(step.detail.to_string()),
            body: None,
        });
        if self.steps.len() < 1024 {
            self.steps.push(step);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(detail: &str) -> Option<Vec<(String, String)>> {
        Fields::parse(detail).map(|f| f.0)
    }

    fn owned(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn key_value_details_become_fields_in_order() {
        assert_eq!(
            pairs(r#"version=1 hash=none note="hash differs; \"x\" \\ y" ready=true"#),
            owned(&[
                ("version", "1"),
                ("hash", "none"),
                ("note", r#"hash differs; "x" \ y"#),
                ("ready", "true"),
            ])
        );
        assert_eq!(pairs(r#"empty="""#), owned(&[("empty", "")]));
        let json = serde_json::to_string(&Fields::parse("b=2 a=1").unwrap()).unwrap();
        assert_eq!(json, r#"{"b":"2","a":"1"}"#, "keeps the order");
    }

    #[test]
    fn prose_stays_prose() {
        for detail in [
            "",
            "3 pods",
            "proposed on sdkms-0 (hash=abc)",
            "the hash is abc=1",
            "a=b=c",
            "=x",
            r#"a="unterminated"#,
            r#"a="x"b"#,
            "all 3 pods agree: version 1, no proposal",
        ] {
            assert_eq!(Fields::parse(detail), None, "{detail:?}");
        }
    }
}
