//! Waking a port through a file descriptor (for epoll, the WaitSet, async
//! runtimes): an abstract-namespace Unix datagram socket per port, armed
//! through a flag in shared memory (the `fd_armed` word of the port's slot,
//! `service::registry`).
//!
//! The protocol (details and proof below):
//!
//! * The port (listener or subscriber) binds a non-blocking datagram
//!   socket named `conduit.<domain>.wake.<port id, 16 hex>`
//!   (`Domain::wake_prefix`) in the abstract namespace the first time its
//!   descriptor is asked for. No file, and the name vanishes with the
//!   socket (with the process, however it dies).
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
//!   [`FdWake::poll`] sees `armed == 0`, unregisters, runs the check,
//!   drains, and arms again if it found nothing.
//!
//! The shared state (the port's pending bits or queues) is the truth; the
//! byte only wakes. A full socket buffer (`EAGAIN`) drops the byte, which is
//! harmless: a full buffer is a readable socket.
//!
//! # Arming, step by step
//!
//! [`FdWake::poll`], run by `try_wait` / `try_receive` once the descriptor
//! exists:
//!
//! 1. If registered and `fd_armed == 0` (a notifier consumed the arming):
//!    `unregister`.
//! 2. Snapshot the epoch; run the port's check (take pending bits / receive
//!    a sample); if something is there, return it.
//! 3. Drain the socket (non-blocking `recv` until `EAGAIN`).
//! 4. If still registered: if `fd_armed == 1`, return "nothing" (still
//!    armed); else a notifier disarmed us after step 2 and we may have
//!    drained its byte: unregister and go to 2.
//! 5. `fd_armed = 1`; `register(epoch)`: registered → return "nothing";
//!    epoch moved → go to 2; saturated (255 registrants) → send ourselves a
//!    byte (stay readable: polling, but correct).
//!
//! Notifier ([`wake`]): `wake_all_reporting()` (the epoch bump); only if it
//! saw a registered sleeper: `fence(Acquire)` (pairs with the Release
//! register CAS its `fetch_add` read from, so `fd_armed = 1` is visible),
//! then, unless a Relaxed load already reads 0, `swap(fd_armed, 0)`; if it
//! was 1, read the port's `id` (after the swap: a new port in the slot
//! stores its id before it arms) and, if it is not 0, `sendto` one byte
//! with `MSG_DONTWAIT`.
//!
//! **Why nothing is lost.** Once `register(epoch)` succeeds, every later
//! notification's `fetch_add` sees the registration and swaps `fd_armed`;
//! the first finds 1 and sends a byte. Notifications before the
//! registration were either seen by step 2 or moved the epoch (register
//! fails, look again). Step 4 covers a drain that swallows the byte of a
//! notifier that disarmed us after our check (found by the loom model of a
//! first version). The models `loom_event_fd_arming_loses_no_wakeup` and
//! `loom_event_fd_rearm_after_wakeup` (`event::loom_tests`) mirror these
//! steps (the socket itself is not under loom).
//!
//! **No system call on the fast path.** With nobody registered a notify is
//! the epoch `fetch_add` (for a listener, plus the `fetch_or` of its
//! pending bit, on the same line). A port that never asked for its
//! descriptor never registers; one that did registers only after a poll
//! found nothing (it is idle) and unregisters at its first poll after the
//! wake-up. So notifiers pay the `sendto` once per idle → busy transition
//! of a descriptor-waiting port, not per message, and a `FUTEX_WAKE` on an
//! empty queue (the registration counts as a sleeper) per notification
//! until that poll.
//!
//! # Why an abstract-namespace datagram socket
//!
//! The waiter needs a pollable descriptor that *another process* can make
//! readable without holding a descriptor of every waiter:
//!
//! * **eventfd** is the ideal object, but the notifier needs the
//!   descriptor: a connection per notifier–listener pair (fd passing with a
//!   rendezvous and reconnection after crashes), or `pidfd_getfd`, which
//!   needs ptrace permission (`PTRACE_MODE_ATTACH`, usually denied between
//!   siblings by Yama `ptrace_scope=1`).
//! * **A FIFO** is a filesystem object to create, protect and clean up
//!   after crashes; a writer needs `open` (a system call per wake or a
//!   cached descriptor per listener), and `O_NONBLOCK` opening fails
//!   without a reader.
//! * **An abstract Unix datagram socket** (chosen): the port binds
//!   `\0conduit.<domain>.wake.<port id, 16 hex>`; any process can `sendto`
//!   it with one system call from one unbound socket per process, no
//!   connection, no per-listener descriptor, no file; the name disappears
//!   with the socket, i.e. with the process, however it dies. A datagram
//!   to a dead port fails (`ECONNREFUSED`, ignored).
//!
//! **Full socket buffer**: `MSG_DONTWAIT` returns `EAGAIN` and the byte is
//! dropped; nothing blocks, nothing is lost (a full buffer is a readable
//! socket; the pending bits and queues are the truth). At most one byte
//! per arming is sent, so the buffer holds one or two.
//!
//! **Limits**: abstract names are per network namespace, so processes that
//! share `/dev/shm` but not a network namespace (containers) get futex
//! wake-ups but no descriptor wake-ups. Any local process of the namespace
//! can send bytes to the socket: only spurious wake-ups follow (the data
//! always comes from shared memory).
//!
//! # Using the descriptor (WaitSet, epoll, async)
//!
//! `Listener` and `Subscriber` implement `Attachable` with `fd()` =
//! `wake_fd()` and no `acknowledge` (the poll drains). After the source is
//! reported, call `try_wait` once (it takes every pending id) or
//! `try_receive` until it returns `None`: the call that finds nothing
//! re-arms. The first report after the descriptor is created may be
//! spurious (the port sends itself a byte so that what was notified before
//! it armed is looked at). `Attachable::fd` panics if the socket cannot be
//! created (out of descriptors); call `wake_fd()` first to get that as an
//! error. Once the descriptor exists an empty `try_wait` / `try_receive`
//! costs one non-blocking `recv` (the drain that keeps a late byte from
//! making the descriptor readable forever), so busy-polling loops should
//! not create it; blocking `wait()` / `receive()` never drain. Using both
//! `wait()` and the descriptor on one port is allowed (spurious wake-ups at
//! worst). tokio (`src/tokio.rs`): an `AsyncFd<OwnedFd>` over a duplicate
//! of the descriptor, created on first use and kept in the port's
//! [`FdWake::glue`] slot (dropped before the socket); `wait_async` /
//! `receive_async`: try (which arms) → `readable().await` → try →
//! `clear_ready()` → loop; cancel-safe, since nothing is taken unless the
//! future completes.

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
