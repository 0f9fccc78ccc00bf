//! Synchronisation primitives that live in shared memory.
//!
//! Atomics come from a small shim so that the same code runs under `loom`
//! (`RUSTFLAGS="--cfg loom"`), where the futex is modelled by yielding.

#[allow(unused_imports)]
pub(crate) mod atomic {
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
}
