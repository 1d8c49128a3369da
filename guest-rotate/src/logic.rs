//! The procedure's decisions, as pure functions of what the pods report, and the
//! operator-facing messages that explain them. Every message names the pods and the
//! values at fault: the operator must be able to act on it without re-running anything.

use std::collections::BTreeMap;

use guest_kit::status::KeyStatus;
use guest_kit::types::Pod;

use crate::params::Params;

/// A pod that can be reached: Ready, with an IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub ip: String,
}

/// Where the rotation stands, as observed before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// No pod holds a proposal: the rotation starts with `propose`.
    NothingProposed,
    /// Some or all pods hold one common proposal (an interrupted earlier run): it is
    /// distributed from a holder, never proposed again.
    Proposed {
        hash: String,
        /// The pods that hold it, by name.
        holders: Vec<String>,
        /// The pods that do not hold it yet, by name.
        missing: Vec<String>,
    },
    /// Every pod holds `hash`, and the journal records that a rolling restart
    /// completed (and was verified) after they all did: next is `activate`.
    Loaded { hash: String },
    /// The journal records that `activate` of `hash` may have been sent (`sent`:
    /// it was answered 2xx). Pods report the old version holding `hash`, or the new
    /// one; `restarted`: every pod already runs the new version.
    Activating {
        hash: String,
        sent: bool,
        restarted: bool,
    },
    /// Nothing proposed, and the journal records a completed rotation to the
    /// version every pod runs: a rerun does not rotate again unless asked to.
    Rotated { hash: String },
}

/// What preflight established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    /// The key version every pod reports.
    pub version: i64,
    pub phase: Phase,
}

/// The pods to work on, sorted by name: there is at least one, and every one is
/// Ready with an IP. The error names the pods that are not.
pub fn ready_targets(pods: &[Pod]) -> Result<Vec<Target>, String> {
    if pods.is_empty() {
        return Err("no pods: the site's namespace and selector match none".into());
    }
    let mut sorted: Vec<&Pod> = pods.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let not_ready: Vec<String> = sorted
        .iter()
        .filter_map(|pod| match (&pod.ip, pod.ready) {
            (Some(ip), true) if !ip.is_empty() => None,
            (ip, ready) => {
                let mut why = Vec::new();
                if !ready {
                    why.push("not Ready".to_string());
                }
                if ip.as_deref().unwrap_or("").is_empty() {
                    why.push("no IP".to_string());
                }
                why.push(format!("phase {}", pod.phase));
                Some(format!("{} ({})", pod.name, why.join(", ")))
            }
        })
        .collect();
    if !not_ready.is_empty() {
        return Err(format!(
            "not every pod is Ready with an IP: {}",
            not_ready.join("; ")
        ));
    }
    Ok(sorted
        .into_iter()
        .map(|pod| Target {
            name: pod.name.clone(),
            ip: pod.ip.clone().unwrap_or_default(),
        })
        .collect())
}

/// Every Ready pod's key status, by name; the error names the pods that gave none.
pub fn observe(
    pods: &[Pod],
    statuses: &[(String, Result<KeyStatus, String>)],
) -> Result<Vec<(String, KeyStatus)>, String> {
    let targets = ready_targets(pods)?;
    let by_name: BTreeMap<&str, &Result<KeyStatus, String>> =
        statuses.iter().map(|(n, s)| (n.as_str(), s)).collect();

    let mut unanswered = Vec::new();
    let mut observed = Vec::new();
    for target in &targets {
        match by_name.get(target.name.as_str()) {
            Some(Ok(status)) => observed.push((target.name.clone(), status.clone())),
            Some(Err(why)) => unanswered.push(format!("{}: {why}", target.name)),
            None => unanswered.push(format!("{}: no answer", target.name)),
        }
    }
    if !unanswered.is_empty() {
        return Err(format!(
            "not every pod answered the key status call: {}",
            unanswered.join("; ")
        ));
    }
    Ok(observed)
}

/// The version and the phase that the pods' statuses alone show.
pub fn baseline(observed: &[(String, KeyStatus)], params: &Params) -> Result<Baseline, String> {
    let versions = group(observed.iter().map(|(n, s)| (s.version, n)));
    if versions.len() > 1 {
        return Err(format!(
            "pods disagree on {}: {}",
            params.common.version_field,
            render_groups(versions.iter(), |v| v.to_string())
        ));
    }
    let version = observed[0].1.version;

    let hashes = group(observed.iter().map(|(n, s)| (s.hash.clone(), n)));
    let held: Vec<&String> = hashes.keys().flatten().collect();
    let phase = match held.as_slice() {
        [] => Phase::NothingProposed,
        [hash] => Phase::Proposed {
            hash: (*hash).clone(),
            holders: hashes[&Some((*hash).clone())].clone(),
            missing: hashes.get(&None).cloned().unwrap_or_default(),
        },
        _ => {
            return Err(format!(
                "pods hold different {} values: {}; a rotation cannot continue from \
                 diverging proposals: resolve them by hand first",
                params.common.hash_field,
                // Held hashes first, then the pods that hold none.
                render_groups(
                    hashes
                        .iter()
                        .filter(|(h, _)| h.is_some())
                        .chain(hashes.iter().filter(|(h, _)| h.is_none())),
                    |h| match h {
                        Some(h) => format!("{h:?}"),
                        None => "none".into(),
                    }
                )
            ));
        }
    };
    Ok(Baseline { version, phase })
}

/// The pods whose hash is not the expected one, and what each holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diverging {
    /// (pod, what it holds), by pod name.
    pub pods: Vec<(String, Option<String>)>,
    /// The pods that do hold the expected hash.
    pub holders: Vec<String>,
}

impl Diverging {
    /// E.g. `pods disagree on fetched_proposal_hash: sdkms-1 holds "abc", expected
    /// "def" (held by sdkms-0, sdkms-2)`.
    pub fn render(&self, hash_field: &str, expected: &str) -> String {
        let pods: Vec<String> = self
            .pods
            .iter()
            .map(|(pod, held)| match held {
                Some(h) => format!("{pod} holds {h:?}"),
                None => format!("{pod} holds none"),
            })
            .collect();
        let held_by = if self.holders.is_empty() {
            "held by no pod".to_string()
        } else {
            format!("held by {}", self.holders.join(", "))
        };
        format!(
            "pods disagree on {hash_field}: {}, expected {expected:?} ({held_by})",
            pods.join(", ")
        )
    }
}

/// Ok when every pod holds `hash`; else the pods that differ.
pub fn check_distributed(statuses: &[(String, KeyStatus)], hash: &str) -> Result<(), Diverging> {
    let (holders, others): (Vec<_>, Vec<_>) = statuses
        .iter()
        .partition(|(_, s)| s.hash.as_deref() == Some(hash));
    if others.is_empty() && !holders.is_empty() {
        return Ok(());
    }
    Err(Diverging {
        pods: others
            .into_iter()
            .map(|(n, s)| (n.clone(), s.hash.clone()))
            .collect(),
        holders: holders.into_iter().map(|(n, _)| n.clone()).collect(),
    })
}

/// Ok when every pod reports `expected`; else (pod, version) for those that do not.
pub fn check_version(
    statuses: &[(String, KeyStatus)],
    expected: i64,
) -> Result<(), Vec<(String, i64)>> {
    let wrong: Vec<(String, i64)> = statuses
        .iter()
        .filter(|(_, s)| s.version != expected)
        .map(|(n, s)| (n.clone(), s.version))
        .collect();
    if wrong.is_empty() { Ok(()) } else { Err(wrong) }
}

/// E.g. `not every pod reports version 2: sdkms-1 reports 1, sdkms-2 reports 1`.
pub fn render_version_mismatch(
    version_field: &str,
    expected: i64,
    wrong: &[(String, i64)],
) -> String {
    let pods: Vec<String> = wrong
        .iter()
        .map(|(pod, v)| format!("{pod} reports {v}"))
        .collect();
    format!(
        "not every pod reports {version_field} {expected}: {}",
        pods.join(", ")
    )
}

/// Names of `targets`, joined: `sdkms-0, sdkms-1`.
pub fn names(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Groups pod names by a value, both sorted.
fn group<'a, K: Ord>(items: impl Iterator<Item = (K, &'a String)>) -> BTreeMap<K, Vec<String>> {
    let mut groups: BTreeMap<K, Vec<String>> = BTreeMap::new();
    for (key, pod) in items {
        groups.entry(key).or_default().push(pod.clone());
    }
    groups
}

/// `1 on sdkms-0, sdkms-2; 2 on sdkms-1`.
fn render_groups<'a, K: 'a>(
    groups: impl Iterator<Item = (&'a K, &'a Vec<String>)>,
    show: impl Fn(&K) -> String,
) -> String {
    groups
        .map(|(k, pods)| format!("{} on {}", show(k), pods.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: Option<&str>, ready: bool) -> Pod {
        Pod {
            name: name.into(),
            ip: ip.map(Into::into),
            ready,
            phase: if ready { "Running" } else { "Pending" }.into(),
        }
    }

    fn three() -> Vec<Pod> {
        vec![
            pod("sdkms-2", Some("10.0.0.3"), true),
            pod("sdkms-0", Some("10.0.0.1"), true),
            pod("sdkms-1", Some("10.0.0.2"), true),
        ]
    }

    fn st(version: i64, hash: Option<&str>) -> KeyStatus {
        KeyStatus {
            version,
            hash: hash.map(Into::into),
        }
    }

    /// What preflight decides from these pods and answers (without the journal).
    fn preflight(
        pods: &[Pod],
        statuses: &[(String, Result<KeyStatus, String>)],
        params: &Params,
    ) -> Result<Baseline, String> {
        baseline(&observe(pods, statuses)?, params)
    }

    fn answers(list: &[(&str, KeyStatus)]) -> Vec<(String, Result<KeyStatus, String>)> {
        list.iter()
            .map(|(n, s)| (n.to_string(), Ok(s.clone())))
            .collect()
    }

    #[test]
    fn preflight_happy_path() {
        let b = preflight(
            &three(),
            &answers(&[
                ("sdkms-0", st(1, None)),
                ("sdkms-1", st(1, None)),
                ("sdkms-2", st(1, None)),
            ]),
            &Params::default(),
        )
        .unwrap();
        assert_eq!(
            b,
            Baseline {
                version: 1,
                phase: Phase::NothingProposed
            }
        );
        let t = ready_targets(&three()).unwrap();
        assert_eq!(names(&t), "sdkms-0, sdkms-1, sdkms-2");
        assert_eq!(t[0].ip, "10.0.0.1");
    }

    #[test]
    fn preflight_no_pods() {
        let e = preflight(&[], &[], &Params::default()).unwrap_err();
        assert!(e.contains("no pods"), "{e}");
    }

    #[test]
    fn preflight_names_pods_not_ready() {
        let mut pods = three();
        pods[2] = pod("sdkms-1", Some("10.0.0.2"), false);
        pods.push(pod("sdkms-3", None, true));
        let e = preflight(&pods, &[], &Params::default()).unwrap_err();
        assert!(e.contains("sdkms-1 (not Ready"), "{e}");
        assert!(e.contains("sdkms-3 (no IP"), "{e}");
        assert!(!e.contains("sdkms-0"), "{e}");
    }

    #[test]
    fn preflight_names_unanswered_pods() {
        let mut a = answers(&[("sdkms-0", st(1, None)), ("sdkms-1", st(1, None))]);
        a.push(("sdkms-2".into(), Err("status 500: boom".into())));
        let e = preflight(&three(), &a, &Params::default()).unwrap_err();
        assert!(e.contains("sdkms-2: status 500: boom"), "{e}");
    }

    #[test]
    fn preflight_names_version_mismatch() {
        let e = preflight(
            &three(),
            &answers(&[
                ("sdkms-0", st(1, None)),
                ("sdkms-1", st(2, None)),
                ("sdkms-2", st(1, None)),
            ]),
            &Params::default(),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "pods disagree on version: 1 on sdkms-0, sdkms-2; 2 on sdkms-1"
        );
    }

    #[test]
    fn preflight_refuses_differing_proposals() {
        let e = preflight(
            &three(),
            &answers(&[
                ("sdkms-0", st(1, Some("aaa"))),
                ("sdkms-1", st(1, Some("bbb"))),
                ("sdkms-2", st(1, None)),
            ]),
            &Params::default(),
        )
        .unwrap_err();
        assert!(
            e.contains(r#"pods hold different fetched_proposal_hash values: "aaa" on sdkms-0; "bbb" on sdkms-1; none on sdkms-2"#),
            "{e}"
        );
    }

    #[test]
    fn preflight_resumes_from_common_proposal() {
        let b = preflight(
            &three(),
            &answers(&[
                ("sdkms-0", st(1, None)),
                ("sdkms-1", st(1, Some("h"))),
                ("sdkms-2", st(1, Some("h"))),
            ]),
            &Params::default(),
        )
        .unwrap();
        assert_eq!(
            b.phase,
            Phase::Proposed {
                hash: "h".into(),
                holders: vec!["sdkms-1".into(), "sdkms-2".into()],
                missing: vec!["sdkms-0".into()],
            }
        );
    }

    #[test]
    fn check_distributed_names_diverging_pods() {
        let s = vec![
            ("sdkms-0".to_string(), st(1, Some("def"))),
            ("sdkms-1".to_string(), st(1, Some("abc"))),
            ("sdkms-2".to_string(), st(1, Some("def"))),
            ("sdkms-3".to_string(), st(1, None)),
        ];
        let d = check_distributed(&s, "def").unwrap_err();
        assert_eq!(
            d.render("fetched_proposal_hash", "def"),
            r#"pods disagree on fetched_proposal_hash: sdkms-1 holds "abc", sdkms-3 holds none, expected "def" (held by sdkms-0, sdkms-2)"#
        );
        assert!(check_distributed(&s[..1], "def").is_ok());
        assert!(check_distributed(&[], "def").is_err());
    }

    #[test]
    fn check_version_names_pods() {
        let s = vec![
            ("sdkms-0".to_string(), st(2, None)),
            ("sdkms-1".to_string(), st(1, None)),
        ];
        assert!(check_version(&s[..1], 2).is_ok());
        let wrong = check_version(&s, 2).unwrap_err();
        assert_eq!(
            render_version_mismatch("version", 2, &wrong),
            "not every pod reports version 2: sdkms-1 reports 1"
        );
    }
}
