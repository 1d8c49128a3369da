//! Blocking work (a synced write) called from async code: on a multi-threaded tokio
//! runtime the worker's other tasks (the other clusters of a fleet) move to another
//! worker while it blocks. A leaf, so the audit trail and the journal share it.

/// Runs `f`, telling a multi-threaded runtime that it blocks.
pub fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_outside_any_runtime() {
        assert_eq!(super::off_worker(|| 7), 7);
    }

    #[test]
    fn runs_on_a_current_thread_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(async { super::off_worker(|| 7) }), 7);
    }
}
