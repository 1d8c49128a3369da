//! `[limits]`: how much a run may consume, and what stops it when it tries for more.
//!
//! Three limits, each enforced by the runtime rather than trusted to the guest:
//! linear memory (a [`ResourceLimiter`] that traps on the growth past the limit),
//! wall-clock time (the engine's epoch, plus a timer around the whole call), and the
//! number of host calls (a store call hook that counts every call into the host,
//! WASI included, and the gate, which counts each request of an `http.batch`: both
//! charge one [`CallBudget`]). A limit that is hit ends the run with a [`LimitHit`] error that
//! says which limit, so the operator is told exactly that.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Deserialize;
use wasmtime::{CallHook, ResourceLimiter, Store};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::frame::{SiteError, SiteFile};

/// Defaults that suit a rotation: a few MiB of JSON at most, two rolling restarts,
/// a few dozen calls per pod.
pub const DEFAULT_MEMORY_MIB: u64 = 256;
pub const DEFAULT_HOST_CALLS: u64 = 10_000;
/// Added to two restart timeouts for the default wall clock.
pub const DEFAULT_WALL_CLOCK_MARGIN: Duration = Duration::from_secs(30 * 60);

/// A Rust component needs a little over 1 MiB before it runs a line; below this
/// nothing could start.
const MIN_MEMORY_MIB: u64 = 2;
/// wasm32's whole address space.
const MAX_MEMORY_MIB: u64 = 4096;

/// Tables (function references) a component may grow to: generous for any real
/// guest, small enough that a hostile one cannot use tables to exhaust host memory.
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Instances, tables and memories per store: a component built from a few modules
/// needs a handful; this bounds a hostile one.
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;

/// Limits of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory of the component, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock time of the whole run, host calls included.
    pub wall_clock: Duration,
    /// Calls from the component into the host (capabilities and WASI).
    pub host_calls: u64,
}

impl Limits {
    /// The defaults, given the restart timeout (two restarts plus margin).
    pub fn defaults(restart_timeout: Option<Duration>) -> Limits {
        Limits {
            memory_bytes: (DEFAULT_MEMORY_MIB << 20) as usize,
            wall_clock: restart_timeout.map_or(Duration::ZERO, |t| t * 2)
                + DEFAULT_WALL_CLOCK_MARGIN,
            host_calls: DEFAULT_HOST_CALLS,
        }
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory {} MiB, wall clock {}s, {} host calls",
            self.memory_bytes >> 20,
            self.wall_clock.as_secs(),
            self.host_calls
        )
    }
}

/// `[limits]` as written; every key optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    memory_mib: Option<u64>,
    wall_clock_secs: Option<u64>,
    host_calls: Option<u64>,
}

impl RawLimits {
    pub fn validate(
        self,
        file: &SiteFile<'_>,
        restart_timeout: Option<Duration>,
    ) -> Result<Limits, SiteError> {
        let mut limits = Limits::defaults(restart_timeout);
        if let Some(mib) = self.memory_mib {
            if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
                return Err(file.error(
                    "[limits] memory_mib",
                    format!("must be {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB}, not {mib}"),
                ));
            }
            limits.memory_bytes = (mib << 20) as usize;
        }
        if let Some(secs) = self.wall_clock_secs {
            if secs == 0 {
                return Err(file.error("[limits] wall_clock_secs", "must be at least 1"));
            }
            limits.wall_clock = Duration::from_secs(secs);
        }
        if let Some(calls) = self.host_calls {
            if calls == 0 {
                return Err(file.error("[limits] host_calls", "must be at least 1"));
            }
            limits.host_calls = calls;
        }
        Ok(limits)
    }
}

/// Which limit stopped a run: the error a limiter or the call hook returns, found
/// again by [`LimitHit::find`] when the run's trap is described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitHit {
    #[error(
        "stopped: the component reached its memory limit of {limit_mib} MiB (asked for {asked_mib} MiB)"
    )]
    Memory { limit_mib: usize, asked_mib: usize },
    #[error("stopped: the component made more than {limit} host calls, its limit")]
    HostCalls { limit: u64 },
    #[error("stopped: the component grew a table past {limit} elements")]
    Table { limit: usize },
}

impl LimitHit {
    pub fn find(error: &wasmtime::Error) -> Option<&LimitHit> {
        error.chain().find_map(|e| e.downcast_ref::<LimitHit>())
    }
}

/// The host calls one store may make (`[limits] host_calls`), shared by its call hook
/// (one per call into the host) and its gate (a batch counts each request).
#[derive(Debug, Clone)]
pub struct CallBudget {
    limit: u64,
    used: Arc<AtomicU64>,
}

impl CallBudget {
    pub fn new(limit: u64) -> CallBudget {
        CallBudget {
            limit,
            used: Arc::default(),
        }
    }

    /// Counts one call; `false` once past the limit.
    pub fn take_one(&self) -> bool {
        self.used.fetch_add(1, Ordering::SeqCst) < self.limit
    }

    /// Counts `n` more calls and returns how many of them fit within the limit. Past
    /// the limit the store's next call traps.
    pub fn take(&self, n: u64) -> u64 {
        let before = self.used.fetch_add(n, Ordering::SeqCst);
        n.min(self.limit.saturating_sub(before))
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// Every limit of a run on its `store`, the one rule for each store the host
/// creates (the rotation's and each hook's): memory and tables through the store's
/// [`Enforcer`] (`enforcer` finds it in the store's data), host calls counted by it
/// as the guest makes them, and guest time.
///
/// Guest code gives its worker back at every epoch tick, so that other runs (a
/// fleet's clusters) and the host's own tasks share the tokio workers with it, and
/// traps with [`wasmtime::Trap::Interrupt`] once `deadline(store data)` has passed.
/// Time spent in host calls counts too, as with a plain deadline. The yield is
/// tokio's own ([`tokio::task::yield_now`]): it lets the runtime poll its I/O driver
/// before the guest runs again. A plain wake would put a spinning guest straight
/// back in the run queue, and the other runs' sockets would be read only every few
/// dozen ticks.
pub fn enforce<T: 'static>(
    store: &mut Store<T>,
    enforcer: fn(&mut T) -> &mut Enforcer,
    deadline: impl Fn(&T) -> Instant + Send + Sync + 'static,
) {
    store.limiter(move |data| enforcer(data) as &mut dyn ResourceLimiter);
    store.call_hook(move |mut store, hook| {
        if let CallHook::CallingHost = hook {
            enforcer(store.data_mut()).host_call()?;
        }
        Ok(())
    });
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |ctx| {
        if Instant::now() >= deadline(ctx.data()) {
            Err(wasmtime::Trap::Interrupt.into())
        } else {
            Ok(wasmtime::UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        }
    });
}

/// The per-run enforcement of memory and host calls, kept in the store.
#[derive(Debug)]
pub struct Enforcer {
    memory_bytes: usize,
    /// Linear memory of every memory of the store together: the limit is for the
    /// component, not per memory (a component may define several).
    memory_used: usize,
    /// Shared with the store's gate, which charges a batch one call per request.
    calls: CallBudget,
}

impl Enforcer {
    pub fn new(limits: &Limits) -> Enforcer {
        Enforcer {
            memory_bytes: limits.memory_bytes,
            memory_used: 0,
            calls: CallBudget::new(limits.host_calls),
        }
    }

    /// Counts one call into the host; past the limit, the call traps instead.
    pub fn host_call(&mut self) -> Result<(), LimitHit> {
        if !self.calls.take_one() {
            return Err(LimitHit::HostCalls {
                limit: self.calls.limit(),
            });
        }
        Ok(())
    }

    pub fn host_calls(&self) -> u64 {
        self.calls.used()
    }

    /// The budget the store's gate charges too.
    pub fn budget(&self) -> CallBudget {
        self.calls.clone()
    }
}

impl ResourceLimiter for Enforcer {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.memory_used - current.min(self.memory_used)).saturating_add(desired);
        if total > self.memory_bytes {
            // A trap, not a failed `memory.grow`: the guest's allocator would abort
            // anyway, and this way the operator is told which limit it was.
            return Err(LimitHit::Memory {
                limit_mib: self.memory_bytes >> 20,
                asked_mib: total.div_ceil(1 << 20),
            }
            .into());
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(LimitHit::Table {
                limit: MAX_TABLE_ELEMENTS,
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn validate(text: &str, restart: Option<Duration>) -> Result<Limits, SiteError> {
        let raw: RawLimits = toml::from_str(text).unwrap();
        raw.validate(
            &SiteFile {
                path: Path::new("site.toml"),
            },
            restart,
        )
    }

    #[test]
    fn defaults_suit_a_rotation() {
        let limits = validate("", Some(Duration::from_secs(1800))).unwrap();
        assert_eq!(limits.memory_bytes, 256 << 20);
        assert_eq!(limits.wall_clock, Duration::from_secs(2 * 1800 + 1800));
        assert_eq!(limits.host_calls, 10_000);
        assert_eq!(
            validate("", None).unwrap().wall_clock,
            Duration::from_secs(1800)
        );
    }

    #[test]
    fn each_key_overrides_its_default() {
        let limits = validate(
            "memory_mib = 16\nwall_clock_secs = 2\nhost_calls = 50",
            None,
        )
        .unwrap();
        assert_eq!(
            limits,
            Limits {
                memory_bytes: 16 << 20,
                wall_clock: Duration::from_secs(2),
                host_calls: 50
            }
        );
    }

    #[test]
    fn out_of_range_values_are_named() {
        for (text, key) in [
            ("memory_mib = 1", "[limits] memory_mib"),
            ("memory_mib = 5000", "[limits] memory_mib"),
            ("wall_clock_secs = 0", "[limits] wall_clock_secs"),
            ("host_calls = 0", "[limits] host_calls"),
        ] {
            assert_eq!(validate(text, None).unwrap_err().key, key, "{text}");
        }
    }

    #[test]
    fn memory_growth_past_the_limit_traps_with_the_limit() {
        let mut e = Enforcer::new(&Limits {
            memory_bytes: 4 << 20,
            wall_clock: Duration::from_secs(1),
            host_calls: 2,
        });
        assert!(e.memory_growing(0, 4 << 20, None).unwrap());
        let err = e.memory_growing(4 << 20, 5 << 20, None).unwrap_err();
        assert_eq!(
            LimitHit::find(&err),
            Some(&LimitHit::Memory {
                limit_mib: 4,
                asked_mib: 5
            })
        );
    }

    #[test]
    fn the_memory_limit_counts_every_memory_together() {
        let mut e = Enforcer::new(&Limits {
            memory_bytes: 4 << 20,
            wall_clock: Duration::from_secs(1),
            host_calls: 2,
        });
        // Two memories of 2 MiB each fill the limit; a third cannot start.
        assert!(e.memory_growing(0, 2 << 20, None).unwrap());
        assert!(e.memory_growing(0, 2 << 20, None).unwrap());
        assert!(e.memory_growing(0, 1 << 16, None).is_err());
    }

    #[test]
    fn host_calls_past_the_limit_are_refused() {
        let mut e = Enforcer::new(&Limits {
            memory_bytes: 4 << 20,
            wall_clock: Duration::from_secs(1),
            host_calls: 2,
        });
        assert!(e.host_call().is_ok());
        assert!(e.host_call().is_ok());
        assert_eq!(e.host_call(), Err(LimitHit::HostCalls { limit: 2 }));
        assert_eq!(e.host_calls(), 3);
    }
}
