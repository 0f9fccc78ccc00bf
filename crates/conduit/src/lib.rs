//! # conduit
//!
//! Fast, crash-safe inter-process communication for Linux.
//!
//! conduit covers the three families of Unix IPC:
//!
//! * **shared memory**: [`shm::Segment`] (POSIX `shm_open` and anonymous
//!   memfd segments with a validated header), [`shm::RelPtr`] and offsets
//!   instead of pointers, the [`ShmSafe`] marker with its derive, an
//!   allocator, a managed segment and relocatable containers;
//! * **zero-copy publish/subscribe and events** between processes with
//!   crash recovery: [`Domain`] (the namespace, listing and cleanup),
//!   [`node`] (identity, liveness), [`service`] (the service core: names,
//!   type and QoS checks, port registries), [`pubsub`] (publishers,
//!   subscribers, typestate loans, blocking receive), [`event`]
//!   (notifiers and listeners) and [`blackboard`] (shared state by key:
//!   one writer, lock-free readers, survives a killed writer);
//! * **synchronisation in shared memory**: a robust futex mutex and a
//!   futex event word ([`sync`]);
//! * **message passing**: [`pipe`] (pipes, FIFOs, framed typed channels,
//!   page-moving bulk streams), [`socket`] (Unix sockets, fd passing,
//!   peer credentials, sealed memfd sharing) and [`mq`] (POSIX message
//!   queues);
//! * **signals**: [`signal`] — subscriptions received as values (signalfd
//!   or a self-pipe, never user code in a handler), sending through pidfds,
//!   queued values, graceful termination, process-group supervision;
//!
//! System limits that bound these resources are in [`limits`]; every OS
//! error is an [`Errno`].
//!
//! Layers, from the bottom: `sys` (crate-private, the only code that makes
//! system calls) → [`sync`] → [`shm`] → [`Domain`] → [`node`] →
//! [`service`] (the core) → the patterns ([`pubsub`], [`event`],
//! [`blackboard`]) →
//! `maintenance` (domain-wide cleanup, the one module that knows every
//! pattern). See `ARCHITECTURE.md`.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

// Lets `#[derive(ShmSafe)]`, which names `::conduit`, work inside this crate.
#[allow(unused_extern_crates)]
extern crate self as conduit;

pub mod blackboard;
pub mod discovery;
mod domain;
pub mod event;
pub mod limits;
pub mod loan;
mod maintenance;
pub mod mq;
pub mod node;
pub mod pipe;
mod pool;
pub mod pubsub;
mod queue;
pub mod reqres;
pub mod service;
pub mod shm;
pub mod signal;
pub mod socket;
pub mod sync;
pub(crate) mod sys;
#[cfg(feature = "tokio")]
pub mod tokio;
pub mod waitset;

/// Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;

pub use conduit_derive::ShmSafe;
pub use domain::{Domain, DomainObject, ObjectKind, ServiceKind};
pub use shm::ShmSafe;

/// The OS error number every conduit error keeps as its `source()`: the
/// `errno` of the system call that failed (rustix's `Errno`). Compare it
/// with its constants (`Errno::NOSPC`, `Errno::ACCESS`, ...), get the raw
/// number with [`raw_os_error`](Errno::raw_os_error), or convert it into a
/// [`std::io::Error`]. Find it in an error chain with
/// `error.source()?.downcast_ref::<conduit::Errno>()`.
pub use sys::Errno;

/// The names most programs need, in one import: `use conduit::prelude::*;`.
pub mod prelude {
    pub use crate::Domain;
    pub use crate::ShmSafe;
    pub use crate::blackboard::Blackboard;
    pub use crate::event::EventId;
    pub use crate::event::{EventService, EventSet, Listener, Notifier};
    pub use crate::node::Node;
    pub use crate::pubsub::{Overflow, PubSubService, Publisher, Qos, Sample, Subscriber};
    pub use crate::reqres::{
        ActiveRequest, Client, PendingResponse, ReqResService, Response, Server,
    };
    pub use crate::service::PortId;
    pub use crate::shm::{Permissions, RelPtr};
    pub use crate::signal::{Signal, Signals, Termination};
    pub use crate::sync::Spin;
}
