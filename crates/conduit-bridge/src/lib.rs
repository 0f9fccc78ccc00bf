//! conduit-bridge: forwards a conduit domain's publish/subscribe and event
//! services to other machines over [Zenoh](https://zenoh.io).
//!
//! One bridge runs per host and domain. It watches its domain
//! ([`conduit::Domain::watch`]), announces the local services to the
//! other bridges under `<prefix>/announce/<bridge id>`, and forwards:
//!
//! * **publish/subscribe**: for a local service with publishers, the
//!   bridge is a local subscriber and puts every sample (payload, user
//!   header, sequence number) on `<prefix>/pubsub/<name>`; a bridge that
//!   learns of it from an announcement is a local publisher of the same
//!   service (same type, opened with the run-time typed API) and
//!   republishes every sample;
//! * **events**: for a local event service with notifiers, the bridge is a
//!   local listener and puts the ids it receives on
//!   `<prefix>/event/<name>`; the other side notifies them locally.
//!
//! A remote service whose type differs from the local one of the same
//! name is refused ([`BridgeError::TypeMismatch`], logged) and never
//! forwarded. The wire format is in [`wire`]; the loop-prevention rules
//! in the crate README.
//!
//! ```no_run
//! # fn main() -> Result<(), conduit_bridge::BridgeError> {
//! let bridge = conduit_bridge::Bridge::builder()
//!     .domain("robot")
//!     .listen("tcp/0.0.0.0:7447")
//!     .start()?;
//! // ... until the program ends:
//! bridge.stop()?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod bridge;
pub mod wire;

pub use bridge::{Bridge, BridgeBuilder, Log, LogLevel};

/// What can go wrong in a bridge: returned by [`BridgeBuilder::start`] and
/// [`Bridge::stop`], and reported through the bridge's [`Log`] for what
/// happens while it runs (the bridge keeps running).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The conduit domain name is invalid or the node cannot be created.
    #[error("conduit: {0}")]
    Conduit(String),
    /// Zenoh could not be configured or opened, or a put failed.
    #[error("zenoh: {0}")]
    Zenoh(String),
    /// A remote service's type differs from the local service of the
    /// same name: it is refused and never forwarded.
    #[error(
        "type mismatch: service {service:?} of bridge {remote_bridge:#x} is {remote}, \
         here it is {local}; refused, not forwarded"
    )]
    TypeMismatch {
        /// The service name.
        service: String,
        /// The announcing bridge.
        remote_bridge: u64,
        /// The remote type, as `payload … header … slice …`.
        remote: String,
        /// The local type, in the same form.
        local: String,
    },
    /// A local port (subscriber, publisher, listener, notifier) for
    /// forwarding could not be opened.
    #[error("service {service:?}: {reason}")]
    Port {
        /// The service name.
        service: String,
        /// Why.
        reason: String,
    },
    /// A service name cannot be a Zenoh key (an empty chunk: `a//b`, or a
    /// leading or trailing `/`): the service is not forwarded.
    #[error("service {0:?}: its name is not a valid Zenoh key, not forwarded")]
    UnsupportedName(String),
    /// A malformed message from the network, skipped.
    #[error("malformed message skipped: {0}")]
    Malformed(String),
    /// The bridge's thread failed or panicked.
    #[error("bridge thread: {0}")]
    Thread(String),
}
