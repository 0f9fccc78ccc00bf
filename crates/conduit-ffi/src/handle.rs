//! The handle table: every object the C side holds is a 64-bit id into
//! one process-wide table, checked on every call.
//!
//! An id is `generation << 32 | (index + 1)`. Index 0 is never used, so
//! the id 0 (a zeroed handle) is always invalid; destroying an object
//! bumps its entry's generation, so a stale copy of an id is invalid
//! too, even after the entry is reused. The table stores each object
//! with its kind, so an id of one kind passed where another is expected
//! is refused. Nothing the C side passes is ever dereferenced as a
//! pointer to a Rust object.
//!
//! Objects are `Arc`s: a call takes a clone out of the table (under the
//! table lock, for a few instructions) and works on it unlocked, so a
//! thread blocked in a receive holds no global lock, and destroying a
//! handle while another thread still uses it only removes the id (the
//! object goes when that call returns). Ports that are not `Sync` sit
//! behind their own mutex: calls on one port serialize.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use conduit::event::{EventService, Notifier};
use conduit::node::Node;
use conduit::pubsub::{PubSubService, RawPayload};
use conduit::reqres::ReqResService;

use crate::error::{Error, Result, conduit_error_t};
use crate::event::ListenerPort;
use crate::pubsub::{PublisherPort, SubscriberPort};
use crate::reqres::{ClientPort, ServerPort};

/// An object held by the C side.
pub(crate) enum Object {
    Node(Node),
    PubSubService(PubSubService<RawPayload>),
    Publisher(Mutex<PublisherPort>),
    Subscriber(Mutex<SubscriberPort>),
    EventService(EventService),
    Notifier(Mutex<Notifier>),
    Listener(Mutex<ListenerPort>),
    ReqResService(ReqResService<[u8], [u8]>),
    Client(Mutex<ClientPort>),
    Server(Mutex<ServerPort>),
}

impl Object {
    fn kind(&self) -> &'static str {
        match self {
            Object::Node(_) => "node",
            Object::PubSubService(_) => "publish/subscribe service",
            Object::Publisher(_) => "publisher",
            Object::Subscriber(_) => "subscriber",
            Object::EventService(_) => "event service",
            Object::Notifier(_) => "notifier",
            Object::Listener(_) => "listener",
            Object::ReqResService(_) => "request/response service",
            Object::Client(_) => "client",
            Object::Server(_) => "server",
        }
    }
}

struct Entry {
    generation: u32,
    object: Option<Arc<Object>>,
}

struct Table {
    entries: Vec<Entry>,
    free: Vec<u32>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    entries: Vec::new(),
    free: Vec::new(),
});

fn table() -> MutexGuard<'static, Table> {
    // The table is consistent after every statement that touches it (no
    // user code runs under its lock), so a poisoned lock is still usable.
    TABLE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn split(id: u64) -> Option<(usize, u32)> {
    let index = (id & 0xffff_ffff).checked_sub(1)?;
    Some((index as usize, (id >> 32) as u32))
}

/// Puts `object` into the table and returns its id (never 0).
pub(crate) fn insert(object: Object) -> u64 {
    let mut t = table();
    let object = Some(Arc::new(object));
    let index = match t.free.pop() {
        Some(i) => {
            t.entries[i as usize].object = object;
            i
        }
        None => {
            let i = u32::try_from(t.entries.len())
                .ok()
                .filter(|&i| i < u32::MAX)
                .expect("more than 2^32 - 1 live conduit handles");
            t.entries.push(Entry {
                generation: 1,
                object,
            });
            i
        }
    };
    (u64::from(t.entries[index as usize].generation) << 32) | (u64::from(index) + 1)
}

fn invalid(id: u64, kind: &str) -> Error {
    Error::new(
        conduit_error_t::CONDUIT_ERROR_INVALID_HANDLE,
        format!("{id:#x} is not a live {kind} handle"),
    )
}

/// The object of `id`, if it is live and `matches` accepts it; `kind`
/// names what was expected in the error.
pub(crate) fn get(id: u64, kind: &str, matches: fn(&Object) -> bool) -> Result<Arc<Object>> {
    let t = table();
    split(id)
        .and_then(|(index, generation)| {
            let entry = t.entries.get(index)?;
            let object = entry.object.as_ref()?;
            (entry.generation == generation && matches(object)).then(|| object.clone())
        })
        .ok_or_else(|| invalid(id, kind))
}

/// Removes `id` from the table if it is live and `matches` accepts it;
/// returns the object, which the caller drops outside the table lock
/// (dropping a port makes system calls).
pub(crate) fn remove(id: u64, kind: &str, matches: fn(&Object) -> bool) -> Result<Arc<Object>> {
    let mut t = table();
    let Some((index, generation)) = split(id) else {
        return Err(invalid(id, kind));
    };
    let Some(entry) = t.entries.get_mut(index) else {
        return Err(invalid(id, kind));
    };
    if entry.generation != generation || !entry.object.as_deref().is_some_and(matches) {
        return Err(invalid(id, kind));
    }
    let object = entry.object.take().expect("checked above");
    // Generation 0 is skipped so that no live id has the high half 0.
    entry.generation = entry.generation.wrapping_add(1).max(1);
    t.free.push(index as u32);
    Ok(object)
}

/// Locks a port's mutex; a port poisoned by an earlier panic is refused.
pub(crate) fn lock<'a, T>(port: &'a Mutex<T>, object: &Object) -> Result<MutexGuard<'a, T>> {
    port.lock().map_err(|_| {
        Error::new(
            conduit_error_t::CONDUIT_ERROR_INTERNAL,
            format!(
                "this {} panicked in an earlier call and is unusable; destroy it",
                object.kind()
            ),
        )
    })
}

/// Implements the table lookups of a `#[repr(C)]` handle type (the
/// structs themselves are written out, so that cbindgen sees them).
macro_rules! handle_type {
    ($name:ident, $variant:ident, $kind:literal) => {
        impl $name {
            #[allow(dead_code)]
            pub(crate) fn object(
                self,
            ) -> $crate::error::Result<std::sync::Arc<$crate::handle::Object>> {
                $crate::handle::get(self.id, $kind, |o| {
                    matches!(o, $crate::handle::Object::$variant(_))
                })
            }

            #[allow(dead_code)]
            pub(crate) fn take(
                self,
            ) -> $crate::error::Result<std::sync::Arc<$crate::handle::Object>> {
                $crate::handle::remove(self.id, $kind, |o| {
                    matches!(o, $crate::handle::Object::$variant(_))
                })
            }
        }
    };
}
pub(crate) use handle_type;

#[cfg(test)]
mod tests {
    use super::*;

    fn any(_: &Object) -> bool {
        true
    }

    #[test]
    fn ids_are_never_zero_and_stale_ids_are_refused() {
        let node = Node::builder()
            .name("handle-test")
            .domain(&format!("ffi-handle-{}", std::process::id()))
            .create()
            .unwrap();
        let domain = node.domain().to_owned();
        let a = insert(Object::Node(node));
        assert_ne!(a, 0);
        assert!(get(a, "node", any).is_ok());
        assert!(get(0, "node", any).is_err());
        assert!(get(a ^ (1 << 32), "node", any).is_err(), "other generation");
        assert!(get(a, "node", |o| matches!(o, Object::Listener(_))).is_err());
        drop(remove(a, "node", any).unwrap());
        assert!(get(a, "node", any).is_err(), "destroyed");
        assert!(remove(a, "node", any).is_err(), "destroyed twice");
        let _ = Node::cleanup(&domain);
    }
}
