//! `--events FILE`: one JSON object per line for every step and capability event
//! of a run, written as it happens (in the spirit of cargo's
//! `--message-format=json`), for tools that follow a run. The schema is in
//! `docs/json.md`.
//!
//! A leaf: the audit trail tees each record here as it appends it, the terminal's
//! progress sink its step starts, and the launch pipeline the closing document.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Where events go; the default goes nowhere. Cheap to clone, shared by a run (or
/// by every cluster of a fleet, each tagging its events with its name).
#[derive(Clone, Default)]
pub struct Events {
    sink: Option<Arc<Mutex<Box<dyn Write + Send>>>>,
    /// A fleet's cluster: every event of this handle says `"cluster": name`.
    cluster: Option<Arc<str>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.sink.is_some() {
            "Events(on)"
        } else {
            "Events(off)"
        })
    }
}

impl Events {
    /// `-` is standard error; anything else a file, created or truncated.
    pub fn open(target: &Path) -> std::io::Result<Events> {
        let sink: Box<dyn Write + Send> = if target == Path::new("-") {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::fs::File::create(target)?)
        };
        Ok(Events {
            sink: Some(Arc::new(Mutex::new(sink))),
            cluster: None,
        })
    }

    /// An in-memory sink, for tests.
    pub fn to_writer(sink: impl Write + Send + 'static) -> Events {
        Events {
            sink: Some(Arc::new(Mutex::new(Box::new(sink)))),
            cluster: None,
        }
    }

    /// The same stream, every event of which names `cluster` (the host's name for
    /// it, from the site file), for the clusters of one fleet.
    pub fn for_cluster(&self, cluster: &str) -> Events {
        Events {
            sink: self.sink.clone(),
            cluster: Some(cluster.into()),
        }
    }

    pub fn is_on(&self) -> bool {
        self.sink.is_some()
    }

    /// Writes `event` (an object with an `event` field) as one line and flushes
    /// it, so a follower sees it at once. A write error drops the event: the run
    /// never fails for a follower.
    pub fn emit(&self, event: &serde_json::Value) {
        let Some(sink) = &self.sink else { return };
        let Ok(line) = serde_json::to_string(event) else {
            return;
        };
        let mut sink = sink.lock().expect("events lock");
        let _ = writeln!(sink, "{line}").and_then(|()| sink.flush());
    }

    /// `fields` (a JSON object) with an `"event": kind` field added.
    pub fn emit_as(&self, kind: &str, fields: serde_json::Value) {
        if !self.is_on() {
            return;
        }
        let mut event = serde_json::Map::new();
        event.insert("event".into(), kind.into());
        if let serde_json::Value::Object(fields) = fields {
            for (k, v) in fields {
                if k != "event" {
                    event.insert(k, v);
                }
            }
        }
        if let Some(cluster) = &self.cluster {
            event.insert("cluster".into(), cluster.as_ref().into());
        }
        self.emit(&serde_json::Value::Object(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_event_is_one_line_with_its_kind_and_control_bytes_escaped() {
        let out = Shared::default();
        let events = Events::to_writer(out.clone());
        events.emit_as(
            "step-begin",
            serde_json::json!({ "name": "propose\n\u{1b}[2J", "event": "forged" }),
        );
        events.emit_as("report", serde_json::json!({ "outcome": "done" }));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["event"], "step-begin");
        assert_eq!(first["name"], "propose\n\u{1b}[2J");
    }

    #[test]
    fn a_clusters_events_name_it_whatever_their_fields_say() {
        let out = Shared::default();
        let fleet = Events::to_writer(out.clone());
        let a = fleet.for_cluster("eu");
        a.emit_as(
            "step-begin",
            serde_json::json!({ "name": "propose", "cluster": "us" }),
        );
        fleet.emit_as("report", serde_json::json!({ "outcome": "done" }));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["cluster"], "eu");
        assert!(lines[1].get("cluster").is_none(), "the fleet's own events");
    }

    #[test]
    fn off_writes_nothing() {
        let events = Events::default();
        assert!(!events.is_on());
        events.emit_as("report", serde_json::json!({}));
    }
}
