//! The chunk pool of a port's data segment: a port (a publisher, a
//! request/response client or server) owns a pool of equal chunks in its
//! own data segment, which its peers map **read-only**. It lives below
//! the patterns: publish/subscribe (`pub.<id>`, publishers) and
//! request/response (`rrp.<id>`, clients and servers) both use it, each
//! with its own segment name, fingerprint and 16-byte chunk header, and
//! neither imports the other. What travels between the ports (chunk
//! indices) is `crate::queue`'s.
//!
//! # Data segment (data area)
//!
//! ```text
//! 0        PoolHeader (128 B): id | chunks | chunk_size | chunks_offset | header_offset
//!                              | payload_offset | max_len | element_size | node_id
//! chunks_offset = round_up(128 + 128, align) − 128 (the first chunk at a multiple of
//!                 align from the start of the page-aligned mapping):
//!          chunk[i] at chunks_offset + i × chunk_size:
//!            +0              chunk header (16 B, the pattern's: two u64 words)
//!            +header_offset  user header H, header_offset = round_up(16, align H)
//!            +payload_offset payload (T, or max_len × T), aligned to max(align T, 8)
//!          chunk_size = round_up(payload_offset + max_len × size T, align)
//!          align = max(64, align T, align H)
//! ```
//!
//! The header is written once by the owner before the segment is ready
//! ([`Geometry::write`]); a peer checks the segment's fingerprint and the
//! port id, re-derives the whole geometry from `(chunks, max_len)` and
//! the types it expects, and refuses a segment whose header differs or
//! whose size is smaller ([`Geometry::read_region`]); chunk count
//! `1..=2^24` ([`MAX_CHUNKS`]). `node_id` lets cleanup remove a data
//! segment whose owner died before it claimed a service slot
//! ([`data_segment_node`]). The chunk header is written by the owner
//! before the chunk's index is published (Release) and read by a peer
//! after its Acquire take; its words are the pattern's (see each
//! pattern's module docs).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::shm::{Region, Segment, TypeLayout};

/// Most chunks per pool (queue entries carry a 24-bit chunk index).
pub(crate) const MAX_CHUNKS: usize = 1 << 24;

/// Size of the chunk header at the start of every chunk.
pub(crate) const CHUNK_HEADER_SIZE: usize = 16;

/// The layout of "no user header" (zero-sized).
pub(crate) const NO_HEADER: TypeLayout = TypeLayout::leaf("NoHeader", 0, 1);

/// A pattern's chunk header type.
///
/// # Safety
///
/// The type is [`CHUNK_HEADER_SIZE`] bytes or less, aligned to at most 16,
/// and made of atomics only (every bit pattern valid, shared access
/// allowed).
pub(crate) unsafe trait ChunkHead: Sized {}

/// Header line of a data segment (written once before the segment is
/// ready, read and validated by peers).
#[repr(C, align(64))]
pub(crate) struct PoolHeader {
    pub(crate) id: AtomicU64,
    pub(crate) chunks: AtomicU64,
    pub(crate) chunk_size: AtomicU64,
    pub(crate) chunks_offset: AtomicU64,
    pub(crate) header_offset: AtomicU64,
    pub(crate) payload_offset: AtomicU64,
    pub(crate) max_len: AtomicU64,
    pub(crate) element_size: AtomicU64,
    /// The node that owns the port: lets cleanup remove a data segment
    /// whose port died before it claimed a service slot.
    pub(crate) node_id: AtomicU64,
}

/// Where things are in a data segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) chunks: usize,
    pub(crate) chunk_size: usize,
    pub(crate) chunks_offset: usize,
    pub(crate) header_offset: usize,
    pub(crate) payload_offset: usize,
    pub(crate) max_len: usize,
    pub(crate) element_size: usize,
}

fn round_up(n: usize, a: usize) -> Option<usize> {
    n.checked_next_multiple_of(a)
}

impl Geometry {
    /// The geometry of `chunks` chunks of a user header `header` and up to
    /// `max_len` elements `element`; `None` on overflow (the data size may
    /// still overflow: [`Geometry::data_size`]).
    pub(crate) fn new(
        chunks: usize,
        max_len: usize,
        element: &TypeLayout,
        header: &TypeLayout,
    ) -> Option<Geometry> {
        let header_offset = round_up(CHUNK_HEADER_SIZE, header.align)?;
        let payload_offset = round_up(header_offset + header.size, element.align.max(8))?;
        let align = 64.max(element.align).max(header.align);
        let chunk_size = round_up(
            payload_offset.checked_add(element.size.checked_mul(max_len)?)?,
            align,
        )?;
        // The data area starts HEADER_SIZE bytes into a page-aligned
        // mapping: place the first chunk at an absolute multiple of `align`.
        let hs = crate::shm::HEADER_SIZE;
        let chunks_offset = round_up(hs + size_of::<PoolHeader>(), align)? - hs;
        Some(Geometry {
            chunks,
            chunk_size,
            chunks_offset,
            header_offset,
            payload_offset,
            max_len,
            element_size: element.size,
        })
    }

    /// Bytes of the data area (`None` on overflow).
    pub(crate) fn data_size(&self) -> Option<usize> {
        self.chunks_offset
            .checked_add(self.chunk_size.checked_mul(self.chunks)?)
    }

    /// Writes the header of port `id` of node `node_id` (the owner, before
    /// the segment is ready).
    pub(crate) fn write(&self, h: &PoolHeader, id: u64, node_id: u64) {
        h.id.store(id, Ordering::Relaxed);
        h.node_id.store(node_id, Ordering::Relaxed);
        h.chunks.store(self.chunks as u64, Ordering::Relaxed);
        h.chunk_size
            .store(self.chunk_size as u64, Ordering::Relaxed);
        h.chunks_offset
            .store(self.chunks_offset as u64, Ordering::Relaxed);
        h.header_offset
            .store(self.header_offset as u64, Ordering::Relaxed);
        h.payload_offset
            .store(self.payload_offset as u64, Ordering::Relaxed);
        h.max_len.store(self.max_len as u64, Ordering::Relaxed);
        h.element_size
            .store(self.element_size as u64, Ordering::Relaxed);
    }

    /// Reads the geometry of port `id` from its data area `region` and
    /// checks it against the region and the types.
    pub(crate) fn read_region(
        region: &Region,
        id: u64,
        element: &TypeLayout,
        header: &TypeLayout,
    ) -> Result<Geometry, String> {
        let h = region
            .resolve::<PoolHeader>(0)
            .map_err(|e| format!("data segment too small: {e}"))?;
        // SAFETY: bounds and alignment checked; atomics only; the reference
        // does not outlive this function.
        let h = unsafe { h.as_ref() };
        let n = |w: &AtomicU64| usize::try_from(w.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        if h.id.load(Ordering::Relaxed) != id {
            return Err("data segment belongs to another port".into());
        }
        let found = Geometry {
            chunks: n(&h.chunks),
            chunk_size: n(&h.chunk_size),
            chunks_offset: n(&h.chunks_offset),
            header_offset: n(&h.header_offset),
            payload_offset: n(&h.payload_offset),
            max_len: n(&h.max_len),
            element_size: n(&h.element_size),
        };
        if found.chunks == 0 || found.chunks > MAX_CHUNKS {
            return Err(format!("{} chunks", found.chunks));
        }
        let expected = Geometry::new(found.chunks, found.max_len, element, header)
            .ok_or("data segment geometry overflows")?;
        if expected != found {
            return Err(format!(
                "data segment geometry {found:?} differs from the expected {expected:?}"
            ));
        }
        let size = found.data_size().ok_or("data segment geometry overflows")?;
        if size > region.len() {
            return Err(format!(
                "data segment holds {} bytes, its geometry needs {size}",
                region.len()
            ));
        }
        Ok(found)
    }
}

/// What names and marks the data segments of one pattern's pool-owning
/// ports: the object kind, whose prefix names them
/// ([`Domain::pool_segment`](crate::domain::Domain::pool_segment)), and
/// their format fingerprint (each pattern has its own). A pattern that
/// owns pools names this in its [`Pattern::POOLS`], so the service core
/// removes the pools of dead ports, of a removed service and of ports
/// that died before they claimed a slot.
///
/// [`Pattern::POOLS`]: crate::service::core::Pattern::POOLS
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolKind {
    pub(crate) object: crate::domain::ObjectKind,
    pub(crate) fingerprint: u64,
}

impl PoolKind {
    /// The data segment name of port `id`.
    pub(crate) fn segment(&self, id: u64) -> String {
        crate::domain::Domain::pool_segment(self.object, id)
    }
}

/// A pool: the data segment and where its chunks are in our mapping.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) segment: Segment,
    pub(crate) geometry: Geometry,
    /// First chunk in our mapping (chunk i is `i * chunk_size` further).
    pub(crate) base: NonNull<u8>,
}

// SAFETY: `base` points into `segment`'s mapping, which moves with the
// pool and lives as long as it; every access through it is either to the
// owner's own chunks (the owner is not Sync) or read-only.
unsafe impl Send for Pool {}
// SAFETY: shared access only reads the pointer; see Send.
unsafe impl Sync for Pool {}

impl Pool {
    /// Creates the data segment `kind` of port `id` of node `node_id`.
    ///
    /// # Panics
    ///
    /// If `geometry.data_size()` overflows (callers check it first).
    pub(crate) fn create(
        domain: &crate::domain::Domain,
        permissions: crate::shm::Permissions,
        kind: PoolKind,
        id: u64,
        node_id: u64,
        geometry: Geometry,
    ) -> Result<Pool, crate::shm::CreateError> {
        let segment = Segment::builder(&kind.segment(id))
            .domain(domain.name())
            .permissions(permissions)
            .size(geometry.data_size().expect("checked by the caller"))
            .fingerprint(kind.fingerprint)
            .init(|region| {
                let h = region
                    .resolve::<PoolHeader>(0)
                    .map_err(|e| format!("data segment too small: {e}"))?;
                // SAFETY: checked bounds/alignment; atomics only; the
                // reference does not outlive the init call.
                geometry.write(unsafe { h.as_ref() }, id, node_id);
                Ok(())
            })
            .create()?;
        Ok(Pool::with(segment, geometry))
    }

    fn with(segment: Segment, geometry: Geometry) -> Pool {
        let base = segment
            .data()
            .sub(
                geometry.chunks_offset,
                geometry.chunk_size * geometry.chunks,
            )
            .expect("the segment holds the geometry (created or checked)")
            .base();
        Pool {
            segment,
            geometry,
            base,
        }
    }

    /// Maps the data segment `kind` of the peer `id` read-only and checks
    /// it against the types.
    pub(crate) fn open(
        domain: &crate::domain::Domain,
        permissions: crate::shm::Permissions,
        kind: PoolKind,
        id: u64,
        element: &TypeLayout,
        header: &TypeLayout,
    ) -> Result<Pool, String> {
        Pool::open_if_exists(domain, permissions, kind, id, element, header).map_err(|e| {
            e.unwrap_or_else(|| format!("data segment {} does not exist", kind.segment(id)))
        })
    }

    /// As [`open`](Self::open), telling a segment that does not exist
    /// (`Err(None)`) from one that cannot be used (`Err(Some(why))`).
    pub(crate) fn open_if_exists(
        domain: &crate::domain::Domain,
        permissions: crate::shm::Permissions,
        kind: PoolKind,
        id: u64,
        element: &TypeLayout,
        header: &TypeLayout,
    ) -> Result<Pool, Option<String>> {
        let segment = Segment::builder(&kind.segment(id))
            .domain(domain.name())
            .permissions(permissions)
            .fingerprint(kind.fingerprint)
            .read_only()
            .open()
            .map_err(|e| match e {
                crate::shm::OpenError::NotFound { .. } => None,
                e => Some(e.to_string()),
            })?;
        let geometry = Geometry::read_region(&segment.data(), id, element, header).map_err(Some)?;
        Ok(Pool::with(segment, geometry))
    }

    /// Chunk `i`'s start.
    ///
    /// # Panics
    ///
    /// If `i` is not a chunk of the pool (callers check indices read from
    /// shared memory first).
    #[inline]
    pub(crate) fn chunk(&self, i: u32) -> NonNull<u8> {
        assert!(
            (i as usize) < self.geometry.chunks,
            "chunk {i} out of range"
        );
        // SAFETY: i < chunks: the chunk lies inside the mapping (checked
        // when the pool was created or opened).
        unsafe { self.base.add(i as usize * self.geometry.chunk_size) }
    }

    /// Chunk `i`'s header.
    #[inline]
    pub(crate) fn header<C: ChunkHead>(&self, i: u32) -> &C {
        // SAFETY: in the mapping (`chunk`), 64-byte aligned, at least
        // CHUNK_HEADER_SIZE bytes before the user header; `C` is atomics
        // only and fits (ChunkHead's contract); lives as long as the
        // pool's mapping, which `&self` borrows.
        unsafe { self.chunk(i).cast::<C>().as_ref() }
    }

    /// Chunk `i`'s payload.
    #[inline]
    pub(crate) fn payload<T>(&self, i: u32) -> NonNull<T> {
        // SAFETY: payload_offset + size ≤ chunk_size (geometry), aligned
        // for the service's type, which the caller's `T` is (its layout
        // was checked against the service's type when the service opened).
        unsafe { self.chunk(i).add(self.geometry.payload_offset).cast() }
    }

    /// Chunk `i`'s user header.
    #[inline]
    pub(crate) fn user_header<H>(&self, i: u32) -> NonNull<H> {
        // SAFETY: header_offset + size of the header ≤ payload_offset
        // (geometry), aligned for the service's header type, which the
        // caller's `H` is (checked with the service's types when it
        // opened).
        unsafe { self.chunk(i).add(self.geometry.header_offset).cast() }
    }

    /// Removes the segment's name (the owner, on drop).
    pub(crate) fn unlink(&self) {
        let _ = self.segment.unlink();
    }
}

/// The node id recorded in data segment `name` of `domain` of pool kind
/// `kind` (`None` if it cannot be opened or read).
pub(crate) fn data_segment_node(
    domain: &crate::domain::Domain,
    name: &str,
    kind: PoolKind,
    permissions: crate::shm::Permissions,
) -> Option<u64> {
    let segment = Segment::builder(name)
        .domain(domain.name())
        .permissions(permissions)
        .fingerprint(kind.fingerprint)
        .read_only()
        .open_timeout(Duration::from_millis(100))
        .open()
        .ok()?;
    let h = segment.data().resolve::<PoolHeader>(0).ok()?;
    // SAFETY: bounds and alignment checked; atomics only; the reference
    // does not outlive `segment`.
    Some(unsafe { h.as_ref() }.node_id.load(Ordering::Relaxed))
}

/// How one chunk of the owner's pool is used now (process-local).
#[derive(Debug, Clone, Copy, Default)]
struct ChunkUse {
    /// Bit s: the peer in slot s may still hold the chunk (queued to it,
    /// borrowed by it, or returned and not yet collected).
    holders: u64,
    /// Loaned out to the owner's user, not yet sent or dropped.
    loaned: bool,
    /// Kept by the owner for later (pub/sub history).
    kept: bool,
}

/// The owner's process-local bookkeeping of its pool's chunks: which are
/// loaned, which peers may hold each, which are free. One for every port
/// that owns a pool (publisher, client, server); a chunk is free exactly
/// when no peer holds it, it is not loaned and not kept. Peers are slots
/// of at most 64 ([`MAX_PEERS`](Book::MAX_PEERS)), one bit each.
#[derive(Debug)]
pub(crate) struct Book {
    chunks: Vec<ChunkUse>,
    /// Free chunks, popped from the back (chunk 0 first at the start).
    free: Vec<u32>,
    loans: usize,
}

impl Book {
    /// Most peer slots a book tells apart (each pattern's `MAX_PORTS`
    /// is checked against it at compile time).
    pub(crate) const MAX_PEERS: usize = u64::BITS as usize;

    /// A book of `chunks` chunks, all free.
    pub(crate) fn new(chunks: usize) -> Book {
        Book {
            chunks: vec![ChunkUse::default(); chunks],
            free: (0..chunks as u32).rev().collect(),
            loans: 0,
        }
    }

    /// Chunks in the pool.
    pub(crate) fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Chunks free now.
    pub(crate) fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Chunks loaned out now.
    pub(crate) fn loans(&self) -> usize {
        self.loans
    }

    fn maybe_free(&mut self, chunk: u32) {
        let c = &self.chunks[chunk as usize];
        if c.holders == 0 && !c.loaned && !c.kept {
            self.free.push(chunk);
        }
    }

    /// A free chunk, now loaned.
    fn take(&mut self) -> Option<u32> {
        let chunk = self.free.pop()?;
        self.chunks[chunk as usize].loaned = true;
        self.loans += 1;
        Some(chunk)
    }

    /// The loan of `chunk` ends: sent (its holders added before) or
    /// dropped unsent. Free again if no peer holds it and it is not kept.
    pub(crate) fn end_loan(&mut self, chunk: u32) {
        self.loans -= 1;
        self.chunks[chunk as usize].loaned = false;
        self.maybe_free(chunk);
    }

    /// The peer in slot `s` may hold `chunk` from now on.
    #[inline]
    pub(crate) fn add_holder(&mut self, chunk: u32, s: usize) {
        self.chunks[chunk as usize].holders |= 1 << s;
    }

    /// The peer in slot `s` gave `chunk` back (or left): true if it held
    /// it. A chunk index out of range (a corrupted return) is ignored.
    pub(crate) fn release_holder(&mut self, chunk: u32, s: usize) -> bool {
        let bit = 1u64 << s;
        match self.chunks.get_mut(chunk as usize) {
            Some(c) if c.holders & bit != 0 => {
                c.holders &= !bit;
                self.maybe_free(chunk);
                true
            }
            _ => false,
        }
    }

    /// The peer in slot `s` left: everything it held comes back.
    pub(crate) fn release_peer(&mut self, s: usize) {
        for chunk in 0..self.chunks.len() as u32 {
            self.release_holder(chunk, s);
        }
    }

    /// Whether the owner keeps `chunk` for later (history): a kept chunk
    /// is not free even when no one holds it.
    pub(crate) fn keep(&mut self, chunk: u32, kept: bool) {
        self.chunks[chunk as usize].kept = kept;
        if !kept {
            self.maybe_free(chunk);
        }
    }
}

/// Why [`take_chunk`] found no chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TakeError {
    /// `max_loans` chunks are loaned already.
    ExceedsMaxLoans(usize),
    /// No chunk is free, even after collecting returns and recovering.
    OutOfChunks,
}

/// Takes a free chunk of the owner's pool for a loan: within `max_loans`;
/// when no chunk is free, `collect` (returns from peers) and, if still
/// none, `recover` (with no borrow of `state` held: dead-port cleanup and
/// reconnecting) then `collect` once more. `book` finds the [`Book`] in
/// the owner's state.
///
/// Returns are collected only when no chunk is free, also for large
/// chunks: handing out the chunk a peer just gave back (collecting before
/// every loan) was measured slower at 64 KiB (reqres round trip 19 → 32
/// µs): writing lines still cached by the reader costs more than writing
/// a chunk that left its caches.
#[inline]
pub(crate) fn take_chunk<S>(
    state: &std::cell::RefCell<S>,
    book: impl Fn(&mut S) -> &mut Book,
    max_loans: usize,
    collect: impl Fn(&mut S),
    recover: impl FnOnce(),
) -> Result<u32, TakeError> {
    let mut st = state.borrow_mut();
    if book(&mut st).loans >= max_loans {
        return Err(TakeError::ExceedsMaxLoans(max_loans));
    }
    if book(&mut st).free.is_empty() {
        collect(&mut st);
    }
    if book(&mut st).free.is_empty() {
        drop(st);
        recover();
        st = state.borrow_mut();
        collect(&mut st);
    }
    book(&mut st).take().ok_or(TakeError::OutOfChunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn take(book: &RefCell<Book>, max_loans: usize) -> Result<u32, TakeError> {
        take_chunk(book, |b| b, max_loans, |_| {}, || {})
    }

    #[test]
    fn a_chunk_is_free_only_when_unheld_unloaned_and_not_kept() {
        let book = RefCell::new(Book::new(2));
        let a = take(&book, 2).unwrap();
        assert_eq!(a, 0, "chunk 0 first");
        let b = take(&book, 2).unwrap();
        assert_eq!(take(&book, 2), Err(TakeError::ExceedsMaxLoans(2)));
        assert_eq!(take(&book, 3), Err(TakeError::OutOfChunks));
        let mut bk = book.borrow_mut();
        // `a` goes to peers 1 and 5 and is kept for history.
        bk.add_holder(a, 1);
        bk.add_holder(a, 5);
        bk.keep(a, true);
        bk.end_loan(a);
        assert_eq!((bk.loans(), bk.free_count()), (1, 0));
        assert!(bk.release_holder(a, 1));
        assert!(!bk.release_holder(a, 1), "returned twice");
        assert!(!bk.release_holder(a, 2), "never held");
        assert!(!bk.release_holder(99, 5), "out of range: ignored");
        bk.release_peer(5);
        assert_eq!(bk.free_count(), 0, "still kept");
        bk.keep(a, false);
        assert_eq!(bk.free_count(), 1);
        // `b` is dropped unsent: free at once.
        bk.end_loan(b);
        assert_eq!((bk.loans(), bk.free_count()), (0, 2));
    }

    #[test]
    fn take_chunk_collects_then_recovers_before_giving_up() {
        let book = RefCell::new(Book::new(1));
        let a = take(&book, 1).unwrap();
        book.borrow_mut().add_holder(a, 0);
        book.borrow_mut().end_loan(a);
        let collected = std::cell::Cell::new(0);
        let recovered = std::cell::Cell::new(false);
        let r = take_chunk(
            &book,
            |b| b,
            1,
            |b| {
                collected.set(collected.get() + 1);
                // The peer's return shows up only after recovery.
                if recovered.get() {
                    b.release_holder(a, 0);
                }
            },
            || recovered.set(true),
        );
        assert_eq!(r, Ok(a));
        assert_eq!(collected.get(), 2);
    }
}
