//! The single-producer single-consumer rings of a [`ShmChannel`]'s
//! control segment (the forward queue publisher → subscriber and the
//! return queue back): a `head` word written only by the consumer, a
//! `tail` word written only by the producer, and `capacity` slots of chunk
//! indices, position `p` in slot `p % capacity` (positions wrap at 2³²).
//!
//! | word | writer | transitions |
//! |---|---|---|
//! | `tail` | producer | `t → t + 1` (Release) after writing slot `t` (Relaxed) |
//! | `head` | consumer | `h → h'` (Release) after reading slots `h..h'` (Relaxed) |
//!
//! The producer writes slot `t` only when `t - head < capacity` (its
//! Acquire load of `head` orders the consumer's reads of that slot before
//! the write); the consumer reads slot `h` only when `h < tail` (its
//! Acquire load of `tail` makes the slot and the chunk's contents
//! visible). The channel checks every count and index it reads (a hostile
//! peer may write anything). These steps are the only accesses to the
//! ring words; the loom model `loom_socket_channel_rings` runs them.
//!
//! [`ShmChannel`]: super::ShmChannel

use crate::sync::atomic::{AtomicU32, Ordering};

/// One ring's words; `slot(p)` is the word of position `p`.
#[derive(Clone, Copy)]
pub(crate) struct Ring<'a, S> {
    pub(crate) head: &'a AtomicU32,
    pub(crate) tail: &'a AtomicU32,
    pub(crate) slot: S,
}

impl<'a, S: Fn(u32) -> &'a AtomicU32> Ring<'a, S> {
    /// Producer: the consumer's head (Acquire: its reads of the slots
    /// before it are done).
    #[inline]
    pub(crate) fn consumer_head(&self) -> u32 {
        self.head.load(Ordering::Acquire)
    }

    /// Producer: writes `value` at position `tail` and publishes it
    /// (Release: with everything written before, e.g. the chunk). Returns
    /// the new tail. The caller checked that there is room.
    #[inline]
    pub(crate) fn push(&self, tail: u32, value: u32) -> u32 {
        (self.slot)(tail).store(value, Ordering::Relaxed);
        let tail = tail.wrapping_add(1);
        self.tail.store(tail, Ordering::Release);
        tail
    }

    /// Consumer: the producer's tail (Acquire: the slots before it and
    /// what they refer to are visible).
    #[inline]
    pub(crate) fn producer_tail(&self) -> u32 {
        self.tail.load(Ordering::Acquire)
    }

    /// Consumer: the value at position `position` (below the tail it
    /// loaded).
    #[inline]
    pub(crate) fn read(&self, position: u32) -> u32 {
        (self.slot)(position).load(Ordering::Relaxed)
    }

    /// Consumer: gives the slots before `head` back to the producer
    /// (Release: its reads of them are done).
    #[inline]
    pub(crate) fn consumed(&self, head: u32) {
        self.head.store(head, Ordering::Release);
    }
}
