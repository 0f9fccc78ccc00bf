//! Waking a port through a file descriptor (for epoll, the WaitSet, async
//! runtimes): an abstract-namespace Unix datagram socket per port, armed
//! through a flag in shared memory.
//!
//! The protocol (details and proof in `ARCHITECTURE.md`):
//!
//! * The port (listener or subscriber) binds a non-blocking datagram
//!   socket named `conduit.<domain>.wake.<port id>` (`Domain::wake_prefix`) in the abstract
//!   namespace the first time its descriptor is asked for. No file, and the
//!   name vanishes with the socket (with the process, however it dies).
//! * **Arming** (in [`FdWake::poll`], after the port's own check found
//!   nothing): drain the socket, store `armed = 1`, then
//!   [`EventWord::register`] at the epoch snapshot taken *before* that
//!   check. Registration makes every later notification see a sleeper.
//! * **Notifying** ([`wake`]): the notifier bumps the epoch with
//!   [`EventWord::wake_all_reporting`]; only if that saw a sleeper does it
//!   fence (Acquire), swap `armed` to 0, and if it was 1 send one byte with
//!   `MSG_DONTWAIT`. With nobody registered the notifier makes no system
//!   call and never touches `armed`.
//! * **Waking**: the byte makes the socket readable; the next
//!   [`FdWake::poll`] sees `armed == 0`, drains and unregisters, runs the
//!   check, and arms again if it found nothing.
//!
//! The shared state (the port's pending bits or queues) is the truth; the
//! byte only wakes. A full socket buffer (`EAGAIN`) drops the byte, which is
//! harmless: a full buffer is a readable socket.

use std::any::Any;
use std::cell::{Cell, OnceCell};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use super::{EventWord, Register};
use crate::sys::{Errno, socket};
use std::sync::atomic::{AtomicU32, Ordering, fence};

/// The abstract socket name of port `id`: `prefix` is the domain's wake
/// prefix (`conduit.<domain>.wake.`, from `Domain`), then the id in hex.
pub(crate) fn wake_name(prefix: &str, id: u64) -> socket::UnixName {
    socket::UnixName::Abstract(format!("{prefix}{id:016x}").into_bytes())
}

/// A port's wake-up descriptor and its arming state (process-local).
#[derive(Default)]
pub(crate) struct FdWake {
    /// Runtime glue (e.g. tokio's `AsyncFd`), created by that glue on first
    /// use. Declared first so that it is dropped before the socket.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) glue: OnceCell<Box<dyn Any + Send>>,
    socket: OnceCell<(OwnedFd, socket::UnixName)>,
    registered: Cell<bool>,
}

impl std::fmt::Debug for FdWake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdWake")
            .field("socket", &self.socket.get())
            .field("registered", &self.registered.get())
            .finish()
    }
}

impl FdWake {
    /// The descriptor, binding the socket on first use. The first wait
    /// after that reports it readable once (a byte sent to itself), so that
    /// notifications made before it was armed are looked at.
    pub(crate) fn fd(&self, wake_prefix: &str, id: u64) -> Result<BorrowedFd<'_>, Errno> {
        if self.socket.get().is_none() {
            let fd = socket::unix_socket(socket::Kind::Datagram)?;
            socket::set_nonblocking(&fd, true)?;
            let name = wake_name(wake_prefix, id);
            socket::bind(&fd, &name)?;
            // Readable at once: the first poll arms.
            let _ = socket::send_to_nonblocking(sender()?, &[1], &name);
            let _ = self.socket.set((fd, name));
        }
        Ok(self.socket.get().expect("set above").0.as_fd())
    }

    /// True once the descriptor exists.
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        self.socket.get().is_some()
    }

    fn drain(&self) {
        if let Some((fd, _)) = self.socket.get() {
            let mut buf = [0u8; 16];
            while socket::recv(fd, &mut buf, true).is_ok() {}
        }
    }

    /// Runs the port's non-blocking check `check` and, if it finds nothing,
    /// arms the descriptor so that the next notification makes it
    /// readable. Call only when [`is_active`](Self::is_active).
    pub(crate) fn poll<R>(
        &self,
        event: &EventWord,
        armed: &AtomicU32,
        mut check: impl FnMut() -> Option<R>,
    ) -> Option<R> {
        if self.registered.get() && armed.load(Ordering::Acquire) == 0 {
            // A notifier consumed the arming (and sent a byte, or is about to).
            event.unregister();
            self.registered.set(false);
        }
        loop {
            let epoch = event.epoch();
            if let Some(r) = check() {
                return Some(r);
            }
            // Nothing to do: empty the socket (a byte that arrives after this
            // is reported once more: a spurious wake-up, never a busy loop).
            self.drain();
            if self.registered.get() {
                if armed.load(Ordering::Acquire) != 0 {
                    return None; // Still armed from an earlier poll.
                }
                // A notifier disarmed us after the check, and we may have
                // drained its byte: unregister and look again.
                event.unregister();
                self.registered.set(false);
                continue;
            }
            armed.store(1, Ordering::Relaxed);
            match event.register(epoch) {
                Register::Registered => {
                    self.registered.set(true);
                    return None;
                }
                Register::EpochMoved => continue,
                Register::Saturated => {
                    // Cannot register: stay readable (busy, but correct).
                    if let Some((_, name)) = self.socket.get() {
                        if let Ok(fd) = sender() {
                            let _ = socket::send_to_nonblocking(fd, &[1], name);
                        }
                    }
                    return None;
                }
            }
        }
    }

    /// Drops the registration (on the port's drop).
    pub(crate) fn release(&self, event: &EventWord, armed: &AtomicU32) {
        if self.registered.replace(false) {
            armed.store(0, Ordering::Relaxed);
            event.unregister();
        }
    }
}

/// The process's unbound datagram socket used to send wake bytes.
fn sender() -> Result<&'static OwnedFd, Errno> {
    static SENDER: OnceLock<Result<OwnedFd, Errno>> = OnceLock::new();
    SENDER
        .get_or_init(|| socket::unix_socket(socket::Kind::Datagram))
        .as_ref()
        .map_err(|e| *e)
}

/// The notifier's side: bump `event`, and if a sleeper is registered and the
/// port armed its descriptor, send it one byte. No system call when nobody
/// sleeps. `port_id` is read after the swap (a new port in the slot stores
/// its id before it arms).
#[inline]
pub(crate) fn wake(
    event: &EventWord,
    armed: &AtomicU32,
    wake_prefix: &str,
    port_id: impl FnOnce() -> u64,
) {
    if event.wake_all_reporting() {
        wake_slow(armed, wake_prefix, port_id);
    }
}

#[cold]
fn wake_slow(armed: &AtomicU32, wake_prefix: &str, port_id: impl FnOnce() -> u64) {
    // Pairs with the Release registration CAS that our fetch_add read from:
    // the port's `armed = 1` store is visible to the swap below.
    fence(Ordering::Acquire);
    if armed.load(Ordering::Relaxed) == 0 || armed.swap(0, Ordering::AcqRel) == 0 {
        return;
    }
    let id = port_id();
    if id == 0 {
        return;
    }
    if let Ok(fd) = sender() {
        // EAGAIN (buffer full: already readable), ECONNREFUSED/ENOENT (the
        // port is gone): nothing to do either way.
        let _ = socket::send_to_nonblocking(fd, &[1], &wake_name(wake_prefix, id));
    }
}
