//! Events: [`Notifier::notify`]`(id)` wakes every [`Listener`] of a
//! service, and a listener learns **every** id notified since it last
//! looked, however many notifications arrived meanwhile.
//!
//! ```no_run
//! # use conduit::prelude::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::builder().create()?;
//! let events = node.service("door").event()
//!     .max_event_id(63).notifier_dead_event(63)   // optional
//!     .open_or_create()?;
//! let listener = events.listener().create()?;
//! let notifier = events.notifier().create()?;
//! notifier.notify(7)?;
//! let ids = listener.wait();                      // or try_wait / wait_timeout
//! assert!(ids.contains(7));
//! # Ok(()) }
//! ```
//!
//! Each listener has, in the service segment, a bitset of pending ids
//! (notifiers `fetch_or`, the listener `swap`s to 0), an
//! [`EventWord`](crate::sync::EventWord) it sleeps on (bounded spin, then
//! futex) and an `fd_armed` word for its optional wake-up descriptor
//! ([`Listener::wake_fd`], used by the WaitSet and async runtimes;
//! protocol in `sync::fdwake`). A notifier makes no system call when no
//! listener sleeps. The byte layout and every shared word: `layout.rs`.
//!
//! # Files
//!
//! `service.rs` (builder, service, what it tells the service core,
//! delivery, listing), `notifier.rs`, `listener.rs`, `id.rs` ([`EventId`],
//! [`EventSet`]), `layout.rs`.

mod id;
pub(crate) mod layout;
mod listener;
#[cfg(all(test, loom))]
mod loom_tests;
mod notifier;
pub(crate) mod service;

use std::time::Duration;

pub use id::{EventId, EventSet};
pub use layout::{MAX_EVENT_ID_LIMIT, MAX_PORTS_LIMIT};
pub use listener::{Listener, ListenerBuilder};
pub use notifier::{Notifier, NotifierBuilder, NotifyError, PortCreateError};
pub(crate) use service::cleanup_domain;
pub use service::{EventBuilder, EventService, EventServiceInfo, list};

/// Default spin budget of a blocking wait before it sleeps.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
