//! The judgement, pure: given what every pod reported, which pods disagree with the
//! others and why, in sentences that name them; and each pod's row as `key=value`
//! text.
//!
//! Disagreement is judged per field (the key version, the fetched proposal hash):
//! the pods are grouped by value; with more than one group, the largest group (if it
//! is strictly the largest) is the reference and every pod outside it is flagged;
//! with a tie there is no reference and every pod is flagged. A pod that holds no
//! proposal while others hold one disagrees with them: activating then would leave
//! it unable to load the new key.

use guest_kit::status::KeyStatus;

/// What one pod reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub pod: String,
    pub ready: bool,
    pub phase: String,
    /// The parsed status, or why there is none (no IP, an http error, a bad body).
    pub status: Result<KeyStatus, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Per row, in the rows' order: why that pod is flagged (empty: it is fine).
    pub notes: Vec<Vec<String>>,
    /// One sentence per problem, naming the pods.
    pub problems: Vec<String>,
    /// The version every pod reports, when all were read and agree on it.
    pub version: Option<i64>,
}

impl Verdict {
    pub fn all_agree(&self) -> bool {
        self.problems.is_empty()
    }
}

/// How a hash is shown in sentences; rows carry it whole.
fn short(hash: &Option<String>) -> String {
    match hash {
        None => "none".into(),
        Some(h) if h.chars().count() > 16 => format!("{}…", h.chars().take(16).collect::<String>()),
        Some(h) => h.clone(),
    }
}

/// Groups `values` (row index, value), largest group first, then by value.
fn groups<T: Ord + Clone>(values: &[(usize, T)]) -> Vec<(T, Vec<usize>)> {
    let mut groups: Vec<(T, Vec<usize>)> = Vec::new();
    for (i, v) in values {
        match groups.iter_mut().find(|(g, _)| g == v) {
            Some((_, members)) => members.push(*i),
            None => groups.push((v.clone(), vec![*i])),
        }
    }
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
    groups
}

/// Flags the pods outside the majority of `values` with `note`; returns the sentence
/// describing the split, or `None` when all agree.
fn split<T: Ord + Clone>(
    rows: &[Row],
    values: &[(usize, T)],
    what: &str,
    note: &str,
    show: impl Fn(&T) -> String,
    notes: &mut [Vec<String>],
) -> Option<String> {
    let groups = groups(values);
    if groups.len() < 2 {
        return None;
    }
    let majority = groups[0].1.len() > groups[1].1.len();
    let flagged = groups.iter().skip(if majority { 1 } else { 0 });
    for (_, members) in flagged {
        for &i in members {
            notes[i].push(note.to_string());
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(v, members)| {
            let pods: Vec<&str> = members.iter().map(|&i| rows[i].pod.as_str()).collect();
            format!("{} on {}", show(v), pods.join(", "))
        })
        .collect();
    let tail = if majority { "" } else { " (no majority)" };
    Some(format!("{what} differ: {}{tail}", parts.join("; ")))
}

pub fn judge(rows: &[Row]) -> Verdict {
    let mut notes = vec![Vec::new(); rows.len()];
    let mut problems = Vec::new();
    if rows.is_empty() {
        problems.push("no pods match the site's selector".to_string());
    }

    let unread: Vec<String> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let e = r.status.as_ref().err()?;
            notes[i].push(format!("unread: {e}"));
            Some(format!("{} ({e})", r.pod))
        })
        .collect();
    if !unread.is_empty() {
        problems.push(format!("could not be read: {}", unread.join(", ")));
    }

    let not_ready: Vec<String> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.ready)
        .map(|(i, r)| {
            notes[i].push("not ready".into());
            format!("{} (phase {})", r.pod, r.phase)
        })
        .collect();
    if !not_ready.is_empty() {
        problems.push(format!("not Ready: {}", not_ready.join(", ")));
    }

    let read: Vec<(usize, &KeyStatus)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r.status.as_ref().ok()?)))
        .collect();
    let versions: Vec<(usize, i64)> = read.iter().map(|(i, s)| (*i, s.version)).collect();
    let hashes: Vec<(usize, Option<String>)> =
        read.iter().map(|(i, s)| (*i, s.hash.clone())).collect();
    let version_split = split(
        rows,
        &versions,
        "key versions",
        "version differs",
        |v| format!("version {v}"),
        &mut notes,
    );
    let hash_split = split(
        rows,
        &hashes,
        "proposal hashes",
        "hash differs",
        short,
        &mut notes,
    );
    let version = match (&version_split, unread.is_empty(), versions.first()) {
        (None, true, Some((_, v))) => Some(*v),
        _ => None,
    };
    problems.extend(version_split);
    problems.extend(hash_split);
    Verdict {
        notes,
        problems,
        version,
    }
}

/// The row of `row` as `key=value` pairs: `version`, `hash` (`none`: no proposal;
/// `?`: not read), `ready`, `phase`, `note` (`-`: nothing to say).
pub fn row_detail(row: &Row, notes: &[String]) -> String {
    let (version, hash) = match &row.status {
        Ok(s) => (
            s.version.to_string(),
            s.hash.clone().unwrap_or_else(|| "none".into()),
        ),
        Err(_) => ("?".into(), "?".into()),
    };
    let note = if notes.is_empty() {
        "-".to_string()
    } else {
        notes.join("; ")
    };
    [
        ("version", version),
        ("hash", hash),
        ("ready", row.ready.to_string()),
        ("phase", row.phase.clone()),
        ("note", note),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", value(v)))
    .collect::<Vec<_>>()
    .join(" ")
}

/// A `key=value` value: bare when it can be, else double-quoted with `\"` and `\\`.
fn value(v: &str) -> String {
    let bare = !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\' || c == '=');
    if bare {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pod: &str, version: i64, hash: Option<&str>) -> Row {
        Row {
            pod: pod.into(),
            ready: true,
            phase: "Running".into(),
            status: Ok(KeyStatus {
                version,
                hash: hash.map(str::to_string),
            }),
        }
    }

    #[test]
    fn all_agree() {
        let rows = [
            row("sdkms-0", 1, None),
            row("sdkms-1", 1, None),
            row("sdkms-2", 1, None),
        ];
        let v = judge(&rows);
        assert!(v.all_agree(), "{v:?}");
        assert_eq!(v.version, Some(1));
        assert!(v.notes.iter().all(Vec::is_empty));
    }

    #[test]
    fn a_diverging_hash_flags_that_pod_only() {
        let rows = [
            row("sdkms-0", 1, Some("aaaa")),
            row("sdkms-1", 1, Some("aaaa")),
            row("sdkms-2", 1, Some("bbbb")),
        ];
        let v = judge(&rows);
        assert_eq!(
            v.problems,
            ["proposal hashes differ: aaaa on sdkms-0, sdkms-1; bbbb on sdkms-2"]
        );
        assert_eq!(v.notes[2], ["hash differs"]);
        assert!(v.notes[0].is_empty() && v.notes[1].is_empty());
        assert_eq!(v.version, Some(1), "the versions still agree");
    }

    #[test]
    fn a_pod_without_the_proposal_disagrees() {
        let long = "0123456789abcdef0123456789abcdef";
        let rows = [
            row("sdkms-0", 1, Some(long)),
            row("sdkms-1", 1, None),
            row("sdkms-2", 1, Some(long)),
        ];
        let v = judge(&rows);
        assert_eq!(
            v.problems,
            ["proposal hashes differ: 0123456789abcdef… on sdkms-0, sdkms-2; none on sdkms-1"]
        );
        assert_eq!(v.notes[1], ["hash differs"]);
    }

    #[test]
    fn versions_differ_and_a_tie_flags_everyone() {
        let rows = [row("sdkms-0", 2, None), row("sdkms-1", 1, None)];
        let v = judge(&rows);
        assert_eq!(
            v.problems,
            ["key versions differ: version 1 on sdkms-1; version 2 on sdkms-0 (no majority)"]
        );
        assert_eq!(v.notes, [vec!["version differs"], vec!["version differs"]]);
        assert_eq!(v.version, None);
    }

    #[test]
    fn unread_and_not_ready_pods_are_problems() {
        let mut pending = row("sdkms-1", 1, None);
        pending.ready = false;
        pending.phase = "Pending".into();
        pending.status = Err("no IP yet".into());
        let mut warming = row("sdkms-2", 1, None);
        warming.ready = false;
        let rows = [row("sdkms-0", 1, None), pending, warming];
        let v = judge(&rows);
        assert_eq!(
            v.problems,
            [
                "could not be read: sdkms-1 (no IP yet)",
                "not Ready: sdkms-1 (phase Pending), sdkms-2 (phase Running)"
            ]
        );
        assert_eq!(v.notes[1], ["unread: no IP yet", "not ready"]);
        assert_eq!(v.notes[2], ["not ready"]);
        assert_eq!(v.version, None, "not every pod was read");
    }

    #[test]
    fn no_pods_is_a_problem() {
        let v = judge(&[]);
        assert!(!v.all_agree());
        assert_eq!(v.version, None);
    }

    #[test]
    fn rows_are_key_value_pairs_quoted_when_needed() {
        let r = row("sdkms-0", 3, Some("abc"));
        assert_eq!(
            row_detail(&r, &[]),
            "version=3 hash=abc ready=true phase=Running note=-"
        );
        let mut r = row("sdkms-1", 1, None);
        r.status = Err("status 503: \"warming\"".into());
        assert_eq!(
            row_detail(&r, &["unread: x".into(), "not ready".into()]),
            r#"version=? hash=? ready=true phase=Running note="unread: x; not ready""#
        );
        assert_eq!(value(r#"a\b"#), r#""a\\b""#);
        assert_eq!(value(""), r#""""#);
        assert_eq!(value("a=b"), r#""a=b""#);
    }
}
