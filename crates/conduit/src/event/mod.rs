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
//! listener sleeps. The byte layout and every shared word: `layout.rs`;
//! descriptor wake-up: `sync::fdwake`.
//!
//! # Files
//!
//! `service.rs` (builder, service, what it tells the service core,
//! delivery, listing), `notifier.rs`, `listener.rs`, `id.rs` ([`EventId`],
//! [`EventSet`]), `layout.rs`.
//!
//! # Never lost (futex path)
//!
//! Listener (`EventWord::wait_until`): snapshot the epoch (Acquire) → take
//! (swap) → if empty, `wait(epoch)` (register CAS, `FUTEX_WAIT`).
//! Notifier (`deliver` in `service.rs`): `fetch_or` → epoch `fetch_add`
//! (Release) → `FUTEX_WAKE` if sleepers. If the listener's take missed a
//! bit, its epoch snapshot was taken before that notifier's bump (had it
//! read the bumped value, Acquire/Release would make the `fetch_or`
//! visible to the swap), so the register CAS fails or the bump sees the
//! sleeper: the `EventWord` argument. The bit stays set until a take: the
//! bitset is the truth, the epoch only says "look again". The loom model
//! `loom_event_futex_path_loses_no_id` checks it.
//!
//! # Lifecycle
//!
//! * **Notifier created**: claims a slot (all taken: cleans dead ports,
//!   retries once), then notifies the created event if configured.
//! * **Notifier dropped**: notifies the dropped event, frees its slot.
//! * **Notifier died**: its node's `flock` is gone. The next open of the
//!   service, the domain cleanup, a port creation that finds every slot of
//!   its kind taken, or [`EventService::cleanup_dead_ports`] frees the
//!   slot and notifies the dead event to every listener. Killed in the
//!   middle of a notify, it leaves at worst bits set without an epoch
//!   bump; the listener sees them at its next look (or wake-up). Nothing
//!   is locked, so nothing is left locked.
//! * **Listener died**: its slot is freed by the same cleanup. If it was
//!   registered on its event word the sleeper count stays raised, and the
//!   next listener in that slot costs notifiers one useless `FUTEX_WAKE`
//!   per notify (correct, slower).
//! * **Removal**: by the service core, as for every pattern (a shared
//!   `flock` per holder; the last one unlinks, then sets `removed`; a group
//!   member that may not unlink leaves the service unmarked and usable).
//!
//! # Pitfalls
//!
//! * An event is a level, not a count: ten notifies of id 7 before a look
//!   are one `7` in the set. Use publish/subscribe for counted messages.
//! * [`Listener`] and [`Notifier`] are `Send`, not `Sync`.
//! * A new listener zeroes its slot's pending bits after claiming it; a
//!   notifier that checked the slot's id while the previous listener held
//!   it may set its bit after that reset: the new listener then sees one
//!   id notified before it existed.
//! * An event service lives in its own segment `evt.<FNV-1a(name)>`, so a
//!   pub/sub service and an event service may share a name (a topic plus
//!   its control events).

mod id;
pub(crate) mod layout;
mod listener;
#[cfg(all(test, loom))]
mod loom_tests;
mod notifier;
pub(crate) mod service;

pub use id::{EventId, EventSet};
pub use layout::{MAX_EVENT_ID_LIMIT, MAX_PORTS_LIMIT};
pub use listener::{Listener, ListenerBuilder};
pub use notifier::{Notifier, NotifierBuilder, NotifyError, PortCreateError};
pub(crate) use service::Events;
pub use service::{EventBuilder, EventService, EventServiceInfo, list};

/// Default spin budget of a blocking wait before it sleeps.
pub use crate::service::DEFAULT_SPIN;
