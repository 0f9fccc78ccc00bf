//! The parts of a service segment that every pattern shares: the header
//! line, the port slots and their arrays, and the operations on them
//! (claim, release, reclaim from dead nodes), written once for every
//! pattern.
//!
//! # Header (first line of every service segment's data area)
//!
//! | offset | word | writers | transitions |
//! |---|---|---|---|
//! | 0 | `removed` | the last user, under `LOCK_EX` (`core::try_remove`) | 0 while in use → 1 (Release) once: `shm_unlink` first, then the store, made only if the unlink did not fail with `EPERM`/`EACCES` (a group member that does not own the segment leaves the service unmarked and usable); never goes back. An opener that sees 1 (Acquire) after taking its `LOCK_SH`, which waits for the remover's `LOCK_EX`, starts over |
//! | 8 + 8k | `generation[k]` | claiming and releasing ports of kind `k`, cleaners | `fetch_add(1, AcqRel)` after every claim ([`claim_free_slot`]), release ([`release_slot`]) or reclamation by a cleaner (`core::ServiceRef::cleanup_ports`) of a slot of port kind `k`; peers that cache the slots of kind `k` rescan when it moved |
//!
//! There are [`MAX_PORT_KINDS`] generation words, one per port kind in the
//! order of the pattern's `Pattern::PORT_KINDS`; a pattern with two kinds
//! leaves the others zero. The static configuration follows at offset 64
//! (`service::config`); the pattern decides where its port slot arrays
//! start.
//!
//! # Port slot (first 24 bytes of every slot; the pattern chooses the stride)
//!
//! | offset | word | writers | meaning |
//! |---|---|---|---|
//! | 0 | `node_id` | the claimant, the owner on drop, cleaners | 0 (free) → the owner's node id (CAS by the claimant) → 0 (by the owner on drop, or by a cleaner once the node is dead) |
//! | 8 | `id` | the same | 0 → the port id (Release, after the claim) → 0 |
//! | 16 | `event` | the pattern's notifiers; the port registers to sleep | the [`EventWord`] the port sleeps on (a subscriber waiting for samples, a publisher blocked on a full queue, a listener) |
//! | 20 | `fd_armed` | the port arms (0 → 1); a notifier that saw a registered sleeper swaps it back to 0 | 1 while the port waits on its wake-up descriptor and wants a wake byte, else 0; exactly one notifier sees 1 per arming ([`crate::sync::fdwake`]) |
//!
//! `node_id` and `id` change only through [`crate::sync::slot`], whose
//! module docs hold their state table and whose loom models
//! (`service::loom_tests`) run these very functions. Readers (peers
//! rescanning after a generation bump) go by `id`, claimants and cleaners
//! by `node_id`: `id == 0` means "no port here" even while `node_id` is
//! set. So a port killed between claiming `node_id` and storing its `id`
//! leaves a slot that no peer uses and that cleanup frees (it looks at
//! `node_id`). Every claim, release and reclamation is followed by a bump
//! of the kind's generation word, so that peers rescan.

use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::shm::{Region, Segment};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::{EventWord, slot};

/// A cache line.
pub(crate) const LINE: usize = 64;

/// Most port kinds one pattern may have (one generation word each).
pub(crate) const MAX_PORT_KINDS: usize = 7;

/// The first line of every service segment.
#[repr(C, align(64))]
pub(crate) struct ServiceHeader {
    /// See the module docs.
    pub(crate) removed: AtomicU64,
    /// One per port kind, in the order of the pattern's
    /// [`PORT_KINDS`](super::core::Pattern::PORT_KINDS).
    pub(crate) generation: [AtomicU64; MAX_PORT_KINDS],
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<ServiceHeader>() == LINE);

/// The registry words at the start of every port slot (see the module
/// docs).
#[repr(C)]
pub(crate) struct PortSlot {
    pub(crate) node_id: AtomicU64,
    pub(crate) id: AtomicU64,
    pub(crate) event: EventWord,
    /// A std atomic even under loom: the descriptor path (`sync::fdwake`)
    /// is modelled separately.
    pub(crate) fd_armed: std::sync::atomic::AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<PortSlot>() == 24);

impl PortSlot {
    /// A free slot (for tests and models).
    #[cfg(test)]
    pub(crate) fn new() -> PortSlot {
        PortSlot {
            node_id: AtomicU64::new(0),
            id: AtomicU64::new(0),
            event: EventWord::new(),
            fd_armed: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The port id in the slot, 0 if free.
    #[inline]
    pub(crate) fn port(&self) -> u64 {
        self.id.load(Ordering::Acquire)
    }

    /// Claims the slot for port `id` of node `node` if it is free
    /// ([`slot::try_claim`]); `prepare` resets the pattern's own words of
    /// the slot before the id is published.
    #[inline]
    pub(crate) fn try_claim(&self, node: u64, id: u64, prepare: impl FnOnce()) -> bool {
        slot::try_claim(&self.node_id, &self.id, node, id, prepare)
    }

    /// Cleanup: frees the slot of a dead node ([`slot::reclaim_if_dead`]).
    #[inline]
    pub(crate) fn reclaim_if_dead(
        &self,
        is_alive: impl FnOnce(u64) -> bool,
        dead_port: impl FnOnce(u64),
    ) -> bool {
        slot::reclaim_if_dead(&self.node_id, &self.id, is_alive, dead_port)
    }
}

/// Where a pattern keeps the slots of one port kind: `count` slots of
/// `stride` bytes (a multiple of 64) from `offset` of the data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortArray {
    pub(crate) offset: usize,
    pub(crate) count: usize,
    pub(crate) stride: usize,
}

/// The slots of one port kind in a mapped segment.
#[derive(Clone, Copy)]
pub(crate) struct SlotArray<'a> {
    base: NonNull<u8>,
    len: usize,
    stride: usize,
    _slots: PhantomData<&'a PortSlot>,
}

impl<'a> SlotArray<'a> {
    /// The slots of `array` in `region`; `None` if they do not fit or are
    /// misaligned.
    pub(crate) fn new(region: &Region, array: PortArray) -> Option<SlotArray<'a>> {
        if array.count == 0 || array.stride < size_of::<PortSlot>() || array.stride % LINE != 0 {
            return None;
        }
        let span = region.sub(array.offset, array.count * array.stride).ok()?;
        // Every slot is aligned if the first is (the stride is a multiple
        // of the alignment).
        region.resolve::<PortSlot>(array.offset).ok()?;
        Some(SlotArray {
            base: span.base(),
            len: array.count,
            stride: array.stride,
            _slots: PhantomData,
        })
    }

    /// The number of slots.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Slot `i`.
    ///
    /// # Panics
    ///
    /// If `i` is not below [`len`](Self::len).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &'a PortSlot {
        assert!(i < self.len, "port slot {i} of {}", self.len);
        // SAFETY: `new` checked that `len` slots of `stride` bytes fit in
        // the region and that the first is aligned (hence all are); the
        // region stays mapped for 'a (the caller borrows its segment); a
        // PortSlot is made of atomics, valid for any bytes and any
        // concurrent writer.
        unsafe { &*self.base.as_ptr().add(i * self.stride).cast::<PortSlot>() }
    }

    /// The slots in order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &'a PortSlot> + 'a {
        let this = *self;
        (0..self.len).map(move |i| this.get(i))
    }
}

impl<'a> std::ops::Index<usize> for SlotArray<'a> {
    type Output = PortSlot;

    #[inline]
    fn index(&self, i: usize) -> &PortSlot {
        self.get(i)
    }
}

impl<'a> IntoIterator for SlotArray<'a> {
    type Item = &'a PortSlot;
    type IntoIter = Box<dyn ExactSizeIterator<Item = &'a PortSlot> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Types that may be viewed in shared memory that other processes write
/// concurrently: made only of atomics (and padding), so every bit pattern
/// is valid and every concurrent write is a defined atomic access.
///
/// # Safety
///
/// The implementing type must consist only of atomic integers, `EventWord`s
/// and arrays or `repr(C)` structs of them.
pub(crate) unsafe trait SharedWords {}

// SAFETY: atomics.
unsafe impl SharedWords for AtomicU64 {}
// SAFETY: atomics (the shim's and std's are the same type outside loom).
#[cfg(loom)]
unsafe impl SharedWords for std::sync::atomic::AtomicU64 {}
// SAFETY: an atomic.
unsafe impl SharedWords for crate::sync::atomic::AtomicU32 {}
// SAFETY: an atomic.
#[cfg(loom)]
unsafe impl SharedWords for std::sync::atomic::AtomicU32 {}
// SAFETY: `repr(C)`: atomics only.
unsafe impl SharedWords for ServiceHeader {}
// SAFETY: `repr(C)`: atomics and an EventWord (an atomic).
unsafe impl SharedWords for PortSlot {}

/// Checked access to the data area of a mapped service segment whose size
/// was checked against its layout; the pattern views (`pubsub::layout`,
/// `event::layout`) are built on it.
#[derive(Clone, Copy)]
pub(crate) struct SegmentView<'a> {
    region: Region,
    _segment: PhantomData<&'a Segment>,
}

impl<'a> SegmentView<'a> {
    /// `None` if the data area is smaller than `size`.
    pub(crate) fn new(segment: &'a Segment, size: usize) -> Option<SegmentView<'a>> {
        let region = segment.data();
        (region.len() >= size).then_some(SegmentView {
            region,
            _segment: PhantomData,
        })
    }

    /// The `T` at `offset`.
    ///
    /// # Panics
    ///
    /// If it is not inside the data area or misaligned (a layout bug: the
    /// pattern checks its layout against the size in `new`).
    #[inline]
    pub(crate) fn at<T: SharedWords>(&self, offset: usize) -> &'a T {
        let p = self
            .region
            .resolve::<T>(offset)
            .expect("offset inside the layout checked in new()");
        // SAFETY: in bounds and aligned (resolve); the region stays mapped
        // for 'a (we borrow its segment); T is made of atomics
        // (SharedWords), valid for any contents and any concurrent writer.
        unsafe { p.as_ref() }
    }

    /// The `n` values of `T` from `offset`.
    ///
    /// # Panics
    ///
    /// As [`at`](Self::at).
    #[inline]
    pub(crate) fn slice<T: SharedWords>(&self, offset: usize, n: usize) -> &'a [T] {
        let p = self
            .region
            .resolve_slice::<T>(offset, n)
            .expect("slice inside the layout checked in new()");
        // SAFETY: as in `at`, for `n` values.
        unsafe { std::slice::from_raw_parts(p.as_ptr(), n) }
    }

    /// The header line.
    #[inline]
    pub(crate) fn header(&self) -> &'a ServiceHeader {
        self.at(0)
    }

    /// The slots of `array`.
    ///
    /// # Panics
    ///
    /// As [`at`](Self::at).
    #[inline]
    pub(crate) fn slots(&self, array: PortArray) -> SlotArray<'a> {
        SlotArray::new(&self.region, array).expect("slots inside the layout checked in new()")
    }

    /// `Some` if `array` lies inside the data area.
    pub(crate) fn check(&self, array: PortArray) -> Option<()> {
        SlotArray::new(&self.region, array).map(|_| ())
    }
}

/// Claims the first free slot of `slots` for port `id` of node `node`,
/// then bumps `generation` (AcqRel), so that a peer that sees the
/// generation move and rescans the slots sees the new id. `prepare(i)`
/// resets the pattern's own words of slot `i` before the id is published.
#[inline]
pub(crate) fn claim_free_slot(
    slots: impl IntoIterator<Item = impl std::ops::Deref<Target = PortSlot>>,
    generation: &AtomicU64,
    node: u64,
    id: u64,
    mut prepare: impl FnMut(usize),
) -> Option<usize> {
    let i = slots
        .into_iter()
        .enumerate()
        .position(|(i, slot)| slot.try_claim(node, id, || prepare(i)))?;
    generation.fetch_add(1, Ordering::AcqRel);
    Some(i)
}

/// The owner frees `slot` ([`slot::release`]) and bumps `generation`.
#[inline]
pub(crate) fn release_slot(slot: &PortSlot, generation: &AtomicU64) {
    slot::release(&slot.node_id, &slot.id);
    generation.fetch_add(1, Ordering::AcqRel);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn claim_free_slot_takes_the_first_free_one() {
        let slots: Vec<PortSlot> = (0..3).map(|_| PortSlot::new()).collect();
        let generation = AtomicU64::new(0);
        let mut prepared = Vec::new();
        assert_eq!(
            claim_free_slot(&slots, &generation, 1, 10, |i| prepared.push(i)),
            Some(0)
        );
        assert_eq!(claim_free_slot(&slots, &generation, 1, 11, |_| {}), Some(1));
        release_slot(&slots[0], &generation);
        assert_eq!(claim_free_slot(&slots, &generation, 2, 20, |_| {}), Some(0));
        assert_eq!(claim_free_slot(&slots, &generation, 2, 21, |_| {}), Some(2));
        assert_eq!(claim_free_slot(&slots, &generation, 2, 22, |_| {}), None);
        assert_eq!(generation.load(Ordering::Relaxed), 5);
        assert_eq!(prepared, [0]);
        assert!(slots[1].reclaim_if_dead(|n| n != 1, |id| assert_eq!(id, 11)));
        assert_eq!(slots[1].port(), 0);
    }

    #[test]
    fn slot_arrays_are_checked_and_strided() {
        let mut words = vec![0u64; 64 * 4];
        let len = words.len() * 8;
        // SAFETY: the buffer outlives the region and nothing else uses it.
        let region = unsafe { Region::new(NonNull::new(words.as_mut_ptr().cast()).unwrap(), len) };
        let array = PortArray {
            offset: 128,
            count: 3,
            stride: 192,
        };
        let slots = SlotArray::new(&region, array).unwrap();
        assert_eq!(slots.len(), 3);
        slots[2].id.store(7, Ordering::Relaxed);
        assert_eq!(words[(128 + 2 * 192) / 8 + 1], 7);
        let too_many = PortArray { count: 20, ..array };
        assert!(SlotArray::new(&region, too_many).is_none());
        let unaligned = PortArray {
            stride: 100,
            ..array
        };
        assert!(SlotArray::new(&region, unaligned).is_none());
    }
}
