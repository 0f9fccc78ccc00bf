//! A zero-copy typed channel between two processes that share nothing but
//! a connected Unix stream socket: one publisher, one subscriber, memory in
//! two anonymous memfd segments (no name in `/dev/shm` or anywhere else).
//!
//! ```no_run
//! use conduit::socket::{ShmChannel, UnixStream};
//! # fn demo(stream: UnixStream, other: UnixStream) -> Result<(), Box<dyn std::error::Error>> {
//! // Publisher side.
//! let (mut publisher, offer) = ShmChannel::<u64>::create(16)?;
//! offer.send_over(&stream)?;
//! publisher.loan()?.write(42).send()?;
//!
//! // Subscriber side (another process, holding the other end).
//! let subscriber = ShmChannel::<u64>::accept_from(&other)?;
//! let sample = subscriber.receive()?;
//! assert_eq!(*sample, 42);
//! # Ok(()) }
//! ```
//!
//! # Memory
//!
//! * The **data** segment holds `capacity` chunks of one `T` each. Only the
//!   publisher writes it. Once it has mapped it, the publisher seals it
//!   with `F_SEAL_FUTURE_WRITE` (Linux ≥ 5.1): the subscriber can only map
//!   it read-only, `mprotect` cannot make that mapping writable, and a
//!   store through it is a `SIGSEGV`. On an older kernel the seal is
//!   missing and the subscriber merely *chooses* to map read-only
//!   ([`Subscriber::is_write_sealed`] tells).
//! * The **control** segment, read-write for both, holds two
//!   single-producer single-consumer queues of chunk indices (publisher →
//!   subscriber, and the return queue back) and two [`EventWord`]s, every
//!   shared word on its own cache line. Layout and transitions below.
//!
//! Both segments are sealed against shrinking and growing, so mapping them
//! never raises `SIGBUS`, and carry a validated header whose fingerprint is
//! `T::LAYOUT.fingerprint` for the data segment: a subscriber built for
//! another type gets [`AcceptError::IncompatibleType`].
//!
//! # Edges
//!
//! * **Liveness is the socket.** Each side keeps a duplicate of its socket
//!   end; the other side's death (or closing every descriptor of its end)
//!   shows as `POLLHUP`/`POLLRDHUP`. Keep the socket open as long as the
//!   channel is used; dropping a [`Subscriber`] or [`Publisher`] closes only
//!   its own duplicate, so a process that wants to leave the channel while
//!   it keeps running must close its stream too.
//! * **Dead publisher**: the subscriber first drains whatever was queued,
//!   then [`ReceiveError::Disconnected`]. A blocking receive sleeps on the
//!   futex in slices of [`LIVENESS_SLICE`] and looks at the socket between
//!   slices, so it never hangs.
//! * **Dead subscriber**: the publisher notices it when it runs out of
//!   chunks, and otherwise at the latest [`CHECK_EVERY`] sends after the
//!   subscriber stopped consuming (it looks at the socket only while the
//!   queue is not empty, so a subscriber that keeps up costs no system
//!   call). It then takes every chunk the subscriber held or had queued
//!   back, and every later send or loan is [`SendError::Disconnected`] /
//!   [`LoanError::Disconnected`]. Messages sent between the death and its
//!   detection are lost.
//! * **Hostile peer**: every index and position read from the control
//!   segment is bounds-checked; nonsense is a `Corrupted` error, never
//!   undefined behaviour. A hostile peer can still garble what it is sent
//!   (e.g. claim a chunk back early and see it overwritten) — `T` is
//!   `ShmSafe`, valid for every bit pattern, so that is wrong data, not
//!   unsoundness — but it cannot make the other process fault.
//! * Messages sent before the subscriber attached wait in the queue.
//!
//! # Handshake
//!
//! [`Offer::send_over`] sends one stream message of 24 bytes (`"CDTCHAN1"`,
//! capacity `u32`, chunk stride `u32`, `T::LAYOUT.fingerprint` `u64`,
//! little endian) carrying two descriptors (`SCM_RIGHTS`): data, control.
//! [`ShmChannel::accept_from`] checks, in order: the magic; exactly two
//! descriptors; the type fingerprint ([`AcceptError::IncompatibleType`]);
//! capacity in `1..=`[`MAX_CAPACITY`]; the stride equal to its own
//! (`IncompatibleType`); both memfds sealed `F_SEAL_SHRINK | F_SEAL_GROW`
//! (`NotSealed`); both segment headers (`Segment::from_fd`: magic, version,
//! size, fingerprint — `T::LAYOUT.fingerprint` for data,
//! [`CONTROL_FINGERPRINT`] for control); the data area sizes against the
//! capacity and the capacity recorded in the control segment
//! (`SizeMismatch`). Both sides then keep a duplicate of their socket end
//! as the liveness channel.
//!
//! # Data segment (written by the publisher only)
//!
//! The 128-byte segment header, then `capacity` chunks of `stride` bytes:
//! `stride = max(size_of::<T>(), 1)` rounded up to a multiple of
//! `max(align_of::<T>(), 64)`; chunk `i` at data offset `i * stride`.
//! `align_of::<T>() ≤ `[`MAX_ALIGN`] (the data area starts 128 bytes into a
//! page). Seals: `F_SEAL_SHRINK | F_SEAL_GROW` at creation; once the
//! publisher has mapped it read-write and written the header,
//! `F_SEAL_FUTURE_WRITE | F_SEAL_SEAL`. From then on the kernel refuses any
//! new writable shared mapping (`mmap`: `EPERM`), `mprotect(PROT_WRITE)` of
//! a read-only one (`EACCES`), and `write(2)` (`EPERM`).
//!
//! # Control segment (read-write for both)
//!
//! The segment header, then 64-byte lines ([`LINE`]); each shared word owns
//! a whole line, an `AtomicU32` at its start.
//!
//! | line | data offset | word | written by | meaning |
//! |---|---|---|---|---|
//! | 0 | 0 | `capacity` | creator, once, before the header is ready | number of chunks `n` |
//! | 1 | 64 | `forward_tail` | publisher | positions pushed to the forward queue |
//! | 2 | 128 | `forward_head` | subscriber | positions popped from it |
//! | 3 | 192 | `return_tail` | subscriber | positions pushed to the return queue |
//! | 4 | 256 | `return_head` | publisher | positions popped from it |
//! | 5 | 320 | `data_ready` | [`EventWord`] | bumped by every send; the subscriber sleeps here |
//! | 6 | 384 | `chunk_free` | [`EventWord`] | bumped by every return; the publisher sleeps here waiting for a chunk |
//! | 7 + i | 448 + 64·i | forward slot `i` | publisher | chunk index |
//! | 7 + n + i | 448 + 64·(n + i) | return slot `i` | subscriber | chunk index |
//!
//! Data area: `(7 + 2n) · 64` bytes. Positions are free-running `u32`
//! counters (wrapping); the queue steps are in `socket/ring.rs`. Each side
//! keeps a private copy of the counter it alone writes, so a peer that
//! overwrites it cannot mislead its owner. Push: slot (Relaxed), then
//! `tail + 1` (Release: publishes the slot and, for the forward queue, the
//! chunk), then `wake_one` on the queue's event word (no system call unless
//! a sleeper registered). Pop: `tail` (Acquire); `tail − head` of 0 is
//! empty, more than `n` is `Corrupted`; read the slot, check it, `head + 1`
//! (Release, for the other side's full and length checks). Waiters use
//! `EventWord::wait_until` with a 10 µs spin.
//!
//! **Chunk states**, kept by the publisher in private memory and never
//! trusted from shared memory: `Free → Loaned` (loan) `→ Sent` (send)
//! `→ Free` (collected from the return queue, or reclaimed when the
//! subscriber died); `Loaned → Free` when a loan or unsent sample is
//! dropped. The subscriber keeps a private `held` flag per chunk.
//!
//! | where | check (every value read from the control segment) |
//! |---|---|
//! | subscriber pop | `forward_tail − head ≤ n`; index `< n`; index not already held |
//! | publisher send | `forward_tail − forward_head < n` (it holds one chunk, so at most `n − 1` others can be queued) |
//! | publisher collect | `return_tail − return_head ≤ n`; each index `< n` and in state `Sent` (returns before a bad one are kept) |
//! | subscriber return | `return_tail − return_head < n`; otherwise the chunk is dropped rather than a slot overwritten |
//!
//! # Liveness
//!
//! The socket is the only liveness channel (shared memory cannot tell that
//! a process died): `poll` with `POLLRDHUP` and a zero timeout;
//! `POLLHUP | POLLRDHUP | POLLERR` means the peer closed every descriptor
//! of its end, died, or shut its writing side down. The subscriber polls
//! only when its queue is empty, and sleeps in slices of [`LIVENESS_SLICE`]
//! so a dead publisher ends a blocking wait; after a hang-up it looks at the
//! queue once more (everything pushed before the death is visible) and
//! only an empty queue gives `Disconnected`. The publisher polls when no
//! chunk is free after collecting returns, and on send only while the
//! forward queue is non-empty, once every [`CHECK_EVERY`] such sends; on a
//! hang-up it marks itself disconnected and moves every `Sent` chunk back to
//! `Free`; a blocked `loan_timeout` wakes every slice to poll. The stream
//! may carry other traffic after the handshake: liveness polling never
//! reads it. The other process's end must not also be open in this process
//! (close it after spawning the child), or a death is never seen.

use core::marker::PhantomData;
use core::ptr::NonNull;
use std::cell::Cell;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::shm::{self, Segment, ShmSafe, TypeLayout};
use crate::sync::{EventWord, Spin};
use crate::sys::{self, Errno};

use super::UnixStream;
use super::ring::Ring;

/// A word of the control segment: a `sync` shim atomic, so that the ring
/// steps (`socket::ring`) run under loom.
type SharedWord = crate::sync::atomic::AtomicU32;

/// Size of one cache line: every shared word has one to itself.
pub const LINE: usize = 64;
/// Largest capacity (chunks) of a channel.
pub const MAX_CAPACITY: usize = 1 << 16;
/// Largest alignment of `T` (the data area starts 128 bytes into a page).
pub const MAX_ALIGN: usize = 128;
/// A blocked receive or loan looks at the socket this often.
pub const LIVENESS_SLICE: Duration = Duration::from_millis(25);
/// While the subscriber lags behind, the publisher looks at the socket
/// once every this many sends.
pub const CHECK_EVERY: u32 = 64;
/// How long a blocking receive or loan polls before it sleeps.
const SPIN: Spin = Spin::duration(Duration::from_micros(10));

/// Fingerprint of the control segment's layout (version 1).
pub const CONTROL_FINGERPRINT: u64 =
    TypeLayout::leaf("conduit::socket::channel::Control/v1", LINE, LINE).fingerprint;

/// First bytes of the offer message.
const OFFER_MAGIC: u64 = u64::from_le_bytes(*b"CDTCHAN1");
/// Offer message: magic, capacity, stride, type fingerprint.
const OFFER_LEN: usize = 24;

// Cache lines of the control data area.
const CAPACITY_LINE: usize = 0;
const FORWARD_TAIL_LINE: usize = 1;
const FORWARD_HEAD_LINE: usize = 2;
const RETURN_TAIL_LINE: usize = 3;
const RETURN_HEAD_LINE: usize = 4;
const DATA_READY_LINE: usize = 5;
const CHUNK_FREE_LINE: usize = 6;
const FIRST_SLOT_LINE: usize = 7;

/// Bytes of the control data area for `capacity` chunks.
fn control_size(capacity: usize) -> usize {
    (FIRST_SLOT_LINE + 2 * capacity) * LINE
}

/// Bytes between two chunks: `T` rounded up to whole cache lines (at
/// least one line, and at least `T`'s alignment).
fn chunk_stride<T>() -> usize {
    size_of::<T>()
        .max(1)
        .next_multiple_of(align_of::<T>().max(LINE))
}

/// Why a channel could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// Capacity 0 or above [`MAX_CAPACITY`].
    #[error("capacity {capacity} is outside 1..={MAX_CAPACITY}")]
    InvalidCapacity {
        /// The capacity asked for.
        capacity: usize,
    },
    /// `T` is aligned beyond [`MAX_ALIGN`].
    #[error("alignment {align} of the message type exceeds {MAX_ALIGN}")]
    UnsupportedAlignment {
        /// `align_of::<T>()`.
        align: usize,
    },
    /// Creating a memfd segment failed.
    #[error("cannot create the channel's memory")]
    Segment(#[from] shm::CreateError),
}

/// Why an [`Offer`] could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// The peer closed its end of the socket or died.
    #[error("the peer is gone")]
    PeerGone(#[source] super::SendError),
    /// Another socket error (e.g. a non-blocking socket that is full).
    #[error("cannot send the channel offer")]
    Send(#[source] super::SendError),
    /// Duplicating the socket descriptor for the liveness check failed.
    #[error("cannot duplicate the socket descriptor")]
    Duplicate(#[source] Errno),
}

/// Why [`ShmChannel::accept_from`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The peer closed the socket before the offer arrived.
    #[error("the peer closed the socket before offering a channel")]
    PeerGone,
    /// Receiving the offer failed.
    #[error("cannot receive the channel offer")]
    Receive(#[source] super::RecvError),
    /// What arrived is not a channel offer.
    #[error("not a channel offer: {0}")]
    Protocol(&'static str),
    /// The publisher sends another type (layout fingerprints differ).
    #[error(
        "the channel carries another type: fingerprint {found:#018x}, expected {expected:#018x} ({type_name})"
    )]
    IncompatibleType {
        /// Name of the subscriber's `T`.
        type_name: &'static str,
        /// `T::LAYOUT.fingerprint`.
        expected: u64,
        /// The fingerprint offered.
        found: u64,
    },
    /// A segment is not sealed against shrinking and growing.
    #[error("the {segment} segment is not sealed against shrinking and growing")]
    NotSealed {
        /// "data" or "control".
        segment: &'static str,
    },
    /// A segment is smaller than the offered capacity needs, or the
    /// offered capacity is out of range.
    #[error("the {segment} segment does not match capacity {capacity}: {reason}")]
    SizeMismatch {
        /// "data" or "control".
        segment: &'static str,
        /// Capacity offered.
        capacity: u64,
        /// What does not fit.
        reason: String,
    },
    /// Adopting a segment failed (header validation, mmap...).
    #[error("cannot map the {segment} segment")]
    Segment {
        /// "data" or "control".
        segment: &'static str,
        /// What failed.
        #[source]
        source: shm::OpenError,
    },
    /// Duplicating the socket descriptor failed.
    #[error("cannot duplicate the socket descriptor")]
    Duplicate(#[source] Errno),
}

/// A value read from the control segment that the protocol cannot
/// produce: the peer is broken or hostile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupted channel control segment: {what} = {value}")]
pub struct Corruption {
    /// Which word or slot.
    pub what: &'static str,
    /// The value found.
    pub value: u64,
}

/// Why no chunk could be loaned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoanError {
    /// Every chunk is loaned, queued or held by the subscriber.
    #[error("all chunks are in use")]
    Exhausted,
    /// No chunk came back within the timeout.
    #[error("no chunk became free in time")]
    Timeout,
    /// The subscriber is gone (its chunks were reclaimed).
    #[error("the subscriber is gone")]
    Disconnected,
    /// The control segment holds nonsense.
    #[error(transparent)]
    Corrupted(#[from] Corruption),
    /// Looking at the socket failed.
    #[error("cannot poll the socket")]
    Os(#[source] Errno),
}

/// Why a sample could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The subscriber is gone; the sample was not delivered and its chunk
    /// is free again.
    #[error("the subscriber is gone")]
    Disconnected,
    /// The control segment holds nonsense.
    #[error(transparent)]
    Corrupted(#[from] Corruption),
    /// Looking at the socket failed.
    #[error("cannot poll the socket")]
    Os(#[source] Errno),
}

/// Why [`Publisher::send_copy`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendCopyError {
    /// No chunk.
    #[error(transparent)]
    Loan(#[from] LoanError),
    /// Not sent.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Why nothing was received.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The publisher is gone and everything it queued has been received.
    #[error("the publisher is gone")]
    Disconnected,
    /// The control segment holds nonsense.
    #[error(transparent)]
    Corrupted(#[from] Corruption),
    /// Looking at the socket failed.
    #[error("cannot poll the socket")]
    Os(#[source] Errno),
}

/// Entry point: creates channels and accepts them.
#[derive(Debug)]
pub struct ShmChannel<T>(PhantomData<fn() -> T>);

/// The control data area of a mapped control segment, validated to hold
/// `capacity` chunks.
#[derive(Debug, Clone, Copy)]
struct Control {
    base: NonNull<u8>,
    capacity: u32,
}

impl Control {
    /// # Safety
    ///
    /// `region` must be at least `control_size(capacity)` bytes, aligned to
    /// [`LINE`], and outlive every use of the returned value.
    unsafe fn new(region: &shm::Region, capacity: u32) -> Control {
        debug_assert!(region.len() >= control_size(capacity as usize));
        Control {
            base: region.base(),
            capacity,
        }
    }

    fn word(&self, line: usize) -> &SharedWord {
        assert!(line < FIRST_SLOT_LINE + 2 * self.capacity as usize);
        // SAFETY: `line` is inside the area validated by `new`, every line
        // is 64-byte aligned, and the memory is only ever accessed through
        // atomics (valid for any bit pattern, no data race).
        unsafe { &*self.base.as_ptr().add(line * LINE).cast::<SharedWord>() }
    }

    fn event(&self, line: usize) -> &EventWord {
        let word = self.word(line);
        // SAFETY: EventWord is a repr(C) wrapper of one AtomicU32; any bit
        // pattern is a valid state of it.
        unsafe { &*(word as *const SharedWord).cast::<EventWord>() }
    }

    fn forward_slot(&self, position: u32) -> &SharedWord {
        self.word(FIRST_SLOT_LINE + (position % self.capacity) as usize)
    }

    fn return_slot(&self, position: u32) -> &SharedWord {
        self.word(FIRST_SLOT_LINE + (self.capacity + position % self.capacity) as usize)
    }

    /// The forward queue (publisher → subscriber).
    fn forward<'a>(&'a self) -> Ring<'a, impl Fn(u32) -> &'a SharedWord + 'a> {
        Ring {
            head: self.word(FORWARD_HEAD_LINE),
            tail: self.word(FORWARD_TAIL_LINE),
            slot: move |p| self.forward_slot(p),
        }
    }

    /// The return queue (subscriber → publisher).
    fn returns<'a>(&'a self) -> Ring<'a, impl Fn(u32) -> &'a SharedWord + 'a> {
        Ring {
            head: self.word(RETURN_HEAD_LINE),
            tail: self.word(RETURN_TAIL_LINE),
            slot: move |p| self.return_slot(p),
        }
    }
}

fn corrupted(what: &'static str, value: impl Into<u64>) -> Corruption {
    Corruption {
        what,
        value: value.into(),
    }
}

/// Where a chunk is, as the publisher sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Free,
    Loaned,
    /// Queued or held by the subscriber.
    Sent,
}

impl<T: ShmSafe> ShmChannel<T> {
    /// Creates a channel of `capacity` chunks: the publisher, and the offer
    /// to send to the subscriber's process with [`Offer::send_over`].
    pub fn create(capacity: usize) -> Result<(Publisher<T>, Offer), CreateError> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(CreateError::InvalidCapacity { capacity });
        }
        if align_of::<T>() > MAX_ALIGN {
            return Err(CreateError::UnsupportedAlignment {
                align: align_of::<T>(),
            });
        }
        let stride = chunk_stride::<T>();
        let data_size = capacity
            .checked_mul(stride)
            .filter(|_| u32::try_from(stride).is_ok())
            .ok_or(shm::CreateError::TooLarge {
                requested: u64::MAX,
            })?;
        let data = Segment::builder("socket-channel-data")
            .size(data_size)
            .fingerprint(T::LAYOUT.fingerprint)
            .seal_future_write()
            .create_anonymous()?;
        let control = Segment::builder("socket-channel-control")
            .size(control_size(capacity))
            .fingerprint(CONTROL_FINGERPRINT)
            .init(|region| {
                let word = region
                    .resolve::<AtomicU32>(CAPACITY_LINE * LINE)
                    .map_err(|e| e.to_string())?;
                // SAFETY: resolve checked bounds and alignment; the area is
                // only accessed through atomics.
                unsafe { word.as_ref() }.store(capacity as u32, Ordering::Relaxed);
                Ok(())
            })
            .create_anonymous()?;
        let dup = |s: &Segment| {
            sys::fd::duplicate(s.fd()).map_err(|source| {
                CreateError::Segment(shm::CreateError::Os {
                    op: "dup",
                    name: "memfd".to_owned(),
                    source,
                })
            })
        };
        let peer = Arc::new(OnceLock::new());
        let offer = Offer {
            data: dup(&data)?,
            control: dup(&control)?,
            capacity: capacity as u32,
            stride: stride as u32,
            fingerprint: T::LAYOUT.fingerprint,
            peer: Arc::clone(&peer),
        };
        // SAFETY: the control data area is at least control_size(capacity)
        // bytes (asked for above), starts 128 bytes into a page, and lives
        // as long as `control`, which the publisher owns.
        let ctl = unsafe { Control::new(&control.data(), capacity as u32) };
        let publisher = Publisher {
            chunks: data.data().base(),
            data,
            control,
            ctl,
            stride,
            free: (0..capacity as u32).rev().collect(),
            state: vec![ChunkState::Free; capacity],
            forward_tail: 0,
            return_head: 0,
            unchecked_sends: 0,
            disconnected: false,
            peer,
            _type: PhantomData,
        };
        Ok((publisher, offer))
    }

    /// Receives a channel offer from `stream`, checks it (message format,
    /// seals, headers, `T`'s layout fingerprint, sizes) and maps it: the
    /// data segment read-only, the control segment read-write. Blocks until
    /// the offer arrives (unless the socket is non-blocking).
    pub fn accept_from(stream: &UnixStream) -> Result<Subscriber<T>, AcceptError> {
        let mut message = [0u8; OFFER_LEN];
        let (got, fds) = stream
            .recv_with_fds(&mut message)
            .map_err(AcceptError::Receive)?;
        if got == 0 {
            return Err(AcceptError::PeerGone);
        }
        let mut filled = got;
        while filled < OFFER_LEN {
            match stream.recv(&mut message[filled..]) {
                Ok(0) => return Err(AcceptError::PeerGone),
                Ok(n) => filled += n,
                Err(e) => return Err(AcceptError::Receive(e)),
            }
        }
        let u64_at = |at: usize| u64::from_le_bytes(message[at..at + 8].try_into().unwrap());
        let u32_at = |at: usize| u32::from_le_bytes(message[at..at + 4].try_into().unwrap());
        if u64_at(0) != OFFER_MAGIC {
            return Err(AcceptError::Protocol("bad magic"));
        }
        let capacity = u32_at(8);
        let stride = u32_at(12);
        let found = u64_at(16);
        let [data_fd, control_fd]: [OwnedFd; 2] = fds
            .try_into()
            .map_err(|_| AcceptError::Protocol("expected exactly two descriptors"))?;
        let expected = T::LAYOUT.fingerprint;
        if found != expected {
            return Err(AcceptError::IncompatibleType {
                type_name: T::LAYOUT.name,
                expected,
                found,
            });
        }
        if capacity == 0 || capacity as usize > MAX_CAPACITY {
            return Err(AcceptError::SizeMismatch {
                segment: "control",
                capacity: capacity.into(),
                reason: format!("capacity outside 1..={MAX_CAPACITY}"),
            });
        }
        if stride as usize != chunk_stride::<T>() {
            return Err(AcceptError::IncompatibleType {
                type_name: T::LAYOUT.name,
                expected,
                found,
            });
        }
        for (segment, fd) in [("data", &data_fd), ("control", &control_fd)] {
            let seals = sys::memfd::seals(fd).map_err(|_| AcceptError::NotSealed { segment })?;
            if !(seals.shrink && seals.grow) {
                return Err(AcceptError::NotSealed { segment });
            }
        }
        let data = Segment::from_fd(data_fd, Some(expected), true).map_err(|e| match e {
            shm::OpenError::FingerprintMismatch { found, .. } => AcceptError::IncompatibleType {
                type_name: T::LAYOUT.name,
                expected,
                found,
            },
            source => AcceptError::Segment {
                segment: "data",
                source,
            },
        })?;
        let control =
            Segment::from_fd(control_fd, Some(CONTROL_FINGERPRINT), false).map_err(|source| {
                AcceptError::Segment {
                    segment: "control",
                    source,
                }
            })?;
        let need_data = capacity as usize * stride as usize;
        if data.data().len() < need_data {
            return Err(AcceptError::SizeMismatch {
                segment: "data",
                capacity: capacity.into(),
                reason: format!("{} bytes, need {need_data}", data.data().len()),
            });
        }
        let need_control = control_size(capacity as usize);
        if control.data().len() < need_control {
            return Err(AcceptError::SizeMismatch {
                segment: "control",
                capacity: capacity.into(),
                reason: format!("{} bytes, need {need_control}", control.data().len()),
            });
        }
        // SAFETY: size checked just above; the data area starts 128 bytes
        // into a page; `control` lives in the subscriber next to `ctl`.
        let ctl = unsafe { Control::new(&control.data(), capacity) };
        let recorded = ctl.word(CAPACITY_LINE).load(Ordering::Relaxed);
        if recorded != capacity {
            return Err(AcceptError::SizeMismatch {
                segment: "control",
                capacity: capacity.into(),
                reason: format!("the segment records capacity {recorded}"),
            });
        }
        let write_sealed = sys::memfd::seals(data.fd())
            .map(|s| s.future_write)
            .unwrap_or(false);
        let peer = sys::fd::duplicate(stream.as_fd()).map_err(AcceptError::Duplicate)?;
        Ok(Subscriber {
            chunks: data.data().base(),
            data,
            control,
            ctl,
            stride: stride as usize,
            forward_head: Cell::new(ctl.word(FORWARD_HEAD_LINE).load(Ordering::Acquire)),
            return_tail: Cell::new(ctl.word(RETURN_TAIL_LINE).load(Ordering::Acquire)),
            held: (0..capacity).map(|_| Cell::new(false)).collect(),
            write_sealed,
            peer,
            publisher_gone: Cell::new(false),
            _type: PhantomData,
        })
    }
}

/// The two segments of a new channel, to be sent to the subscriber's
/// process once.
#[derive(Debug)]
pub struct Offer {
    data: OwnedFd,
    control: OwnedFd,
    capacity: u32,
    stride: u32,
    fingerprint: u64,
    peer: Arc<OnceLock<OwnedFd>>,
}

impl Offer {
    /// Sends both segments over `stream` (one message: 24 bytes and two
    /// descriptors) and keeps a duplicate of the socket in the publisher
    /// as its liveness channel.
    pub fn send_over(self, stream: &UnixStream) -> Result<(), OfferError> {
        let mut message = [0u8; OFFER_LEN];
        message[0..8].copy_from_slice(&OFFER_MAGIC.to_le_bytes());
        message[8..12].copy_from_slice(&self.capacity.to_le_bytes());
        message[12..16].copy_from_slice(&self.stride.to_le_bytes());
        message[16..24].copy_from_slice(&self.fingerprint.to_le_bytes());
        let classify = |e: super::SendError| match e {
            super::SendError::PeerGone(_) => OfferError::PeerGone(e),
            e => OfferError::Send(e),
        };
        let mut sent = stream
            .send_with_fds(&message, &[self.data.as_fd(), self.control.as_fd()])
            .map_err(classify)?;
        while sent < OFFER_LEN {
            sent += stream.send(&message[sent..]).map_err(classify)?;
        }
        let dup = sys::fd::duplicate(stream.as_fd()).map_err(OfferError::Duplicate)?;
        let _ = self.peer.set(dup);
        Ok(())
    }
}

/// The sending end. Create it with [`ShmChannel::create`].
#[derive(Debug)]
pub struct Publisher<T: ShmSafe> {
    data: Segment,
    control: Segment,
    ctl: Control,
    chunks: NonNull<u8>,
    stride: usize,
    /// Free chunk indices (a stack: the most recently freed is warm).
    free: Vec<u32>,
    state: Vec<ChunkState>,
    /// Our copy of the forward queue's tail (we are its only writer).
    forward_tail: u32,
    /// Our copy of the return queue's head (we are its only writer).
    return_head: u32,
    unchecked_sends: u32,
    disconnected: bool,
    peer: Arc<OnceLock<OwnedFd>>,
    _type: PhantomData<T>,
}

// SAFETY: the raw pointers point into segments the publisher owns; nothing
// is shared with other threads of this process (the publisher is not Sync).
unsafe impl<T: ShmSafe + Send> Send for Publisher<T> {}

impl<T: ShmSafe> Publisher<T> {
    /// Number of chunks.
    pub fn capacity(&self) -> usize {
        self.state.len()
    }

    /// The data segment (the publisher's writable mapping).
    pub fn data_segment(&self) -> &Segment {
        &self.data
    }

    /// The control segment, for inspection (and fault-injection tests).
    pub fn control_segment(&self) -> &Segment {
        &self.control
    }

    /// Chunks the publisher can loan without waiting for the subscriber
    /// (returned ones not yet collected do not count).
    pub fn free_chunks(&self) -> usize {
        self.free.len()
    }

    /// Whether the subscriber is known to be gone.
    pub fn is_disconnected(&self) -> bool {
        self.disconnected
    }

    /// Loans a free chunk without waiting: [`LoanError::Exhausted`] when
    /// the subscriber holds or has queued every chunk.
    pub fn loan(&mut self) -> Result<Loan<'_, T>, LoanError> {
        let index = self.take_chunk()?.ok_or(LoanError::Exhausted)?;
        Ok(Loan {
            publisher: self,
            index,
        })
    }

    /// Loans a chunk, waiting up to `timeout` (`None`: without limit) for
    /// the subscriber to return one. Ends early with
    /// [`LoanError::Disconnected`] if the subscriber dies meanwhile.
    pub fn loan_timeout(&mut self, timeout: Option<Duration>) -> Result<Loan<'_, T>, LoanError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut spin = SPIN;
        let index = loop {
            if let Some(index) = self.take_chunk()? {
                break index;
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if remaining == Some(Duration::ZERO) {
                return Err(LoanError::Timeout);
            }
            let slice = remaining.map_or(LIVENESS_SLICE, |r| r.min(LIVENESS_SLICE));
            let ctl = self.ctl;
            let head = self.return_head;
            ctl.event(CHUNK_FREE_LINE)
                .wait_until(spin, Some(slice), || {
                    (ctl.returns().producer_tail() != head).then_some(())
                });
            spin = Spin::NONE;
        };
        Ok(Loan {
            publisher: self,
            index,
        })
    }

    /// Copies `value` into a chunk and sends it.
    pub fn send_copy(&mut self, value: T) -> Result<(), SendCopyError> {
        self.loan()?.write(value).send()?;
        Ok(())
    }

    /// A free chunk, after collecting the returned ones if needed; `None`
    /// if none is free and the subscriber lives.
    fn take_chunk(&mut self) -> Result<Option<u32>, LoanError> {
        if self.disconnected {
            return Err(LoanError::Disconnected);
        }
        if self.free.is_empty() {
            self.collect_returns()?;
        }
        if let Some(index) = self.free.pop() {
            self.state[index as usize] = ChunkState::Loaned;
            return Ok(Some(index));
        }
        if self.peer_gone().map_err(LoanError::Os)? {
            return Err(LoanError::Disconnected);
        }
        Ok(None)
    }

    /// Takes back what the subscriber returned.
    fn collect_returns(&mut self) -> Result<(), Corruption> {
        let ctl = self.ctl;
        let ring = ctl.returns();
        let tail = ring.producer_tail();
        let head = self.return_head;
        let count = tail.wrapping_sub(head);
        if count > self.ctl.capacity {
            return Err(corrupted("return queue length", count));
        }
        for position in (0..count).map(|i| head.wrapping_add(i)) {
            let index = ring.read(position);
            let state = self.state.get(index as usize).copied();
            if state != Some(ChunkState::Sent) {
                return Err(corrupted("returned chunk index", index));
            }
            self.state[index as usize] = ChunkState::Free;
            self.free.push(index);
            // Advance one at a time, so a corrupt entry later in the queue
            // does not lose the good ones before it.
            self.return_head = position.wrapping_add(1);
        }
        // Release: the subscriber's slot writes are done with.
        ring.consumed(self.return_head);
        Ok(())
    }

    /// Whether the subscriber's end of the socket is closed; if so, marks
    /// the channel disconnected and reclaims every chunk it had.
    #[cold]
    fn peer_gone(&mut self) -> Result<bool, Errno> {
        if self.disconnected {
            return Ok(true);
        }
        let Some(peer) = self.peer.get() else {
            return Ok(false);
        };
        if !sys::socket::peer_hung_up(peer)? {
            return Ok(false);
        }
        self.disconnected = true;
        for (index, state) in self.state.iter_mut().enumerate() {
            if *state == ChunkState::Sent {
                *state = ChunkState::Free;
                self.free.push(index as u32);
            }
        }
        Ok(true)
    }

    fn chunk(&self, index: u32) -> *mut T {
        debug_assert!((index as usize) < self.state.len());
        // SAFETY: index < capacity, and the data area holds capacity
        // chunks of `stride` bytes each.
        unsafe {
            self.chunks
                .as_ptr()
                .add(index as usize * self.stride)
                .cast::<T>()
        }
    }

    fn publish(&mut self, index: u32) -> Result<(), SendError> {
        let give_back = |p: &mut Self| {
            p.state[index as usize] = ChunkState::Free;
            p.free.push(index);
        };
        if self.disconnected {
            give_back(self);
            return Err(SendError::Disconnected);
        }
        let ctl = self.ctl;
        let ring = ctl.forward();
        let head = ring.consumer_head();
        let queued = self.forward_tail.wrapping_sub(head);
        if queued >= self.ctl.capacity {
            // At most capacity - 1 other chunks can be queued while we hold
            // this one: the subscriber wrote nonsense.
            give_back(self);
            return Err(corrupted("forward queue head", head).into());
        }
        if queued > 0 {
            self.unchecked_sends += 1;
            if self.unchecked_sends >= CHECK_EVERY {
                self.unchecked_sends = 0;
                let gone = self.peer_gone();
                if gone != Ok(false) {
                    give_back(self);
                    return Err(gone.map_or_else(SendError::Os, |_| SendError::Disconnected));
                }
            }
        } else {
            self.unchecked_sends = 0;
        }
        // Release: publishes the chunk's contents and the slot.
        self.forward_tail = ring.push(self.forward_tail, index);
        self.state[index as usize] = ChunkState::Sent;
        self.ctl.event(DATA_READY_LINE).wake_one();
        Ok(())
    }

    fn release(&mut self, index: u32) {
        self.state[index as usize] = ChunkState::Free;
        self.free.push(index);
    }
}

/// A loaned chunk, not yet written. Dropping it frees the chunk.
#[derive(Debug)]
pub struct Loan<'p, T: ShmSafe> {
    publisher: &'p mut Publisher<T>,
    index: u32,
}

impl<'p, T: ShmSafe> Loan<'p, T> {
    /// Writes the message into the chunk.
    pub fn write(self, value: T) -> SampleMut<'p, T> {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the reference is moved out
        // exactly once.
        let publisher = unsafe { core::ptr::read(&this.publisher) };
        let index = this.index;
        // SAFETY: the chunk is loaned to us (state Loaned): nobody else
        // writes it, it is aligned (stride and the data area are multiples
        // of T's alignment) and large enough for a T.
        unsafe { publisher.chunk(index).write(value) };
        SampleMut { publisher, index }
    }
}

impl<T: ShmSafe> Drop for Loan<'_, T> {
    fn drop(&mut self) {
        self.publisher.release(self.index);
    }
}

/// A written chunk, ready to send; derefs to the message. Dropping it
/// without sending frees the chunk.
#[derive(Debug)]
pub struct SampleMut<'p, T: ShmSafe> {
    publisher: &'p mut Publisher<T>,
    index: u32,
}

impl<T: ShmSafe> SampleMut<'_, T> {
    /// Hands the chunk to the subscriber and wakes it if it sleeps.
    pub fn send(self) -> Result<(), SendError> {
        let mut this = core::mem::ManuallyDrop::new(self);
        let index = this.index;
        this.publisher.publish(index)
    }
}

impl<T: ShmSafe> core::ops::Deref for SampleMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: written by `Loan::write`, loaned to us alone.
        unsafe { &*self.publisher.chunk(self.index) }
    }
}

impl<T: ShmSafe> core::ops::DerefMut for SampleMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in deref; `&mut self` makes the access exclusive.
        unsafe { &mut *self.publisher.chunk(self.index) }
    }
}

impl<T: ShmSafe> Drop for SampleMut<'_, T> {
    fn drop(&mut self) {
        self.publisher.release(self.index);
    }
}

/// The receiving end. Get it with [`ShmChannel::accept_from`].
#[derive(Debug)]
pub struct Subscriber<T: ShmSafe> {
    data: Segment,
    control: Segment,
    ctl: Control,
    chunks: NonNull<u8>,
    stride: usize,
    /// Our copy of the forward queue's head (we are its only writer).
    forward_head: Cell<u32>,
    /// Our copy of the return queue's tail (we are its only writer).
    return_tail: Cell<u32>,
    /// Chunks held as samples (a chunk queued twice is corruption).
    held: Vec<Cell<bool>>,
    write_sealed: bool,
    peer: OwnedFd,
    publisher_gone: Cell<bool>,
    _type: PhantomData<T>,
}

// SAFETY: the raw pointers point into segments the subscriber owns; Cell
// fields make it !Sync, so one thread at a time uses it.
unsafe impl<T: ShmSafe + Send> Send for Subscriber<T> {}

impl<T: ShmSafe> Subscriber<T> {
    /// Number of chunks.
    pub fn capacity(&self) -> usize {
        self.held.len()
    }

    /// The data segment (mapped read-only).
    pub fn data_segment(&self) -> &Segment {
        &self.data
    }

    /// The control segment, for inspection (and fault-injection tests).
    pub fn control_segment(&self) -> &Segment {
        &self.control
    }

    /// Whether the data segment carries `F_SEAL_FUTURE_WRITE`, i.e. the
    /// kernel (not only this library) keeps this process from writing it.
    pub fn is_write_sealed(&self) -> bool {
        self.write_sealed
    }

    /// The next message, if one is queued. When none is, looks at the
    /// socket (one `poll`): a dead publisher is
    /// [`ReceiveError::Disconnected`].
    pub fn try_receive(&self) -> Result<Option<Sample<'_, T>>, ReceiveError> {
        if let Some(index) = self.pop()? {
            return Ok(Some(self.sample(index)));
        }
        self.check_publisher()?;
        // Something may have arrived meanwhile (or before a death).
        Ok(self.pop()?.map(|index| self.sample(index)))
    }

    /// The next message, waiting up to `timeout` (`None`: no limit; then
    /// `Ok(None)`). Spins briefly, then sleeps on the futex in slices of
    /// [`LIVENESS_SLICE`], looking at the socket between slices.
    pub fn receive_timeout(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<Sample<'_, T>>, ReceiveError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut spin = SPIN;
        loop {
            if let Some(index) = self.pop()? {
                return Ok(Some(self.sample(index)));
            }
            self.check_publisher()?;
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if remaining == Some(Duration::ZERO) {
                return Ok(None);
            }
            let slice = remaining.map_or(LIVENESS_SLICE, |r| r.min(LIVENESS_SLICE));
            let got = self
                .ctl
                .event(DATA_READY_LINE)
                .wait_until(spin, Some(slice), || self.pop().transpose());
            spin = Spin::NONE;
            if let Some(index) = got.transpose()? {
                return Ok(Some(self.sample(index)));
            }
        }
    }

    /// The next message, waiting as long as it takes; a dead publisher
    /// ends the wait with [`ReceiveError::Disconnected`].
    pub fn receive(&self) -> Result<Sample<'_, T>, ReceiveError> {
        loop {
            if let Some(sample) = self.receive_timeout(None)? {
                return Ok(sample);
            }
        }
    }

    fn sample(&self, index: u32) -> Sample<'_, T> {
        Sample {
            subscriber: self,
            index,
        }
    }

    /// Errors with `Disconnected` if the publisher is gone and nothing is
    /// left in the queue.
    fn check_publisher(&self) -> Result<(), ReceiveError> {
        if !self.publisher_gone.get() {
            if !sys::socket::peer_hung_up(&self.peer).map_err(ReceiveError::Os)? {
                return Ok(());
            }
            self.publisher_gone.set(true);
        }
        // What it queued before dying is visible now: look once more.
        let tail = self.ctl.forward().producer_tail();
        if tail != self.forward_head.get() {
            return Ok(());
        }
        Err(ReceiveError::Disconnected)
    }

    /// Takes the next index from the forward queue, checking it.
    fn pop(&self) -> Result<Option<u32>, Corruption> {
        // Acquire: pairs with the publisher's Release store of the tail,
        // making the slot and the chunk's contents visible.
        let ring = self.ctl.forward();
        let tail = ring.producer_tail();
        let head = self.forward_head.get();
        let available = tail.wrapping_sub(head);
        if available == 0 {
            return Ok(None);
        }
        if available > self.ctl.capacity {
            return Err(corrupted("forward queue tail", tail));
        }
        let index = ring.read(head);
        let held = self
            .held
            .get(index as usize)
            .ok_or_else(|| corrupted("queued chunk index", index))?;
        if held.replace(true) {
            return Err(corrupted("queued chunk index (already held)", index));
        }
        let head = head.wrapping_add(1);
        self.forward_head.set(head);
        ring.consumed(head);
        Ok(Some(index))
    }

    /// Gives a chunk back to the publisher.
    fn give_back(&self, index: u32) {
        self.held[index as usize].set(false);
        let ring = self.ctl.returns();
        let tail = self.return_tail.get();
        let head = ring.consumer_head();
        if tail.wrapping_sub(head) >= self.ctl.capacity {
            // Cannot happen unless the publisher corrupted its head: the
            // chunk is lost rather than a slot overwritten.
            return;
        }
        self.return_tail.set(ring.push(tail, index));
        self.ctl.event(CHUNK_FREE_LINE).wake_one();
    }
}

/// A received message; derefs to it and returns its chunk to the
/// publisher when dropped.
#[derive(Debug)]
pub struct Sample<'s, T: ShmSafe> {
    subscriber: &'s Subscriber<T>,
    index: u32,
}

impl<T: ShmSafe> Sample<'_, T> {
    /// The chunk's index (for diagnostics).
    pub fn chunk_index(&self) -> u32 {
        self.index
    }
}

impl<T: ShmSafe> core::ops::Deref for Sample<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        let s = self.subscriber;
        debug_assert!((self.index as usize) < s.held.len());
        // SAFETY: index < capacity (checked by pop), so the chunk lies in
        // the read-only data mapping, aligned for T; T is ShmSafe, valid
        // for every bit pattern; the publisher does not write a chunk
        // between sending it and getting it back.
        unsafe {
            &*s.chunks
                .as_ptr()
                .add(self.index as usize * s.stride)
                .cast::<T>()
        }
    }
}

impl<T: ShmSafe> Drop for Sample<'_, T> {
    fn drop(&mut self) {
        self.subscriber.give_back(self.index);
    }
}
