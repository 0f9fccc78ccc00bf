//! conduit's benchmark scenarios. See README.md in this crate.

pub mod signal;
