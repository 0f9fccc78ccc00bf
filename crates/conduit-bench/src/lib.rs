//! conduit's benchmark scenarios. See README.md in this crate.

pub mod events;
pub mod floors;
pub mod harness;
pub mod heap;
pub mod msg;
pub mod pubsub;
pub mod raw;
pub mod signal;
