//! The exit codes of the contract (DESIGN.md). A leaf: which error gets which code
//! is decided once, in [`crate::launch`]; a run's own outcome in [`crate::report`].

pub const DONE: u8 = 0;
/// The procedure failed or was aborted safely.
pub const FAILED: u8 = 1;
/// Usage or site file error.
pub const USAGE: u8 = 2;
/// Refused: signature or policy.
pub const REFUSED: u8 = 3;
