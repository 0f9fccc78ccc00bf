//! Events: notifiers mark event ids pending at every listener and wake
//! those that sleep; listeners wait with a timeout or poll a descriptor.
//! Ids are never lost: an id notified twice before the listener looks is
//! reported once.

use std::collections::VecDeque;
use std::ffi::c_char;
use std::sync::Mutex;
use std::time::Duration;

use conduit::event::{Listener, NotifyError, PortCreateError};

use crate::error::{Error, Result, conduit_error_t, conduit_error_t as E, guard, service_error};
use crate::handle::{Object, handle_type, insert, lock};
use crate::node::conduit_node_t;
use crate::pubsub::os_code;
use crate::{Mode, need, str_arg, timeout, write_opt, write_out};

/// An open event service; made by [`conduit_event_open`], freed by
/// [`conduit_event_destroy`].
///
/// A plain 64-bit id: copy it freely. The id 0 is never valid, so a
/// zero-initialised handle is safe to pass (the call fails with
/// `CONDUIT_ERROR_INVALID_HANDLE`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct conduit_event_t {
    /// The id; 0 is never valid.
    pub id: u64,
}
handle_type!(conduit_event_t, EventService, "event service");
/// A notifier; made by [`conduit_notifier_create`], freed by
/// [`conduit_notifier_destroy`].
///
/// A plain 64-bit id: copy it freely. The id 0 is never valid, so a
/// zero-initialised handle is safe to pass (the call fails with
/// `CONDUIT_ERROR_INVALID_HANDLE`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct conduit_notifier_t {
    /// The id; 0 is never valid.
    pub id: u64,
}
handle_type!(conduit_notifier_t, Notifier, "notifier");
/// A listener; made by [`conduit_listener_create`], freed by
/// [`conduit_listener_destroy`].
///
/// A plain 64-bit id: copy it freely. The id 0 is never valid, so a
/// zero-initialised handle is safe to pass (the call fails with
/// `CONDUIT_ERROR_INVALID_HANDLE`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct conduit_listener_t {
    /// The id; 0 is never valid.
    pub id: u64,
}
handle_type!(conduit_listener_t, Listener, "listener");

/// The configuration of an event service. Every field 0 means "the
/// library default" when creating and "not checked" when opening (a
/// non-zero value asks for at least that much).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct conduit_event_options_t {
    /// Largest event id (up to 4095; default 255).
    pub max_event_id: usize,
    /// Most notifiers at once (1..=256; default 16).
    pub max_notifiers: usize,
    /// Most listeners at once (1..=256; default 16).
    pub max_listeners: usize,
}

/// A listener and the ids it took but has not handed to C yet (a wait
/// returns at most the caller's capacity; the rest come next time).
pub(crate) struct ListenerPort {
    listener: Listener,
    leftover: VecDeque<usize>,
}

fn port_error(e: &PortCreateError) -> Error {
    let code = match e {
        PortCreateError::ExceedsMaxPorts { .. } => E::CONDUIT_ERROR_EXCEEDS_MAX_PORTS,
        _ => E::CONDUIT_ERROR_INTERNAL,
    };
    Error::from_std(code, e)
}

/// Opens the event service `name` with `mode` (`CONDUIT_OPEN_OR_CREATE`,
/// `CONDUIT_CREATE` or `CONDUIT_OPEN`) and `options` (`NULL`: defaults)
/// and writes its handle to `service_out`. It is the service a Rust
/// program opens with `node.service(name).event()`.
///
/// # Safety
///
/// `name` is `NULL` or a NUL-terminated string; `options` is `NULL` or
/// readable; `service_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_event_open(
    node: conduit_node_t,
    name: *const c_char,
    options: *const conduit_event_options_t,
    mode: u32,
    service_out: *mut conduit_event_t,
) -> conduit_error_t {
    guard(|| {
        need(service_out, "service_out")?;
        let mode = Mode::from_c(mode)?;
        // SAFETY: NULL or NUL-terminated (contract).
        let name = unsafe { str_arg(name, "name") }?;
        let options = if options.is_null() {
            conduit_event_options_t::default()
        } else {
            // SAFETY: not NULL, readable (contract); plain data.
            unsafe { options.read() }
        };
        let object = node.object()?;
        let Object::Node(n) = &*object else {
            unreachable!("checked by the handle type")
        };
        let mut builder = n.service(name).event();
        if options.max_event_id != 0 {
            builder = builder.max_event_id(options.max_event_id);
        }
        if options.max_notifiers != 0 {
            builder = builder.max_notifiers(options.max_notifiers);
        }
        if options.max_listeners != 0 {
            builder = builder.max_listeners(options.max_listeners);
        }
        let service = match mode {
            Mode::OpenOrCreate => builder.open_or_create(),
            Mode::Create => builder.create(),
            Mode::Open => builder.open(),
        }
        .map_err(|e| service_error(&e))?;
        let id = insert(Object::EventService(service));
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(service_out, conduit_event_t { id }, "service_out") }
    })
}

/// Destroys an event service handle; its ports keep working.
#[unsafe(no_mangle)]
pub extern "C" fn conduit_event_destroy(service: conduit_event_t) -> conduit_error_t {
    guard(|| service.take().map(drop))
}

/// Creates a notifier on `service` and writes its handle to
/// `notifier_out`.
///
/// # Safety
///
/// `notifier_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_notifier_create(
    service: conduit_event_t,
    notifier_out: *mut conduit_notifier_t,
) -> conduit_error_t {
    guard(|| {
        need(notifier_out, "notifier_out")?;
        let object = service.object()?;
        let Object::EventService(s) = &*object else {
            unreachable!("checked by the handle type")
        };
        let notifier = s.notifier().create().map_err(|e| port_error(&e))?;
        let id = insert(Object::Notifier(Mutex::new(notifier)));
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(notifier_out, conduit_notifier_t { id }, "notifier_out") }
    })
}

/// Destroys a notifier and leaves the service.
#[unsafe(no_mangle)]
pub extern "C" fn conduit_notifier_destroy(notifier: conduit_notifier_t) -> conduit_error_t {
    guard(|| notifier.take().map(drop))
}

/// Marks `event_id` pending at every listener and wakes those that
/// sleep; writes the number of listeners reached to `reached_out` (may
/// be `NULL`). No system call unless a listener sleeps; never blocks.
///
/// # Safety
///
/// `reached_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_notifier_notify(
    notifier: conduit_notifier_t,
    event_id: usize,
    reached_out: *mut usize,
) -> conduit_error_t {
    guard(|| {
        let object = notifier.object()?;
        let Object::Notifier(port) = &*object else {
            unreachable!("checked by the handle type")
        };
        let reached = lock(port, &object)?.notify(event_id).map_err(|e| {
            let code = match e {
                NotifyError::InvalidId { .. } => E::CONDUIT_ERROR_INVALID_EVENT_ID,
                _ => E::CONDUIT_ERROR_INTERNAL,
            };
            Error::from_std(code, &e)
        })?;
        // SAFETY: NULL or writable (contract).
        unsafe { write_opt(reached_out, reached) };
        Ok(())
    })
}

/// Creates a listener on `service` and writes its handle to
/// `listener_out`.
///
/// # Safety
///
/// `listener_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_listener_create(
    service: conduit_event_t,
    listener_out: *mut conduit_listener_t,
) -> conduit_error_t {
    guard(|| {
        need(listener_out, "listener_out")?;
        let object = service.object()?;
        let Object::EventService(s) = &*object else {
            unreachable!("checked by the handle type")
        };
        let listener = s.listener().create().map_err(|e| port_error(&e))?;
        let id = insert(Object::Listener(Mutex::new(ListenerPort {
            listener,
            leftover: VecDeque::new(),
        })));
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(listener_out, conduit_listener_t { id }, "listener_out") }
    })
}

/// Destroys a listener and leaves the service.
#[unsafe(no_mangle)]
pub extern "C" fn conduit_listener_destroy(listener: conduit_listener_t) -> conduit_error_t {
    guard(|| listener.take().map(drop))
}

fn with_listener<R>(
    listener: conduit_listener_t,
    f: impl FnOnce(&mut ListenerPort) -> Result<R>,
) -> Result<R> {
    let object = listener.object()?;
    let Object::Listener(port) = &*object else {
        unreachable!("checked by the handle type")
    };
    f(&mut *lock(port, &object)?)
}

/// Waits up to `timeout_ns` nanoseconds (0: poll once; negative,
/// `CONDUIT_WAIT_FOREVER`: until one arrives) for notified ids; writes
/// up to `capacity` of them to `ids` in ascending order and their number
/// to `count_out`. Ids that did not fit are kept and returned, without
/// waiting, by the next call. Nothing in time: `CONDUIT_ERROR_TIMEOUT`.
///
/// With a descriptor from [`conduit_listener_fd`]: after it polls
/// readable, wait with timeout 0 until `CONDUIT_ERROR_TIMEOUT`, which
/// re-arms it.
///
/// # Safety
///
/// `ids` is `NULL` or writable for `capacity` elements; `count_out` is
/// `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_listener_wait(
    listener: conduit_listener_t,
    timeout_ns: i64,
    ids: *mut usize,
    capacity: usize,
    count_out: *mut usize,
) -> conduit_error_t {
    guard(|| {
        need(ids, "ids")?;
        need(count_out, "count_out")?;
        if capacity == 0 {
            return Err(Error::new(
                E::CONDUIT_ERROR_INVALID_ARGUMENT,
                "capacity is 0: no id could be returned",
            ));
        }
        let taken = with_listener(listener, |port| {
            if port.leftover.is_empty() {
                let l = &port.listener;
                let set = match timeout(timeout_ns) {
                    Some(Duration::ZERO) => l.try_wait(),
                    Some(t) => l.wait_timeout(t),
                    None => l.wait(),
                };
                port.leftover.extend(set.iter().map(|id| id.0));
            }
            if port.leftover.is_empty() {
                return Err(Error::new(E::CONDUIT_ERROR_TIMEOUT, "no event pending"));
            }
            let n = capacity.min(port.leftover.len());
            Ok(port.leftover.drain(..n).collect::<Vec<_>>())
        })?;
        // SAFETY: not NULL (checked); writable for `capacity` ≥
        // `taken.len()` elements (contract); the source is our own Vec.
        unsafe { std::ptr::copy_nonoverlapping(taken.as_ptr(), ids, taken.len()) };
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(count_out, taken.len(), "count_out") }
    })
}

/// Writes the listener's wake-up descriptor to `fd_out`: it polls
/// readable when an id may be pending; then wait with timeout 0 until
/// `CONDUIT_ERROR_TIMEOUT`. The first report may be spurious. The
/// descriptor belongs to the listener: do not close it; it is valid
/// until the listener is destroyed.
///
/// # Safety
///
/// `fd_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_listener_fd(
    listener: conduit_listener_t,
    fd_out: *mut i32,
) -> conduit_error_t {
    guard(|| {
        need(fd_out, "fd_out")?;
        let fd = with_listener(listener, |port| {
            use std::os::fd::AsRawFd;
            port.listener
                .wake_fd()
                .map(|fd| fd.as_raw_fd())
                .map_err(|e| Error::from_std(os_code(e), &e))
        })?;
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(fd_out, fd, "fd_out") }
    })
}
