//! A run's stop request (SIGINT, a lost Lease): a leaf, so the Lease keeper below
//! the capabilities and the gate above them share one value.

use std::sync::{Arc, Mutex};

/// A request to stop the run at its next mutating call; the first reason wins.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<Mutex<Option<String>>>);

impl Stop {
    pub fn request(&self, why: impl Into<String>) {
        let mut reason = self.0.lock().expect("stop lock");
        if reason.is_none() {
            *reason = Some(why.into());
        }
    }

    pub fn reason(&self) -> Option<String> {
        self.0.lock().expect("stop lock").clone()
    }
}
