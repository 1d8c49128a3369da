//! A run's stop request (SIGINT, a lost Lease, a fleet's failure policy) and its
//! hold before the point of no return (`fleet --stop-before activate`): a leaf, so
//! the Lease keeper below the capabilities and the gate above them share one value.

use std::sync::{Arc, Mutex};

/// A request to stop the run at its next mutating call; the first reason wins.
///
/// A stop made with [`Stop::child`] also stops when its parent does (a fleet stops
/// every cluster; one cluster's lost Lease stops only that cluster).
#[derive(Debug, Clone, Default)]
pub struct Stop {
    own: Arc<Mutex<Option<String>>>,
    parent: Option<Box<Stop>>,
    hold: Arc<Mutex<Option<Hold>>>,
}

/// The run goes up to the point of no return and no further: every confirmation is
/// answered no, and the requests named in `calls` are refused, whatever the
/// component does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// What the run stops before, as the operator wrote it (`activate`).
    pub before: String,
    /// The refused requests, as `METHOD /path` (`POST /cluster/v1/key/activate`).
    pub calls: Vec<String>,
    /// What the component and the report are told.
    pub reason: String,
    /// Set when the hold refused something: the run did reach the point of no return.
    pub reached: bool,
}

impl Stop {
    pub fn request(&self, why: impl Into<String>) {
        let mut reason = self.own.lock().expect("stop lock");
        if reason.is_none() {
            *reason = Some(why.into());
        }
    }

    pub fn reason(&self) -> Option<String> {
        let own = self.own.lock().expect("stop lock").clone();
        own.or_else(|| self.parent.as_ref().and_then(|p| p.reason()))
    }

    /// A stop of its own that also follows this one's requests (not its hold).
    pub fn child(&self) -> Stop {
        Stop {
            own: Arc::default(),
            parent: Some(Box::new(self.clone())),
            hold: Arc::default(),
        }
    }

    /// From now on, the run stops before `before`, refusing `calls` (`METHOD /path`).
    pub fn hold_before(&self, before: &str, calls: &[&str]) {
        *self.hold.lock().expect("hold lock") = Some(Hold {
            before: before.to_string(),
            calls: calls.iter().map(|c| c.to_string()).collect(),
            reason: format!("stopped before {before} (--stop-before {before})"),
            reached: false,
        });
    }

    /// The hold, if any (and whether it refused something).
    pub fn hold(&self) -> Option<Hold> {
        self.hold.lock().expect("hold lock").clone()
    }

    /// `Some(reason)` when the hold refuses `call` (`POST https://ip:port/path`):
    /// its method and its path, percent-decoded and with empty and `.` segments
    /// removed, match a held call. Recorded as reached.
    pub fn held(&self, call: &str) -> Option<String> {
        let mut hold = self.hold.lock().expect("hold lock");
        let hold = hold.as_mut()?;
        let (method, url) = call.split_once(' ')?;
        let path = normal_path(url);
        let refused = hold.calls.iter().any(|held| {
            held.split_once(' ')
                .is_some_and(|(m, p)| m.eq_ignore_ascii_case(method) && normal_path(p) == path)
        });
        refused.then(|| {
            hold.reached = true;
            hold.reason.clone()
        })
    }

    /// `Some(reason)` when confirmations are withheld (a hold is set). Recorded as
    /// reached: the procedure asked to cross the point of no return.
    pub fn withheld(&self) -> Option<String> {
        let mut hold = self.hold.lock().expect("hold lock");
        let hold = hold.as_mut()?;
        hold.reached = true;
        Some(hold.reason.clone())
    }
}

/// The path of `url` (or `url` itself when it is a path) as a server would route
/// it: percent-decoded, without query, fragment, empty or `.` segments; `..`
/// removes the segment before it.
fn normal_path(url: &str) -> String {
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => url,
    };
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path);
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/")).to_ascii_lowercase()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_follows_its_parent_but_not_the_other_way() {
        let fleet = Stop::default();
        let a = fleet.child();
        let b = fleet.child();
        a.request("lease lost");
        assert_eq!(a.reason().as_deref(), Some("lease lost"));
        assert_eq!(b.reason(), None);
        assert_eq!(fleet.reason(), None);
        fleet.request("2 clusters failed");
        assert_eq!(b.reason().as_deref(), Some("2 clusters failed"));
        assert_eq!(
            a.reason().as_deref(),
            Some("lease lost"),
            "first reason wins"
        );
    }

    #[test]
    fn the_hold_refuses_every_spelling_of_the_held_call_and_only_it() {
        let stop = Stop::default();
        assert_eq!(
            stop.held("POST https://1.2.3.4:4444/cluster/v1/key/activate"),
            None
        );
        stop.hold_before("activate", &["POST /cluster/v1/key/activate"]);
        for call in [
            "POST https://1.2.3.4:4444/cluster/v1/key/activate",
            "post https://1.2.3.4:4444/cluster/v1/key/activate/",
            "POST https://1.2.3.4:4444/cluster//v1/./key/activate?x=1",
            "POST https://1.2.3.4:4444/cluster/v1/key/x/../%61ctivate",
            "POST https://1.2.3.4:4444/cluster/v1/key/ACTIVATE",
        ] {
            assert_eq!(
                stop.held(call).as_deref(),
                Some("stopped before activate (--stop-before activate)"),
                "{call}"
            );
        }
        for call in [
            "POST https://1.2.3.4:4444/cluster/v1/key/propose",
            "GET https://1.2.3.4:4444/cluster/v1/key/activate",
            "rolling-restart",
        ] {
            assert_eq!(stop.held(call), None, "{call}");
        }
        assert!(stop.hold().unwrap().reached);
    }

    #[test]
    fn withholding_a_confirmation_marks_the_hold_reached() {
        let stop = Stop::default();
        assert_eq!(stop.withheld(), None);
        stop.hold_before("activate", &[]);
        assert!(!stop.hold().unwrap().reached);
        assert!(stop.withheld().is_some());
        assert!(stop.hold().unwrap().reached);
    }
}
