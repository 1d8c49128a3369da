//! The capabilities a procedure receives: one module per WIT interface, each owning
//! its slice of the site policy, its enforcement and its implementation.
//!
//! Nothing else in the host knows a capability's rules. A denial is answered with
//! the interface's typed error, logged with the capability, the target and the rule,
//! and kept in the run's [`Denials`], so the report can show it.

pub mod confirm;
pub mod gate;
pub mod hooks;
pub mod http;
pub mod journal;
pub mod log;
pub mod pods;
pub mod registry;
pub mod restart;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::wit::cmk::procedure::pods::Pod;

/// One refused capability call.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Denial {
    pub capability: &'static str,
    pub target: String,
    pub rule: String,
}

/// The denials of one run, shared by its capabilities.
#[derive(Debug, Clone, Default)]
pub struct Denials(Arc<Mutex<Vec<Denial>>>);

impl Denials {
    /// Records and logs a denial, and returns the message the guest receives.
    pub fn deny(
        &self,
        capability: &'static str,
        target: impl Into<String>,
        rule: impl Into<String>,
    ) -> String {
        // The target (a URL, a key) and the rule may quote the component's words.
        let denial = Denial {
            capability,
            target: crate::text::ComponentText::with_limit(&target.into(), 512).into_string(),
            rule: crate::text::ComponentText::new(&rule.into()).into_string(),
        };
        tracing::warn!(
            capability,
            target = %denial.target,
            rule = %denial.rule,
            "denied {capability} call"
        );
        let message = format!("{}: {}", denial.target, denial.rule);
        self.0.lock().expect("denials lock").push(denial);
        message
    }

    pub fn snapshot(&self) -> Vec<Denial> {
        self.0.lock().expect("denials lock").clone()
    }
}

/// The IPs of the pods in this run's latest pod list: the only hosts `http` may
/// reach. Written by `pods.list`, read by `http`; empty until the first list.
#[derive(Debug, Clone, Default)]
pub struct PodAddresses(Arc<Mutex<Vec<IpAddr>>>);

impl PodAddresses {
    pub fn replace(&self, ips: Vec<IpAddr>) {
        *self.0.lock().expect("pod addresses lock") = ips;
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.lock().expect("pod addresses lock").contains(ip)
    }
}

/// The run's latest pod list, as the host itself read it (the procedure's `pods.list`,
/// or the wait for Ready pods after a restart), and how many lists came before it: a
/// confirmation given before the latest list no longer counts. The one record of it:
/// the guards (`pods::PodView`), the confirmations and the gate read it here.
#[derive(Debug, Clone, Default)]
pub struct LatestPods(Arc<Mutex<(u64, Vec<Pod>)>>);

impl LatestPods {
    pub fn observe(&self, pods: Vec<Pod>) {
        let mut latest = self.0.lock().expect("latest pods lock");
        latest.0 += 1;
        latest.1 = pods;
    }

    /// How many lists were observed so far (0: none yet).
    pub fn generation(&self) -> u64 {
        self.0.lock().expect("latest pods lock").0
    }

    pub fn pods(&self) -> Vec<Pod> {
        self.0.lock().expect("latest pods lock").1.clone()
    }
}
