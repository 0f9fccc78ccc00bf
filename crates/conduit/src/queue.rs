//! The shared-memory steps of one single-producer queue connection
//! (producer slot p → consumer slot s): delivery queue, drop-oldest,
//! return queue and the connect handshake. It lives below the patterns:
//! publish/subscribe (publisher → subscriber, `pubsub`) and
//! request/response (client → server for requests, server → client for
//! responses, `reqres`) both use it, and neither imports the other. Below,
//! "publisher" is the producer side of a connection and "subscriber" its
//! consumer side.
//!
//! Every access to the connection's shared words goes through these
//! functions, which take plain references to the words ([`Conn`]) and use
//! the `sync::atomic` shim: the ports call them on the mapped segment,
//! and the loom models (`pubsub::loom_tests`) call the very same functions
//! on loom atomics. The process-local bookkeeping (chunk holders, free
//! list, cached heads) stays in the ports. The words of a connection and
//! their place in a segment are listed in each pattern's layout module
//! (`pubsub::layout` and `reqres::layout`, "Every shared word"); the
//! protocol is below.
//!
//! The `len` word's low 32 bits are the producer's to use: pub/sub puts
//! the payload length there, request/response the request id.
//!
//! # The entry word (`u64`, written only by the publisher)
//!
//! ```text
//!  63            32 31  30     24 23            0
//! +----------------+---+---------+---------------+
//! | seq (32, wrap) | 0 | gen (7) | chunk (24)    |
//! +----------------+---+---------+---------------+
//! ```
//!
//! (encoded by `pubsub::entry`, decoded by `entry_seq`, `entry_gen` and
//! `CHUNK_MASK`). `seq` = logical position + 1 (0 = never written).
//! Position `i` lives in slot `i & (ring − 1)`. The publisher writes
//! position `t` only when `t − head < subscriber_buffer`, so the slot of
//! the position `h` the subscriber looks at holds `seq = h + 1`
//! (published), less (not yet written: empty) or more (the publisher
//! dropped `h` and reused the slot; then `head > h`). Next to it,
//! `Entry.len` holds `seq << 32 | length`.
//!
//! # Claiming and dropping: one CAS on `head`, by either side
//!
//! | who | when | operation | outcome |
//! |---|---|---|---|
//! | subscriber ([`Conn::pop`]) | entry `h` reads `seq = h + 1`, the connection's generation and a length word of the same sequence | `CAS(head, h, h + 1)` | success: it owns the chunk (returned after the sample drops); failure: the publisher dropped `h`, continue from the value read |
//! | publisher, `DropOldest` ([`Conn::make_room`], [`Conn::drop_oldest`]) | `tail − head ≥ buffer` (its cached head refreshed from the shared word first) | `CAS(head, h, h + 1)` for the oldest `h` | success: `h` was never claimed, the publisher takes the chunk back and counts a drop; failure: the subscriber claimed it meanwhile, there is room |
//! | publisher, `Fail` / `Block` (`wait_for_room` in `publisher.rs`) | some connected queue has `tail − head ≥ buffer` (read from the shared head) | none | `QueueFull`, or wait on its slot's event word (subscribers bump it after each claim under this policy) |
//!
//! Both sides change the one `head` word by read-modify-write, so exactly
//! one wins each position. Entries are written by the publisher alone and
//! the head line by the subscriber almost alone. Under `DropOldest` the
//! publisher reads the head only when its cached copy says "full" and
//! writes it only to drop (and to reset it at connect), so in steady state
//! a message moves exactly one line between the CPUs: the entry's. Under
//! `Block` and `Fail` the publisher also reads every connected
//! subscriber's head before each send.
//!
//! # Ordering
//!
//! The publisher writes the payload, the chunk header and `Entry.len`
//! (Relaxed), then stores the entry word (Release); the subscriber's
//! Acquire load of that word makes all of it visible. It reads `len` after
//! that load and accepts it only if its sequence equals the entry's (a
//! mismatch means the publisher dropped `h` and is rewriting the slot:
//! reload `head`). The claim CAS is AcqRel so that the subscriber's reads
//! of the entry happen before the publisher, seeing the new head, reuses
//! the slot. Returns: the entry with `store(Relaxed)`, then
//! `ret_tail.store(Release)`; the publisher loads `ret_tail` with Acquire.
//! No SeqCst anywhere: each protocol is one word's modification order or a
//! Release/Acquire pair.
//!
//! Nothing read from shared memory is trusted: `pop` is bounded to
//! `2 × ring + 4` tries; positions read from shared memory use wrapping
//! arithmetic only (a head or return tail of `u64::MAX` must overflow
//! neither side); a head that moves backwards reads as empty; the
//! publisher trusts its own count over a head claiming more than `buffer`
//! entries; [`Conn::collect_returns`] re-synchronises a return tail that is
//! behind or more than a ring ahead and ignores entries of another
//! generation.
//!
//! # Connecting ([`Conn::connect`], publisher; [`Conn::linked`], subscriber)
//!
//! 1. `link ← 0` (Relaxed), then `fence(Release)`;
//! 2. `generation ← generation % 127 + 1`; every entry's `word` and `len`,
//!    `ret_tail` and `head` ← 0 (Relaxed);
//! 3. `pub_id ← publisher id` (Release);
//! 4. `link ← subscriber id` (Release).
//!
//! The subscriber (`update_slow` in `subscriber.rs`) reads the publisher
//! slot's `id` (Acquire) and calls `linked(own id, that id)`: `link` and
//! `pub_id`, both loaded with Acquire, must match; only then does it read
//! `generation`, `head` and `ret_tail`. `pub_id` is stored with Release
//! (not Relaxed) because the `link` value the subscriber reads may be the
//! one the *previous* publisher of the slot wrote for the same subscriber;
//! its Acquire load of the new `pub_id` is then what orders the reset
//! before its reads (loom model `loom_pubsub_link_generation`). Next the
//! subscriber opens the publisher's data segment (`shm_open`, `mmap`,
//! validation: slow) and then, after a `fence(Acquire)`, calls `linked`
//! again and keeps the connection only if the generation is the one it
//! read first: meanwhile the publisher may have died and a new publisher
//! of the same slot reset the connection, and without the re-check the
//! subscriber would resolve the new publisher's chunk indices in the old
//! publisher's segment. The fence in step 1 makes `link = 0` visible to a
//! subscriber that saw any store of the reset. A stale view leaves the
//! connection pending; the next receive tries again.
//!
//! # Holds (a departed publisher's last words; publish/subscribe only)
//!
//! `ConnLink::kept` / `kept_gen`: `(id, generation)` of a publisher that
//! left while this queue still had unread entries of its generation for
//! the linked subscriber; while the hold exists, its data segment's name
//! is kept (the protocol, who ends a hold and who removes the name:
//! `pubsub/departed.rs`).
//!
//! | from | to | who | how |
//! |---|---|---|---|
//! | `kept = 0` | `(id, g)` | publisher `id` leaving, or the cleaner of its dead slot, before the slot is freed ([`Conn::keep_for`]: the connection is still `id`'s, linked to the subscriber in the slot, entry at `head` unread) | `kept_gen ← g` (Relaxed), `kept ← id` (SeqCst) |
//! | `(id, g)` | `0` | the subscriber after reading the held entries or on leaving, a dead subscriber's cleaner, a publisher that resets the connection, the domain sweep | `CAS(kept, id, 0)` (SeqCst, [`Conn::release_hold`]) |
//!
//! `connect` does not touch them. A new publisher that finds a hold on a
//! connection linked to the subscriber now in the slot continues it
//! instead ([`Conn::take_over`]): steps 1, 3 and 4 above (link to 0 and a
//! Release fence; `pub_id`, then `link`, with Release), a generation that
//! is neither the previous nor the held one, `dropped ← 0`, and no reset
//! of entries, `head` or `ret_tail`; it appends after the last held entry.
//! The subscriber takes up the hold ([`Conn::take_up_held`]: `link` must
//! be its id; it maps the departed publisher's segment, then, after a
//! `fence(Acquire)`, reads the hold again) and reads entries of the held
//! generation from the shared head; an entry of another generation at the
//! head means the held ones are done (`Pop::Gone`): it ends the hold and
//! takes up the successor's connection (`linked`) from the same head.
//! Returns of held chunks are not written. loom models:
//! `pubsub::loom_tests::loom_last_words_*`.

use crate::service::registry::SharedWords;
use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

// Entry word of a delivery queue (AtomicU64):
//   bits 0..24  chunk index
//   bits 24..31 connection generation (1..=127)
//   bit  31     0
//   bits 32..64 sequence = logical position + 1 (wrapping); 0 = empty
// Written only by the publisher; the subscriber claims position h by
// CAS of the connection's `head` from h to h + 1.
pub(crate) const CHUNK_MASK: u64 = (1 << 24) - 1;
pub(crate) const GEN_SHIFT: u32 = 24;
pub(crate) const GEN_MASK: u64 = 0x7f;

pub(crate) fn entry(seq: u64, generation: u64, chunk: u32) -> u64 {
    ((seq as u32 as u64) << 32) | ((generation & GEN_MASK) << GEN_SHIFT) | u64::from(chunk)
}

/// The `len` word of an entry: sequence (low 32 bits) and length.
pub(crate) fn len_word(seq: u64, len: u64) -> u64 {
    ((seq as u32 as u64) << 32) | (len & 0xffff_ffff)
}

pub(crate) fn entry_seq(v: u64) -> u32 {
    (v >> 32) as u32
}

pub(crate) fn entry_gen(v: u64) -> u64 {
    (v >> GEN_SHIFT) & GEN_MASK
}

/// First line of a connection: written by the publisher when it
/// (re)connects to the subscriber of slot s.
///
/// Connect (`pubsub::queue`, `Conn::connect`): `link ← 0` and a Release
/// fence, `generation ← generation % 127 + 1`, entries zeroed, `ret_tail ←
/// 0`, `head ← 0`, `pub_id ← publisher id` (Release), then `link ←
/// subscriber id` (Release). A
/// subscriber uses the connection only while `link` is its own id and
/// `pub_id` is the id in the publisher slot, and only entries and returns
/// tagged with the `generation` it saw.
#[repr(C, align(64))]
pub(crate) struct ConnLink {
    pub(crate) link: AtomicU64,
    pub(crate) pub_id: AtomicU64,
    pub(crate) generation: AtomicU64,
    /// Entries the publisher dropped as oldest from this connection since
    /// it connected (`Overflow::DropOldest`); written by the publisher
    /// only (reset at connect, `+1` Relaxed per drop), read by tools.
    pub(crate) dropped: AtomicU64,
    /// The id of a departed publisher whose entries are still queued here
    /// and whose data segment is kept for them (0: none). Never reset by
    /// [`Conn::connect`]; see "Holds" in the module docs. Used by
    /// publish/subscribe only (always 0 for request/response).
    pub(crate) kept: AtomicU64,
    /// The connection generation of the kept entries (1..=127), written
    /// before `kept`.
    pub(crate) kept_gen: AtomicU64,
}

/// Second line of a connection, written by the subscriber: how many
/// returns it has pushed (monotonic until the next connect resets it to
/// 0).
#[repr(C, align(64))]
pub(crate) struct RetTail {
    pub(crate) ret_tail: AtomicU64,
}

/// One slot of a delivery queue (16 bytes, four per line).
///
/// `word`: the entry word (sequence, generation, chunk; `pubsub::queue`,
/// "The entry word"). `len`: `sequence << 32 | payload length`, written (Relaxed)
/// before `word` is published (Release), so that a subscriber learns the
/// length from the line it polls, without touching the chunk; it trusts
/// the length only if its sequence matches the entry it took.
#[repr(C, align(16))]
pub(crate) struct Entry {
    pub(crate) word: AtomicU64,
    pub(crate) len: AtomicU64,
}

/// Third line of a connection: how many entries have been consumed,
/// either claimed by the subscriber or dropped by the publisher (both by
/// CAS `h → h + 1`; monotonic until the next connect resets it to 0).
#[repr(C, align(64))]
pub(crate) struct Head {
    pub(crate) head: AtomicU64,
}

// SAFETY: `repr(C)`: six atomics.
unsafe impl SharedWords for ConnLink {}
// SAFETY: `repr(C)`: one atomic.
unsafe impl SharedWords for RetTail {}
// SAFETY: `repr(C)`: one atomic.
unsafe impl SharedWords for Head {}
// SAFETY: `repr(C)`: two atomics.
unsafe impl SharedWords for Entry {}

/// Where a connection's parts lie from its start in a segment (every
/// part 64-byte aligned):
///
/// ```text
/// +0     ConnLink line (producer writes at connect)
/// +64    RetTail line (consumer writes)
/// +128   Head line (consumer CAS to claim; producer to drop)
/// +192   entries: [Entry; cap] (16 B each), rounded up to 64 B
/// +…     returns: [AtomicU32; rcap], rounded up to 64 B
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnShape {
    /// Entry ring size (a power of two).
    pub(crate) cap: usize,
    /// Return ring size (a power of two).
    pub(crate) rcap: usize,
    /// Offset of the return ring.
    pub(crate) returns_off: usize,
    /// Bytes of one connection (a multiple of 64).
    pub(crate) size: usize,
}

impl ConnShape {
    /// The shape of a connection whose queue holds up to `entries`
    /// entries and whose return ring up to `returns` chunk indices (each
    /// rounded up to a power of two, so that positions map to slots with
    /// a mask).
    pub(crate) fn new(entries: usize, returns: usize) -> ConnShape {
        let line = crate::service::registry::LINE;
        let round = |n: usize| n.div_ceil(line) * line;
        let cap = entries.next_power_of_two();
        let rcap = returns.next_power_of_two();
        let returns_off = 3 * line + round(16 * cap);
        ConnShape {
            cap,
            rcap,
            returns_off,
            size: returns_off + round(4 * rcap),
        }
    }

    /// The connection starting at `base` in `view`.
    ///
    /// # Panics
    ///
    /// If it does not lie inside the view (a layout bug: layouts are
    /// checked against the segment size when it is opened).
    pub(crate) fn at<'a>(
        &self,
        view: &crate::service::registry::SegmentView<'a>,
        base: usize,
    ) -> Conn<'a> {
        let line = crate::service::registry::LINE;
        Conn {
            link: view.at(base),
            ret_tail: &view.at::<RetTail>(base + line).ret_tail,
            head: &view.at::<Head>(base + 2 * line).head,
            entries: view.slice(base + 3 * line, self.cap),
            returns: view.slice(base + self.returns_off, self.rcap),
        }
    }
}

/// One connection's shared parts.
#[derive(Clone, Copy)]
pub(crate) struct Conn<'a> {
    pub(crate) link: &'a ConnLink,
    pub(crate) ret_tail: &'a AtomicU64,
    pub(crate) head: &'a AtomicU64,
    pub(crate) entries: &'a [Entry],
    pub(crate) returns: &'a [AtomicU32],
}

/// What [`Conn::pop`] found at the subscriber's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pop {
    /// Nothing published at the head (yet).
    Empty,
    /// Claimed: chunk index (not yet bounds-checked) and length.
    Chunk(u32, usize),
    /// The entry belongs to another connection generation: the publisher
    /// reconnected or left.
    Gone,
}

/// What [`Conn::drop_oldest`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Steal {
    /// The publisher claimed the oldest position; `Some(chunk)` if it held
    /// a chunk of this connection (now dropped: the publisher takes it
    /// back), `None` if it held nothing of ours.
    Dropped(Option<u32>),
    /// The subscriber claimed it first; the shared head is now this value.
    Lost(u64),
}

/// What [`Producer::take_back_oldest`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TakeBack {
    /// The oldest unclaimed entry's chunk is the producer's again.
    Taken(u32),
    /// The oldest unclaimed entry may not be taken back.
    Refused,
    /// Nothing unclaimed is queued.
    Nothing,
}

impl Conn<'_> {
    #[inline]
    fn slot_of(&self, position: u64) -> &Entry {
        &self.entries[(position & (self.entries.len() as u64 - 1)) as usize]
    }

    /// Publisher: publishes logical position `position` (sequence
    /// `position + 1`) holding `chunk` of `len` elements. The caller has
    /// checked that there is room (`position - head < buffer`).
    #[inline]
    pub(crate) fn push(&self, position: u64, generation: u64, chunk: u32, len: u64) {
        let e = self.slot_of(position);
        // Wrapping: a successor continues positions read from shared memory
        // (`take_over`), which a scribbler may have set to anything.
        let seq = position.wrapping_add(1);
        e.len.store(len_word(seq, len), Ordering::Relaxed);
        // Release: the payload, chunk header and length written before
        // become visible to the subscriber that loads this entry (Acquire).
        e.word
            .store(entry(seq, generation, chunk), Ordering::Release);
    }

    /// Publisher, before pushing position `tail`: makes sure the queue
    /// has room for it. `*head` is the publisher's cached copy of the
    /// shared head, refreshed only when the queue looks full; if it is
    /// really full (`tail - head ≥ buffer`) the oldest entry is dropped
    /// ([`Conn::drop_oldest`]). Returns the chunk dropped, if any: it is
    /// the publisher's again.
    #[inline]
    pub(crate) fn make_room(
        &self,
        tail: u64,
        head: &mut u64,
        buffer: u64,
        generation: u64,
    ) -> Option<u32> {
        if tail.wrapping_sub(*head) >= buffer {
            *head = self.head.load(Ordering::Acquire);
            if tail.wrapping_sub(*head) > buffer {
                // Impossible unless the subscriber scribbled on its head:
                // trust our own count.
                *head = tail.wrapping_sub(buffer);
            }
        }
        if tail.wrapping_sub(*head) < buffer {
            return None;
        }
        // Full: drop the oldest entry by claiming it ourselves. If the
        // subscriber claims it first, our CAS fails and there is room.
        match self.drop_oldest(*head, generation) {
            Steal::Dropped(old) => {
                *head = head.wrapping_add(1);
                old
            }
            Steal::Lost(now) => {
                *head = now;
                None
            }
        }
    }

    /// Publisher, queue full under `DropOldest`: drops position `oldest`
    /// by claiming it (the same CAS the subscriber uses to take it), so
    /// exactly one side gets it.
    #[inline]
    pub(crate) fn drop_oldest(&self, oldest: u64, generation: u64) -> Steal {
        // `oldest` may come from a scribbled shared head: wrapping only.
        let next = oldest.wrapping_add(1);
        match self
            .head
            .compare_exchange(oldest, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                // Only the publisher writes entries: this is the entry it
                // wrote for `oldest`, unless the slot belongs to an older
                // connection (then nothing of ours is in it).
                let old = self.slot_of(oldest).word.load(Ordering::Relaxed);
                Steal::Dropped(
                    (entry_gen(old) == generation && entry_seq(old) == next as u32)
                        .then_some((old & CHUNK_MASK) as u32),
                )
            }
            Err(now) => Steal::Lost(now),
        }
    }

    /// Subscriber: takes the entry at its head `*head` (its cached copy of
    /// the shared head), following the shared head forward when the
    /// publisher dropped entries. Bounded: a queue that keeps changing
    /// under it reports `Empty`.
    #[inline]
    pub(crate) fn pop(&self, head: &mut u64, generation: u64) -> Pop {
        let ring = self.entries.len() as u64;
        for _ in 0..(2 * ring + 4) {
            let h = *head;
            let e = self.slot_of(h);
            // Acquire: pairs with the publisher's Release store of the
            // entry; the chunk and the length word are visible after it.
            let v = e.word.load(Ordering::Acquire);
            // Positions come from shared memory (the head may have been
            // scribbled on, up to u64::MAX): wrapping arithmetic only.
            let next = h.wrapping_add(1);
            let d = entry_seq(v).wrapping_sub(next as u32) as i32;
            if d < 0 {
                return Pop::Empty;
            }
            if entry_gen(v) != generation {
                return Pop::Gone;
            }
            let len = e.len.load(Ordering::Relaxed);
            if d > 0 || (len >> 32) as u32 != entry_seq(v) {
                // The publisher dropped entries we had not claimed (it
                // moved the shared head) and reuses their slots.
                let now = self.head.load(Ordering::Acquire);
                if now <= h {
                    // Not explained by a drop: the publisher is between
                    // its two stores, or the queue holds garbage.
                    return Pop::Empty;
                }
                *head = now;
                continue;
            }
            // Claim position h. AcqRel: our reads of the entry happen
            // before the publisher, seeing the new head, reuses the slot.
            match self
                .head
                .compare_exchange(h, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    *head = next;
                    return Pop::Chunk((v & CHUNK_MASK) as u32, (len & 0xffff_ffff) as usize);
                }
                // The publisher dropped position h first (or the head
                // moved for another reason): continue from the real head.
                Err(now) => {
                    if now <= h {
                        return Pop::Empty;
                    }
                    *head = now;
                }
            }
        }
        // Dropped again and again while we looked (we were descheduled,
        // or the queue holds garbage): report nothing now, look again.
        Pop::Empty
    }

    /// Subscriber: pushes the return of `chunk` (received on connection
    /// `generation`) as return number `tail` (the count pushed so far on
    /// this connection, kept by the subscriber).
    #[inline]
    pub(crate) fn push_return(&self, tail: u64, generation: u64, chunk: u32) {
        let rcap = self.returns.len() as u64;
        self.returns[(tail & (rcap - 1)) as usize].store(
            ((generation << GEN_SHIFT) | u64::from(chunk)) as u32,
            Ordering::Relaxed,
        );
        // Release: the entry above is visible to the publisher's Acquire.
        // `tail` was read from shared memory when we connected: wrap.
        self.ret_tail.store(tail.wrapping_add(1), Ordering::Release);
    }

    /// Publisher: reads the returns pushed since `*ret_head` (returns
    /// collected so far) and calls `returned` with each chunk of
    /// connection `generation`.
    #[inline]
    pub(crate) fn collect_returns(
        &self,
        ret_head: &mut u64,
        generation: u64,
        mut returned: impl FnMut(u32),
    ) {
        let rcap = self.returns.len() as u64;
        let tail = self.ret_tail.load(Ordering::Acquire);
        if tail < *ret_head || tail - *ret_head > rcap {
            // Inconsistent (a subscriber of an older connection wrote
            // here): skip to the newest window.
            *ret_head = tail.saturating_sub(rcap);
        }
        while *ret_head < tail {
            let r =
                u64::from(self.returns[(*ret_head & (rcap - 1)) as usize].load(Ordering::Relaxed));
            *ret_head += 1;
            if entry_gen(r) == generation {
                returned((r & CHUNK_MASK) as u32);
            }
        }
    }

    /// Publisher: (re)connects subscriber `sub_id`: resets the connection
    /// under a new generation and publishes it. Returns the generation.
    ///
    /// `link ← 0`, `generation ← g % 127 + 1`, entries, `ret_tail` and
    /// `head` ← 0, `pub_id ← pub_id` (Release), `link ← sub_id` (Release).
    /// A subscriber that reads `link == its id` *and* `pub_id == the
    /// publisher's id` with Acquire ([`Conn::linked`]) synchronises with
    /// whichever of the two stores it read last in this sequence, both of
    /// which come after the reset.
    pub(crate) fn connect(&self, pub_id: u64, sub_id: u64) -> u64 {
        self.link.link.store(0, Ordering::Relaxed);
        // `link = 0` is visible to a subscriber that sees any store of the
        // reset below and then fences (Acquire): its re-check after opening
        // our data segment (subscriber.rs) sees that the link changed.
        fence(Ordering::Release);
        let generation = self.link.generation.load(Ordering::Relaxed) % 127 + 1;
        self.link.generation.store(generation, Ordering::Relaxed);
        for e in self.entries {
            e.word.store(0, Ordering::Relaxed);
            e.len.store(0, Ordering::Relaxed);
        }
        self.ret_tail.store(0, Ordering::Relaxed);
        self.head.store(0, Ordering::Relaxed);
        self.link.dropped.store(0, Ordering::Relaxed);
        // Release (not Relaxed): a subscriber may read a `link` equal to
        // its id written by the *previous* publisher of this slot; its
        // Acquire load of this `pub_id` is then what orders the reset
        // before its reads (loom model `loom_pubsub_link_generation`).
        self.link.pub_id.store(pub_id, Ordering::Release);
        // Publishes the reset above to the subscriber's Acquire load.
        self.link.link.store(sub_id, Ordering::Release);
        generation
    }

    /// Subscriber `sub_id`: if the publisher `pub_id` (read from its slot)
    /// has connected it, the connection's generation, head and return
    /// tail, as the publisher's connect left them or later.
    #[inline]
    pub(crate) fn linked(&self, sub_id: u64, pub_id: u64) -> Option<Linked> {
        if self.link.link.load(Ordering::Acquire) != sub_id
            || self.link.pub_id.load(Ordering::Acquire) != pub_id
        {
            return None;
        }
        Some(Linked {
            generation: self.link.generation.load(Ordering::Relaxed),
            head: self.head.load(Ordering::Acquire),
            ret_tail: self.ret_tail.load(Ordering::Acquire),
        })
    }
}

/// A departed publisher's hold on a connection (`ConnLink::kept`,
/// `kept_gen`), read once and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hold {
    pub(crate) pub_id: u64,
    pub(crate) generation: u64,
}

impl Conn<'_> {
    /// True if the entry at the shared `head` is a published entry of
    /// `generation`: the subscriber has something to read from it.
    pub(crate) fn has_unread(&self, generation: u64) -> bool {
        let h = self.head.load(Ordering::Acquire);
        let v = self.slot_of(h).word.load(Ordering::Acquire);
        entry_seq(v) == h.wrapping_add(1) as u32 && entry_gen(v) == generation
    }

    /// Departure of publisher `pub_id` (by itself, or by the cleaner of
    /// its dead slot): if the connection is still its own, linked to
    /// `sub_id`, and holds an unread entry, records the hold (`kept_gen`
    /// Relaxed, then `kept` SeqCst) and returns true. A connection that
    /// already holds another departed publisher's entries keeps that hold
    /// (false).
    pub(crate) fn keep_for(&self, pub_id: u64, sub_id: u64) -> bool {
        if pub_id == 0
            || sub_id == 0
            || self.link.link.load(Ordering::Acquire) != sub_id
            || self.link.pub_id.load(Ordering::Acquire) != pub_id
        {
            return false;
        }
        let generation = self.link.generation.load(Ordering::Relaxed);
        if !self.has_unread(generation) {
            return false;
        }
        match self.link.kept.load(Ordering::SeqCst) {
            0 => {}
            held => return held == pub_id,
        }
        self.link.kept_gen.store(generation, Ordering::Relaxed);
        self.link.kept.store(pub_id, Ordering::SeqCst);
        true
    }

    /// The hold on this connection, if any. `Err` if the words are not a
    /// valid hold (a generation outside 1..=127): corrupted.
    pub(crate) fn hold(&self) -> Result<Option<Hold>, String> {
        let pub_id = self.link.kept.load(Ordering::Acquire);
        if pub_id == 0 {
            return Ok(None);
        }
        let generation = self.link.kept_gen.load(Ordering::Relaxed);
        if generation == 0 || generation > GEN_MASK {
            return Err(format!("kept generation {generation} (not 1..=127)"));
        }
        Ok(Some(Hold { pub_id, generation }))
    }

    /// Ends the hold of departed publisher `pub_id` on this connection:
    /// `CAS(kept, pub_id, 0)` (SeqCst). True if this call ended it (the
    /// caller then checks whether the data segment is held elsewhere).
    pub(crate) fn release_hold(&self, pub_id: u64) -> bool {
        pub_id != 0
            && self
                .link
                .kept
                .compare_exchange(pub_id, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }

    /// True if this connection holds departed publisher `pub_id`'s data
    /// segment (SeqCst: see "Holds").
    pub(crate) fn holds(&self, pub_id: u64) -> bool {
        self.link.kept.load(Ordering::SeqCst) == pub_id
    }

    /// A new publisher `pub_id` continues a connection whose entries of a
    /// departed publisher (`held`) are still queued for `sub_id`, instead
    /// of resetting it: `link ← 0`, `fence(Release)`, a generation that is
    /// neither the old nor the held one, `dropped ← 0`, `pub_id`
    /// (Release), `link ← sub_id` (Release). Entries, `head` and
    /// `ret_tail` stay. Returns the producer: the new generation, the tail
    /// (the position after the last entry of the held generation, at most
    /// `buffer` past the head), the head and the return tail it read.
    pub(crate) fn take_over(&self, pub_id: u64, sub_id: u64, held: Hold, buffer: u64) -> Producer {
        self.link.link.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        let old = self.link.generation.load(Ordering::Relaxed);
        let mut generation = old % 127 + 1;
        if generation == held.generation {
            generation = generation % 127 + 1;
        }
        self.link.generation.store(generation, Ordering::Relaxed);
        self.link.dropped.store(0, Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        let limit = buffer.min(self.entries.len() as u64);
        let mut tail = head;
        while tail.wrapping_sub(head) < limit {
            let v = self.slot_of(tail).word.load(Ordering::Acquire);
            if entry_seq(v) != tail.wrapping_add(1) as u32 || entry_gen(v) != held.generation {
                break;
            }
            tail = tail.wrapping_add(1);
        }
        let ret_head = self.ret_tail.load(Ordering::Acquire);
        self.link.pub_id.store(pub_id, Ordering::Release);
        self.link.link.store(sub_id, Ordering::Release);
        Producer {
            peer: sub_id,
            generation,
            tail,
            head,
            ret_head,
        }
    }

    /// Subscriber `sub_id` takes up the entries a departed publisher left
    /// (`hold`): like [`take_up`](Self::take_up), from the hold. `map`
    /// opens `hold.pub_id`'s data segment; after a `fence(Acquire)` the
    /// hold must read the same (it is ended only after its entries are
    /// read or the connection is reset). Returns the head to read from.
    pub(crate) fn take_up_held<M>(
        &self,
        sub_id: u64,
        hold: Hold,
        map: impl FnOnce() -> Option<M>,
    ) -> Option<(u64, M)> {
        if self.link.link.load(Ordering::Acquire) != sub_id {
            return None;
        }
        let head = self.head.load(Ordering::Acquire);
        let mapped = map()?;
        fence(Ordering::Acquire);
        (self.hold() == Ok(Some(hold))).then_some((head, mapped))
    }
}

impl Conn<'_> {
    /// Subscriber `sub_id`: takes up the connection publisher `pub_id`
    /// made to it. `map` maps the publisher's pool (slow: syscalls); the
    /// publisher may meanwhile have died and a successor of its slot reset
    /// the connection (new generation, new entries whose chunk indices
    /// refer to *its* pool), so the link is checked again after an Acquire
    /// fence ([`connect`](Self::connect) stores `link = 0` before a
    /// Release fence) and the mapping kept only if it is unchanged.
    /// `None`: not connected (yet), the mapping failed, or the connection
    /// changed meanwhile; try again later.
    pub(crate) fn take_up<M>(
        &self,
        sub_id: u64,
        pub_id: u64,
        map: impl FnOnce() -> Option<M>,
    ) -> Option<(Linked, M)> {
        let linked = self.linked(sub_id, pub_id)?;
        let mapped = map()?;
        fence(Ordering::Acquire);
        let now = self.linked(sub_id, pub_id).map(|l| l.generation);
        (now == Some(linked.generation)).then_some((linked, mapped))
    }

    /// Entries the queue holds.
    #[inline]
    pub(crate) fn capacity(&self) -> u64 {
        self.entries.len() as u64
    }
}

/// The publisher's process-local side of one connection it made: the
/// peer, the generation, its tail, the last head it read and the returns
/// it collected. The same for every producer (publisher, client, server).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Producer {
    /// The consumer's port id.
    pub(crate) peer: u64,
    pub(crate) generation: u64,
    /// Entries pushed so far (logical tail).
    pub(crate) tail: u64,
    /// Last value read of the shared `head` (entries consumed); refreshed
    /// only when the queue looks full or nearly full.
    pub(crate) head: u64,
    /// Returns collected so far.
    pub(crate) ret_head: u64,
}

impl Producer {
    /// (Re)connects `peer` through `conn` ([`Conn::connect`]).
    pub(crate) fn connect(conn: Conn<'_>, own: u64, peer: u64) -> Producer {
        Producer {
            peer,
            generation: conn.connect(own, peer),
            tail: 0,
            head: 0,
            ret_head: 0,
        }
    }

    /// Pushes `chunk` ([`Conn::push`]) at our tail; the caller has checked
    /// that there is room.
    #[inline]
    pub(crate) fn push(&mut self, conn: Conn<'_>, chunk: u32, len: u64) {
        conn.push(self.tail, self.generation, chunk, len);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Whether one more entry fits: by our cached head, refreshed from the
    /// shared head only when that count says full (then a scribbled head,
    /// ahead of our tail, reads as full). For producers whose own limits
    /// keep the queue from filling (request/response), this is a guard
    /// that costs no read of the consumer's head line per push; the
    /// cached head only lags the real one, so it can only err towards
    /// "full", and then it is refreshed.
    #[inline]
    pub(crate) fn has_room(&mut self, conn: Conn<'_>) -> bool {
        let cap = conn.capacity();
        if self.tail.wrapping_sub(self.head) < cap {
            return true;
        }
        self.head = conn.head.load(Ordering::Acquire);
        self.tail.wrapping_sub(self.head) < cap
    }

    /// Entries pushed and not yet consumed, by the shared head now (huge
    /// if a consumer scribbled a head past our tail: then the queue counts
    /// as full).
    #[inline]
    pub(crate) fn queued(&self, conn: Conn<'_>) -> u64 {
        self.tail.wrapping_sub(conn.head.load(Ordering::Acquire))
    }

    /// Takes back the oldest entry the consumer has not claimed, if it
    /// holds a chunk for which `may` says yes (request/response's
    /// `DropOldest` for responses: never an end of stream). The same CAS
    /// as [`Conn::drop_oldest`] (so exactly one side gets each position);
    /// the entry read before it is our own (only the producer writes
    /// entries, and we do not rewrite this one meanwhile). If the
    /// consumer claims the oldest first, the next one is tried (at most a
    /// ring's worth).
    pub(crate) fn take_back_oldest(
        &mut self,
        conn: Conn<'_>,
        may: impl Fn(u32) -> bool,
    ) -> TakeBack {
        for _ in 0..conn.entries.len() {
            let h = conn.head.load(Ordering::Acquire);
            let queued = self.tail.wrapping_sub(h);
            if queued == 0 || queued > conn.capacity() {
                // Nothing unclaimed (or a scribbled head: take nothing).
                return TakeBack::Nothing;
            }
            let v = conn.slot_of(h).word.load(Ordering::Relaxed);
            if entry_gen(v) != self.generation || entry_seq(v) != h.wrapping_add(1) as u32 {
                return TakeBack::Nothing;
            }
            let chunk = (v & CHUNK_MASK) as u32;
            if !may(chunk) {
                return TakeBack::Refused;
            }
            match conn.drop_oldest(h, self.generation) {
                Steal::Dropped(Some(chunk)) => {
                    self.head = h.wrapping_add(1);
                    return TakeBack::Taken(chunk);
                }
                Steal::Dropped(None) => return TakeBack::Nothing,
                Steal::Lost(_) => continue,
            }
        }
        TakeBack::Nothing
    }

    /// Collects the returns of this connection ([`Conn::collect_returns`]).
    #[inline]
    pub(crate) fn collect_returns(&mut self, conn: Conn<'_>, returned: impl FnMut(u32)) {
        conn.collect_returns(&mut self.ret_head, self.generation, returned);
    }
}

/// What a subscriber reads when it takes up a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Linked {
    pub(crate) generation: u64,
    pub(crate) head: u64,
    pub(crate) ret_tail: u64,
}

/// One connection's shared words on the heap, for the pure-memory tests
/// and the loom models of every pattern that uses the queue (`pubsub`,
/// `reqres`): the same [`Conn`] the ports build on a segment.
#[cfg(test)]
pub(crate) struct ConnWords {
    link: ConnLink,
    ret_tail: AtomicU64,
    head: AtomicU64,
    entries: Vec<Entry>,
    returns: Vec<AtomicU32>,
}

#[cfg(test)]
impl ConnWords {
    /// `ring` entries and `returns` return slots (powers of two), linked
    /// as producer `pub_id` → consumer `link` with `generation` (all 0: as
    /// a new segment, before any connect).
    pub(crate) fn new(
        ring: usize,
        returns: usize,
        link: u64,
        pub_id: u64,
        generation: u64,
    ) -> Self {
        ConnWords {
            link: ConnLink {
                link: AtomicU64::new(link),
                pub_id: AtomicU64::new(pub_id),
                generation: AtomicU64::new(generation),
                dropped: AtomicU64::new(0),
                kept: AtomicU64::new(0),
                kept_gen: AtomicU64::new(0),
            },
            ret_tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            entries: (0..ring)
                .map(|_| Entry {
                    word: AtomicU64::new(0),
                    len: AtomicU64::new(0),
                })
                .collect(),
            returns: (0..returns).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// The connection over these words.
    pub(crate) fn conn(&self) -> Conn<'_> {
        Conn {
            link: &self.link,
            ret_tail: &self.ret_tail,
            head: &self.head,
            entries: &self.entries,
            returns: &self.returns,
        }
    }
}

/// Pure-memory tests of the protocol steps (also run under Miri, whose
/// race detector checks the two-thread test's payload accesses; counts are
/// scaled with `cfg!(miri)`). The loom models are in `pubsub::loom_tests`.
#[cfg(all(test, not(loom)))]
mod tests {
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::entry;
    use super::{Pop, Steal};

    use super::ConnWords;

    #[test]
    fn spsc_wraps_around() {
        let q = ConnWords::new(4, 4, 0, 0, 0);
        let conn = q.conn();
        let (mut tail, mut pub_head, mut sub_head) = (0u64, 0u64, 0u64);
        for round in 0..10u32 {
            for k in 0..3 {
                assert_eq!(conn.make_room(tail, &mut pub_head, 4, 1), None);
                conn.push(tail, 1, round * 3 + k, u64::from(k));
                tail += 1;
            }
            for k in 0..3 {
                assert_eq!(
                    conn.pop(&mut sub_head, 1),
                    Pop::Chunk(round * 3 + k, k as usize)
                );
            }
            assert_eq!(conn.pop(&mut sub_head, 1), Pop::Empty);
        }
        assert_eq!(q.head.load(Ordering::Relaxed), 30);
    }

    #[test]
    fn drop_oldest_skips_dropped_entries() {
        let q = ConnWords::new(2, 4, 0, 0, 0);
        let conn = q.conn();
        let mut pub_head = 0;
        let mut dropped = Vec::new();
        for tail in 0..5u64 {
            dropped.extend(conn.make_room(tail, &mut pub_head, 2, 1));
            conn.push(tail, 1, tail as u32, 1);
        }
        assert_eq!(dropped, vec![0, 1, 2]);
        let mut sub_head = 0;
        assert_eq!(conn.pop(&mut sub_head, 1), Pop::Chunk(3, 1));
        assert_eq!(conn.pop(&mut sub_head, 1), Pop::Chunk(4, 1));
        assert_eq!(conn.pop(&mut sub_head, 1), Pop::Empty);
        // A steal of a position the subscriber already claimed fails.
        assert_eq!(conn.drop_oldest(3, 1), Steal::Lost(5));
    }

    /// A producer of generation 1 at position 0, as a fresh connect gives.
    fn producer() -> super::Producer {
        super::Producer {
            peer: 9,
            generation: 1,
            tail: 0,
            head: 0,
            ret_head: 0,
        }
    }

    #[test]
    fn take_back_oldest_takes_unclaimed_chunks_it_may_and_nothing_else() {
        use super::TakeBack;
        let q = ConnWords::new(4, 4, 0, 0, 0);
        let conn = q.conn();
        let mut p = producer();
        assert_eq!(p.take_back_oldest(conn, |_| true), TakeBack::Nothing);
        for chunk in [10, 11, 12, 13] {
            p.push(conn, chunk, 0);
        }
        let mut sub_head = 0;
        assert_eq!(conn.pop(&mut sub_head, 1), Pop::Chunk(10, 0));
        // The oldest unclaimed is 11; a refusal takes nothing.
        assert_eq!(p.take_back_oldest(conn, |c| c != 11), TakeBack::Refused);
        assert_eq!(p.take_back_oldest(conn, |_| true), TakeBack::Taken(11));
        assert_eq!(p.take_back_oldest(conn, |_| true), TakeBack::Taken(12));
        // The consumer follows the moved head and gets what is left once.
        assert_eq!(conn.pop(&mut sub_head, 1), Pop::Chunk(13, 0));
        assert_eq!(conn.pop(&mut sub_head, 1), Pop::Empty);
        assert_eq!(p.take_back_oldest(conn, |_| true), TakeBack::Nothing);
        // A head scribbled past our tail takes nothing.
        q.head.store(1000, Ordering::Relaxed);
        assert_eq!(p.take_back_oldest(conn, |_| true), TakeBack::Nothing);
    }

    #[test]
    fn has_room_reads_the_shared_head_only_when_the_cached_count_is_full() {
        let q = ConnWords::new(2, 4, 0, 0, 0);
        let conn = q.conn();
        let mut p = producer();
        for chunk in [1, 2] {
            assert!(p.has_room(conn));
            p.push(conn, chunk, 0);
        }
        // Full by the cached head; the shared head says the same.
        assert!(!p.has_room(conn));
        let mut sub_head = 0;
        assert_eq!(conn.pop(&mut sub_head, 1), Pop::Chunk(1, 0));
        // A pop made room: the refresh finds it.
        assert!(p.has_room(conn));
        assert_eq!(p.head, 1);
        p.push(conn, 3, 0);
        // A head scribbled past our tail reads as full.
        q.head.store(1000, Ordering::Relaxed);
        assert!(!p.has_room(conn));
    }

    #[test]
    fn other_generation_is_gone_and_not_dropped() {
        let q = ConnWords::new(2, 4, 0, 0, 0);
        let conn = q.conn();
        conn.push(0, 1, 7, 1);
        let mut sub_head = 0;
        assert_eq!(conn.pop(&mut sub_head, 2), Pop::Gone);
        // The publisher of generation 2 drops position 0: not its chunk.
        assert_eq!(conn.drop_oldest(0, 2), Steal::Dropped(None));
    }

    #[test]
    fn mismatched_len_word_is_not_taken() {
        let q = ConnWords::new(2, 4, 0, 0, 0);
        let conn = q.conn();
        // Entry word published, length word of another sequence (the
        // publisher is rewriting the slot): nothing to take yet.
        q.entries[0].word.store(entry(1, 1, 3), Ordering::Release);
        let mut sub_head = 0;
        assert_eq!(conn.pop(&mut sub_head, 1), Pop::Empty);
        assert_eq!(sub_head, 0);
    }

    #[test]
    fn returns_round_trip_and_ignore_other_generations() {
        let q = ConnWords::new(2, 4, 0, 0, 0);
        let conn = q.conn();
        conn.push_return(0, 1, 5);
        conn.push_return(1, 2, 6);
        conn.push_return(2, 1, 7);
        let mut ret_head = 0;
        let mut back = Vec::new();
        conn.collect_returns(&mut ret_head, 1, |c| back.push(c));
        assert_eq!((back, ret_head), (vec![5, 7], 3));
        // A tail beyond the ring (garbage, or an old connection's writer):
        // only the newest window is read.
        q.ret_tail.store(100, Ordering::Release);
        conn.collect_returns(&mut ret_head, 1, |_| {});
        assert_eq!(ret_head, 100);
    }

    #[test]
    fn connect_resets_and_links() {
        let q = ConnWords::new(2, 4, 0, 0, 0);
        let conn = q.conn();
        conn.push(0, 1, 3, 1);
        q.head.store(1, Ordering::Relaxed);
        q.ret_tail.store(1, Ordering::Relaxed);
        assert_eq!(conn.linked(9, 4), None);
        let generation = conn.connect(4, 9);
        assert_eq!(generation, 1);
        let linked = conn.linked(9, 4).expect("linked");
        assert_eq!((linked.generation, linked.head, linked.ret_tail), (1, 0, 0));
        assert_eq!(conn.linked(9, 5), None, "another publisher's id");
        assert_eq!(conn.linked(8, 4), None, "another subscriber's id");
        let mut sub_head = 0;
        assert_eq!(conn.pop(&mut sub_head, 1), Pop::Empty);
        // Generations run 1..=127 and never 0.
        q.link.generation.store(127, Ordering::Relaxed);
        assert_eq!(conn.connect(4, 9), 1);
    }

    struct Payloads(Vec<UnsafeCell<u64>>);
    // SAFETY: each cell is written by the publisher before it publishes
    // its index (Release) and read only by the subscriber that claimed it
    // (Acquire): exactly what the test checks (Miri's race detector).
    unsafe impl Sync for Payloads {}

    impl Payloads {
        fn cell(&self, i: u32) -> *mut u64 {
            self.0[i as usize].get()
        }
    }

    #[test]
    fn two_threads_drop_oldest_deliver_or_drop_each_once() {
        let n: u32 = if cfg!(miri) { 60 } else { 20_000 };
        let q = ConnWords::new(4, 4, 0, 0, 0);
        let payloads = Payloads((0..n).map(|_| UnsafeCell::new(0)).collect());
        let done = AtomicBool::new(false);
        let (received, dropped) = std::thread::scope(|s| {
            let publisher = s.spawn(|| {
                let conn = q.conn();
                let mut head = 0;
                let mut dropped = Vec::new();
                for i in 0..n {
                    // SAFETY: chunk i is written once, before publication.
                    unsafe { *payloads.cell(i) = u64::from(i) * 3 };
                    dropped.extend(conn.make_room(u64::from(i), &mut head, 3, 1));
                    conn.push(u64::from(i), 1, i, 1);
                }
                done.store(true, Ordering::Release);
                dropped
            });
            let conn = q.conn();
            let mut head = 0;
            let mut received = Vec::new();
            loop {
                // Read before the pop: if the publisher was done, an empty
                // queue stays empty.
                let finished = done.load(Ordering::Acquire);
                match conn.pop(&mut head, 1) {
                    Pop::Chunk(c, 1) => {
                        // SAFETY: claimed after the publisher's Release.
                        let v = unsafe { *payloads.cell(c) };
                        assert_eq!(v, u64::from(c) * 3);
                        received.push(c);
                    }
                    Pop::Empty if finished => break,
                    Pop::Empty => std::thread::yield_now(),
                    other => panic!("{other:?}"),
                }
            }
            (received, publisher.join().unwrap())
        });
        assert!(received.windows(2).all(|w| w[0] < w[1]), "in order");
        let mut all: Vec<u32> = received.iter().chain(&dropped).copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..n).collect::<Vec<_>>(),
            "each delivered or dropped exactly once"
        );
    }
}
