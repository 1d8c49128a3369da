//! What the rotation writes in the host's journal, and how it completes what the
//! pods report. The pods' status (version, fetched hash) cannot tell "distributed"
//! from "restarted after distribution", nor "activate sent" from "loaded": the
//! journal records those facts, each keyed by the proposal's hash and the version it
//! started from, so an entry about another proposal is never believed.
//!
//! The record is written *after* a step's verification passed, except `activating`,
//! which is written *before* the activate request leaves (it may land even if the
//! host dies before the answer).

use crate::logic::{self, Baseline, Phase};
use crate::params::Params;
use guest_kit::status::KeyStatus;

/// `<stage> <from-version> <hash>`: the rotation in progress. One key, so that one
/// atomic write of the host changes all three together.
pub const ROTATION: &str = "rotation";
/// `<version> <hash>`: the last completed rotation.
pub const DONE: &str = "done";

/// How far the rotation of one proposal got, as far as the pods cannot show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Proposed (or adopted) and being distributed.
    Distributing,
    /// A rolling restart completed after every pod held the hash, and verified.
    Loaded,
    /// `activate` may have been sent (written before sending).
    Activating,
    /// `activate` was answered 2xx.
    Activated,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Distributing => "distributing",
            Stage::Loaded => "loaded",
            Stage::Activating => "activating",
            Stage::Activated => "activated",
        }
    }

    fn parse(s: &str) -> Option<Stage> {
        [
            Stage::Distributing,
            Stage::Loaded,
            Stage::Activating,
            Stage::Activated,
        ]
        .into_iter()
        .find(|stage| stage.name() == s)
    }
}

/// The rotation in progress, as journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProgress {
    pub stage: Stage,
    pub hash: String,
    pub from: i64,
}

/// The journal's content, as the rotation reads it. Unreadable entries are ignored
/// (and reported by [`Record::parse`]): the pods' state stays the first authority.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub rotation: Option<InProgress>,
    /// The last completed rotation: (version reached, hash activated).
    pub done: Option<(i64, String)>,
}

impl Record {
    /// The record, and a warning when some entries could not be read.
    pub fn parse(entries: &[(String, String)]) -> (Record, Option<String>) {
        let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let mut warning = None;
        let rotation = get(ROTATION).and_then(|v| {
            let parsed = InProgress::parse(v);
            if parsed.is_none() {
                warning = Some(format!(
                    "the journal's `{ROTATION}` entry is not readable ({v:?}): ignored"
                ));
            }
            parsed
        });
        let done = get(DONE).and_then(|v| {
            let (version, hash) = v.split_once(' ')?;
            Some((version.parse().ok()?, hash.to_string()))
        });
        (Record { rotation, done }, warning)
    }
}

impl InProgress {
    /// The journal value: `<stage> <from> <hash>`.
    pub fn value(&self) -> String {
        format!("{} {} {}", self.stage.name(), self.from, self.hash)
    }

    fn parse(v: &str) -> Option<InProgress> {
        let mut parts = v.splitn(3, ' ');
        let stage = Stage::parse(parts.next()?)?;
        let from = parts.next()?.parse().ok()?;
        let hash = parts.next().filter(|h| !h.is_empty())?.to_string();
        Some(InProgress { stage, hash, from })
    }
}

/// The journal value of a completed rotation: `<version> <hash>`.
pub fn done_value(version: i64, hash: &str) -> String {
    format!("{version} {hash}")
}

/// Where the rotation stands, from what every pod reports and what the journal
/// records. The pods decide; the journal only tells apart what they cannot.
pub fn reconcile(
    observed: &[(String, KeyStatus)],
    record: &Record,
    params: &Params,
) -> Result<Baseline, String> {
    if let Some(r) = &record.rotation
        && matches!(r.stage, Stage::Activating | Stage::Activated)
    {
        return activating(observed, r, params);
    }
    let mut baseline = logic::baseline(observed, params)?;
    match (&baseline.phase, &record.rotation, &record.done) {
        (Phase::Proposed { hash, missing, .. }, Some(r), _)
            if missing.is_empty()
                && r.stage == Stage::Loaded
                && r.hash == *hash
                && r.from == baseline.version =>
        {
            baseline.phase = Phase::Loaded { hash: hash.clone() };
        }
        (Phase::NothingProposed, _, Some((version, hash)))
            if *version == baseline.version && !params.new_rotation =>
        {
            baseline.phase = Phase::Rotated { hash: hash.clone() };
        }
        _ => {}
    }
    Ok(baseline)
}

/// The journal says `activate` may have been sent: every pod must report either the
/// old version holding the hash (not restarted since), or the new version.
fn activating(
    observed: &[(String, KeyStatus)],
    r: &InProgress,
    params: &Params,
) -> Result<Baseline, String> {
    let next = r.from + 1;
    let odd: Vec<String> = observed
        .iter()
        .filter(|(_, s)| {
            let before = s.version == r.from && s.hash.as_deref() == Some(r.hash.as_str());
            !(before || s.version == next)
        })
        .map(|(n, s)| {
            format!(
                "{n} reports {} {} and {} {}",
                params.common.version_field,
                s.version,
                params.common.hash_field,
                s.hash
                    .as_deref()
                    .map_or("none".into(), |h| format!("{h:?}"))
            )
        })
        .collect();
    if !odd.is_empty() {
        return Err(format!(
            "the journal records that activation of proposal {:?} from {} {} was under way, \
             but not every pod is on either side of it: {}. Resolve by hand before anything else",
            r.hash,
            params.common.version_field,
            r.from,
            odd.join("; ")
        ));
    }
    Ok(Baseline {
        version: r.from,
        phase: Phase::Activating {
            hash: r.hash.clone(),
            sent: r.stage == Stage::Activated,
            restarted: observed.iter().all(|(_, s)| s.version == next),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_kit::types::owned_pairs as kv;

    fn st(version: i64, hash: Option<&str>) -> KeyStatus {
        KeyStatus {
            version,
            hash: hash.map(str::to_string),
        }
    }

    fn obs(list: &[(&str, KeyStatus)]) -> Vec<(String, KeyStatus)> {
        list.iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect()
    }

    fn rec(stage: Stage, hash: &str, from: i64) -> Record {
        Record {
            rotation: Some(InProgress {
                stage,
                hash: hash.into(),
                from,
            }),
            done: None,
        }
    }

    #[test]
    fn parses_what_it_writes_and_ignores_the_unreadable() {
        let r = rec(Stage::Loaded, "h h", 1).rotation.unwrap();
        let (back, w) = Record::parse(&kv(&[(ROTATION, &r.value()), (DONE, &done_value(1, "g"))]));
        assert_eq!(w, None);
        assert_eq!(back.rotation, Some(r));
        assert_eq!(back.done, Some((1, "g".into())));
        for bad in ["weird 1 h", "loaded x h", "loaded 1", "loaded 1 "] {
            let (r, w) = Record::parse(&kv(&[(ROTATION, bad)]));
            assert_eq!(r.rotation, None, "{bad}");
            assert!(w.unwrap().contains("not readable"), "{bad}");
        }
    }

    #[test]
    fn loaded_only_when_every_pod_holds_the_journaled_hash_at_its_version() {
        let p = Params::default();
        let all = obs(&[("a", st(1, Some("h"))), ("b", st(1, Some("h")))]);
        let b = reconcile(&all, &rec(Stage::Loaded, "h", 1), &p).unwrap();
        assert_eq!(b.phase, Phase::Loaded { hash: "h".into() });
        // Another proposal than the journaled one: the journal is not believed.
        let b = reconcile(&all, &rec(Stage::Loaded, "other", 1), &p).unwrap();
        assert!(matches!(b.phase, Phase::Proposed { .. }), "{b:?}");
        // Distributing is not loaded.
        let b = reconcile(&all, &rec(Stage::Distributing, "h", 1), &p).unwrap();
        assert!(matches!(b.phase, Phase::Proposed { .. }), "{b:?}");
        // A pod without the hash (e.g. scaled up since): not loaded.
        let some = obs(&[("a", st(1, Some("h"))), ("b", st(1, None))]);
        let b = reconcile(&some, &rec(Stage::Loaded, "h", 1), &p).unwrap();
        assert!(matches!(b.phase, Phase::Proposed { .. }), "{b:?}");
    }

    #[test]
    fn activation_under_way_accepts_both_sides_and_nothing_else() {
        let p = Params::default();
        let mixed = obs(&[("a", st(2, None)), ("b", st(1, Some("h")))]);
        let b = reconcile(&mixed, &rec(Stage::Activating, "h", 1), &p).unwrap();
        assert_eq!(b.version, 1);
        assert_eq!(
            b.phase,
            Phase::Activating {
                hash: "h".into(),
                sent: false,
                restarted: false
            }
        );
        let all = obs(&[("a", st(2, None)), ("b", st(2, None))]);
        let b = reconcile(&all, &rec(Stage::Activated, "h", 1), &p).unwrap();
        assert_eq!(
            b.phase,
            Phase::Activating {
                hash: "h".into(),
                sent: true,
                restarted: true
            }
        );
        let odd = obs(&[("a", st(2, None)), ("b", st(1, Some("x")))]);
        let e = reconcile(&odd, &rec(Stage::Activating, "h", 1), &p).unwrap_err();
        assert!(
            e.contains(r#"b reports version 1 and fetched_proposal_hash "x""#),
            "{e}"
        );
    }

    #[test]
    fn a_completed_rotation_is_not_repeated_unless_asked() {
        let mut p = Params::default();
        let all = obs(&[("a", st(2, None)), ("b", st(2, None))]);
        let r = Record {
            rotation: None,
            done: Some((2, "h".into())),
        };
        let b = reconcile(&all, &r, &p).unwrap();
        assert_eq!(b.phase, Phase::Rotated { hash: "h".into() });
        p.new_rotation = true;
        assert_eq!(
            reconcile(&all, &r, &p).unwrap().phase,
            Phase::NothingProposed
        );
        // Done at another version (e.g. another cluster of the same name): ignored.
        let r = Record {
            rotation: None,
            done: Some((5, "h".into())),
        };
        let b = reconcile(&all, &r, &Params::default()).unwrap();
        assert_eq!(b.phase, Phase::NothingProposed);
    }
}
