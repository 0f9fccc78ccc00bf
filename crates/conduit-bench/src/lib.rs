//! conduit's benchmark scenarios. See README.md in this crate.

pub mod blackboard;
pub mod events;
pub mod floors;
pub mod harness;
pub mod heap;
pub mod msg;
pub mod pubsub;
pub mod reqres;
/// Raw system calls of the baselines (`conduit-raw`): a floor measures the OS call itself.
pub use conduit_raw as raw;
pub mod signal;
