//! Where a cluster's durable files live under the state directory: its journal, its
//! audit trail (unless the site names one in `[audit] path`) and the record of its
//! running restart command. The one rule that names them after the cluster, so that
//! a fleet can tell, before it starts, whether two of its clusters would share one.
//!
//! A leaf: it uses nothing of the host.

use std::path::{Path, PathBuf};

/// A cluster name as a file name: letters, digits, `-`, `_`, `.`; others become `_`.
/// Two names can make one file name (`prod/eu`, `prod eu`, `prod_eu`).
pub fn file_name(cluster: &str) -> String {
    let name: String = cluster
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match name.trim_start_matches('.') {
        "" => "_".into(),
        n => n.to_string(),
    }
}

/// `<state dir>/journal/<cluster>.json`.
pub fn journal(state_dir: &Path, cluster: &str) -> PathBuf {
    state_dir
        .join("journal")
        .join(format!("{}.json", file_name(cluster)))
}

/// `<state dir>/audit/<cluster>.jsonl`: the trail when the site names none.
pub fn default_trail(state_dir: &Path, cluster: &str) -> PathBuf {
    state_dir
        .join("audit")
        .join(format!("{}.jsonl", file_name(cluster)))
}

/// `<state dir>/restart/<cluster>.pid`, with `.out` and `.err` beside it.
pub fn restart_record(state_dir: &Path, cluster: &str) -> PathBuf {
    state_dir
        .join("restart")
        .join(format!("{}.pid", file_name(cluster)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_file_names_and_some_meet() {
        assert_eq!(file_name("prod-eu.1"), "prod-eu.1");
        assert_eq!(file_name("prod/eu"), "prod_eu");
        assert_eq!(file_name("prod eu"), "prod_eu");
        assert_eq!(file_name("../x"), "_x");
        assert_eq!(file_name(".."), "_");
        let dir = Path::new("/s");
        assert_eq!(journal(dir, "a/b"), Path::new("/s/journal/a_b.json"));
        assert_eq!(default_trail(dir, "a"), Path::new("/s/audit/a.jsonl"));
        assert_eq!(restart_record(dir, "a"), Path::new("/s/restart/a.pid"));
    }
}
