//! An allocator whose whole state lives inside a shared-memory region:
//! TLSF (two-level segregated fit), hardened against corrupted metadata.
//!
//! [`HeapState`] is one `#[repr(C)]` [`ShmSafe`] struct placed in the
//! region. Every operation takes `&mut HeapState` plus the [`Region`] and
//! returns **offsets** from the region base, never pointers, so the heap
//! works the same in every process that maps the region, at any address.
//! Because every operation needs `&mut HeapState`, putting the state inside
//! a process-shared lock (`RobustMutex<HeapState>`) makes it usable by
//! several processes at once; the heap itself does no locking.
//!
//! # Algorithm
//!
//! TLSF (Masmano et al., 2004): free blocks are kept in `FL_COUNT × 16`
//! segregated lists, indexed by a first level (power of two of the size)
//! and a second level (16 linear steps inside that power of two), with a
//! bitmap per level. Allocation and free are O(1): two `trailing_zeros`
//! find a non-empty list whose every block is large enough; freed blocks
//! are merged at once with free physical neighbours (boundary tags), so
//! free blocks never touch each other. No operation walks a list; the
//! only walk is [`HeapState::stats`]/[`HeapState::verify`], bounded by
//! the number of blocks that can fit in the heap.
//!
//! # Robustness
//!
//! Another process may be buggy or hostile and write anything into the
//! region. Every offset and size read from the region is validated before
//! use: inside the heap, granule-aligned, sizes in range, and each block
//! header carries a tag (a hash of its offset and fields) that a stray
//! write or a wrong offset is very unlikely to match. Neighbour links are
//! cross-checked (a block's successor must name it as predecessor; a free
//! block's list neighbours must link back). A failed check is an
//! [`AllocError`], never undefined behaviour or an endless loop.
//!
//! # Crash consistency
//!
//! A process may die (SIGKILL) at any instruction of an operation while
//! it holds the lock around the [`HeapState`]. The chain of blocks, walked
//! by their sizes from the heap start, stays valid at every instant: each
//! operation changes it with a single 8-byte store of one block's
//! `size_flags` (size and FREE bit in one word), made after every header
//! that the new size exposes has been written in full (a split writes the
//! remainder's header inside the block before shrinking it; a merge grows
//! a block over its neighbours, whose headers become payload). Back links,
//! tags, free lists, bitmaps and counters may be torn; the next lock owner
//! calls [`HeapState::repair`], which rebuilds them all from the chain. A
//! death can leak the block being allocated or freed; it cannot lose the
//! heap.
//!
//! # Layout (all fields little-endian `u64`)
//!
//! ```text
//! block header (32 bytes, at a 16-byte granule of the heap):
//!   +0  prev_phys   offset of the physically previous block, u64::MAX if first
//!   +8  size_flags  block size in bytes (incl. header, multiple of 16) | FREE (bit 0)
//!   +16 tag         mix(offset, prev_phys, size_flags, aux, HEAP_KEY)
//!   +24 aux         used: the size the caller asked for; free: 0
//!   +32 payload (used) | next_free, prev_free (free; u64::MAX = none)
//! ```
//!
//! Blocks are at least 48 bytes (header + two links); bits 1..3 of
//! `size_flags` must be 0. Over-aligned allocations split a leading free
//! block (≥ 48 bytes) off the block found, so the payload is always at
//! block + 32 and [`HeapState::usable_size`] is `size − 32`.
//!
//! [`HeapState`] (5512 bytes, align 8; it may live inside the region, the
//! usual case, or outside it; no heap range may overlap it):
//!
//! | offset | field | meaning |
//! |---|---|---|
//! | 0 | `magic` | `b"CDTHEAP1"`; anything else (zeroed memory included) = not initialised |
//! | 8 | `version` | 1 |
//! | 16 | `heap_start` | region offset of the first block (base + start is 16-aligned) |
//! | 24 | `heap_end` | region offset one past the last block |
//! | 32 | `used_bytes` | sum of used block sizes, headers included |
//! | 40 | `free_bytes` | sum of free block sizes |
//! | 48 | `allocations` | live allocations |
//! | 56 | `free_blocks` | free blocks |
//! | 64 | `fl_bitmap` | bit `f` set ⇔ some list `heads[f][*]` is non-empty |
//! | 72 | `sl_bitmap: [u64; 40]` | bit `s` of word `f` set ⇔ `heads[f][s]` is non-empty |
//! | 392 | `heads: [[u64; 16]; 40]` | region offset of the first free block of each list, `u64::MAX` = empty |
//!
//! Parameters: granule 16 bytes; 16 second-level lists per power of two
//! (`SL_LOG = 4`); sizes below 256 bytes in first level 0 in exact 16-byte
//! classes, first levels 1..39 for 2^8..2^47; a heap is smaller than 2^47
//! bytes; alignments up to [`MAX_ALIGN`] (64 KiB).
//!
//! # Why TLSF
//!
//! * **O(1) worst case, no walks.** Two `trailing_zeros` over the bitmaps
//!   find a list, a pop takes its head; free merges with its physical
//!   neighbours through boundary tags. A corrupted (cyclic) free list cannot
//!   make an allocation loop, and each operation touches a constant number
//!   of headers, each validated. A size-class allocator over a best-fit
//!   fallback has an O(log n) or O(n) slow path whose walks would all need
//!   bounds.
//! * **Fragmentation.** A "good fit" policy with immediate coalescing,
//!   close to best fit in the literature. The search rounds a request up to
//!   the next of 16 sub-classes (a block that would just fit may be passed
//!   over: at most 1/16 of the size), but the block found is split to the
//!   exact size, so internal waste is only the header and the granule.
//!   Size classes keep per-class pages that other sizes cannot reuse: bad
//!   for a fixed-size segment with run-time-sized data (growing vectors).
//! * **Robustness.** All state is one fixed struct plus per-block headers,
//!   all offsets, every field checked before use; the coalescing invariant
//!   (no two adjacent free blocks) is checkable by [`HeapState::verify`].
//! * **Cost.** A 32-byte header per block, no per-thread caches (the heap
//!   is shared), and the validation reads.
//!
//! # What is validated
//!
//! On every operation: the state's magic and version; `heap_start <
//! heap_end ≤ region.len`, 16-aligned, below 2^47, not overlapping the
//! state. Every header read: inside the heap and on a granule; size ≥ 48,
//! a multiple of 16, the block inside the heap; no unknown flag bits;
//! `prev_phys` below the block and inside the heap, `u64::MAX` exactly for
//! the first block; the tag. Neighbours: the successor must name the block
//! as `prev_phys`, the predecessor must end where the block starts. Free
//! lists: a block found through a list head must be free and of that
//! list's size class; unlinking checks `next.prev == me` and `prev.next ==
//! me` (or the head is me), no self links; a set bitmap bit means a
//! non-null head. `deallocate` / `reallocate` / `usable_size`: the offset
//! must be a block start with a valid tag ([`AllocError::NotABlock`]),
//! used ([`AllocError::DoubleFree`]), with agreeing neighbours; a forged
//! header inside a payload would need the right tag *and* be linked from
//! its physical neighbours. Counters read from the state use wrapping
//! arithmetic; `verify` cross-checks them. The tag is a checksum, not a
//! MAC: the guarantee is no access outside the region, no undefined
//! behaviour, no endless loop and a named error, not integrity against a
//! hostile writer.
//!
//! [`HeapState::verify`] walks every block once (bounded by `heap_len /
//! 48` steps) and checks all of the above plus the counters. A heap that
//! fails `verify` after a [`HeapState::repair`] is poisoned: report it, and
//! re-`init` the segment or abandon it. Operations on a poisoned heap
//! return errors (never undefined behaviour, never a hang) but may have
//! partly applied before noticing. A chain of blocks that does not walk (a
//! size out of range, not reaching the heap's end) is
//! [`AllocError::BrokenChain`] or [`AllocError::CorruptHeader`], and
//! `repair` then writes nothing.
//!
//! # Pitfalls
//!
//! * Alignment is of the *address* (base + offset). Mappings are
//!   page-aligned, so alignments up to 4096 hold in every process; 8–64 KiB
//!   alignment holds only in mappings whose bases agree modulo it.
//! * Region bytes must be initialised memory (a mapping always is; under
//!   Miri use a zeroed allocation).
//! * A commit point is a compiler fence (`commit_point`) before the one
//!   8-byte store that changes the chain; keep it when changing a split,
//!   merge or over-aligned split.

use core::fmt;
use core::ptr;

use super::relptr::{Offset, OffsetError, Region};
use super::shm_safe::{ShmSafe, TypeLayout, fingerprint};

/// Every block starts at a multiple of this many bytes from the heap start,
/// and every block size is a multiple of it.
pub const GRANULE: usize = 16;
/// Bytes of the block header in front of every payload.
pub const HEADER_SIZE: usize = 32;
/// Smallest block: a header plus the two free-list links.
const MIN_BLOCK: u64 = 48;
/// Largest alignment [`HeapState::allocate`] accepts.
pub const MAX_ALIGN: usize = 64 * 1024;

const SL_LOG: u32 = 4;
const SL_COUNT: usize = 1 << SL_LOG;
const GRANULE_LOG: u32 = 4;
/// Sizes below this are in first level 0, in linear 16-byte steps.
const SMALL_BLOCK: u64 = 1 << (SL_LOG + GRANULE_LOG);
/// The heap (and hence every block) is smaller than `2^MAX_SIZE_LOG`.
const MAX_SIZE_LOG: u32 = 47;
const FL_COUNT: usize = (MAX_SIZE_LOG - (SL_LOG + GRANULE_LOG) + 1) as usize;

const FREE: u64 = 1;
const FLAGS: u64 = GRANULE as u64 - 1;
const NONE: u64 = u64::MAX;

const MAGIC: u64 = u64::from_le_bytes(*b"CDTHEAP1");
const VERSION: u64 = 1;
const HEAP_KEY: u64 = 0x9e37_79b9_7f4a_7c15;

/// Why a heap operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    /// No free block is large enough (the heap is full or fragmented).
    #[error("out of shared memory: no free block for {size} bytes aligned to {align}")]
    OutOfMemory {
        /// Requested size.
        size: usize,
        /// Requested alignment.
        align: usize,
    },
    /// The alignment is not a power of two or exceeds [`MAX_ALIGN`].
    #[error("unsupported alignment {align} (must be a power of two up to {MAX_ALIGN})")]
    UnsupportedAlignment {
        /// Requested alignment.
        align: usize,
    },
    /// The size cannot be represented in this heap at all.
    #[error("allocation of {size} bytes is larger than any heap can be")]
    TooLarge {
        /// Requested size.
        size: usize,
    },
    /// The state has no valid magic/version: it was never initialised with
    /// [`HeapState::init`], or its first bytes were overwritten.
    #[error("the heap state is not initialised (bad magic or version)")]
    NotInitialized,
    /// The heap range recorded in the state does not fit the region, or
    /// overlaps the state itself: the state is corrupted or belongs to
    /// another region.
    #[error("heap range {start:#x}..{end:#x} does not fit the {region_len}-byte region")]
    BadHeapBounds {
        /// Recorded start offset.
        start: u64,
        /// Recorded end offset.
        end: u64,
        /// Length of the region.
        region_len: usize,
    },
    /// The offset given to `deallocate`/`reallocate`/`usable_size` is not
    /// the start of a block this heap handed out.
    #[error("offset {offset:#x} is not an allocation of this heap")]
    NotABlock {
        /// The offset passed in.
        offset: u64,
    },
    /// The block at this offset is already free.
    #[error("double free of offset {offset:#x}")]
    DoubleFree {
        /// The offset passed in.
        offset: u64,
    },
    /// A block header in the region fails validation (garbage size, tag
    /// mismatch, neighbours that do not agree).
    #[error("corrupted block header at offset {offset:#x}")]
    CorruptHeader {
        /// Offset of the header.
        offset: u64,
    },
    /// A free list's links are inconsistent.
    #[error("corrupted free list at block {offset:#x}")]
    CorruptFreeList {
        /// Offset of the block whose links are wrong.
        offset: u64,
    },
    /// The free-list bitmaps disagree with the list heads.
    #[error("corrupted free-list bitmap (list {first}/{second})")]
    CorruptBitmap {
        /// First-level index.
        first: usize,
        /// Second-level index.
        second: usize,
    },
    /// Walking the physical blocks took more steps than blocks can fit in
    /// the heap, or did not end exactly at the heap's end.
    #[error("block chain does not end at the heap end: corrupted sizes")]
    BrokenChain,
}

/// Why [`HeapState::init`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeapInitError {
    /// The requested heap range is not inside the region.
    #[error("heap range is outside the region")]
    OutOfRegion(#[source] OffsetError),
    /// After aligning, fewer bytes remain than one minimal block.
    #[error("heap range of {len} bytes is too small for one block")]
    TooSmall {
        /// Usable length after alignment.
        len: usize,
    },
    /// The heap range is larger than `2^47` bytes.
    #[error("heap range of {len} bytes is too large")]
    TooLarge {
        /// Requested length.
        len: usize,
    },
    /// The heap range overlaps the `HeapState` itself.
    #[error("the heap range overlaps the heap state")]
    OverlapsState,
}

/// Usage figures, for tools and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeapStats {
    /// Bytes managed by the heap (headers included).
    pub capacity: u64,
    /// Bytes in used blocks, headers and alignment padding included.
    pub used_bytes: u64,
    /// Bytes in free blocks, headers included.
    pub free_bytes: u64,
    /// Number of live allocations.
    pub allocations: u64,
    /// Number of free blocks (1 when nothing is allocated).
    pub free_blocks: u64,
    /// Largest payload one allocation (alignment ≤ 16) could get right now.
    pub largest_free: u64,
}

/// The complete state of one heap, meant to live in the shared region
/// (usually behind a process-shared mutex).
///
/// Zeroed memory is an *uninitialised* heap: every operation returns
/// [`AllocError::NotInitialized`] until [`HeapState::init`] has run.
///
/// Layout (`#[repr(C)]`, all `u64`): `magic, version, heap_start,
/// heap_end, used_bytes, free_bytes, allocations, free_blocks,
/// fl_bitmap, sl_bitmap[40], heads[40][16]` — 5512 bytes (see the module docs).
#[repr(C)]
pub struct HeapState {
    magic: u64,
    version: u64,
    heap_start: u64,
    heap_end: u64,
    used_bytes: u64,
    free_bytes: u64,
    allocations: u64,
    free_blocks: u64,
    fl_bitmap: u64,
    sl_bitmap: [u64; FL_COUNT],
    heads: [[u64; SL_COUNT]; FL_COUNT],
}

// SAFETY: repr(C), only u64 fields and arrays of them (no padding, no
// pointers, every bit pattern valid: garbage is caught by validation).
unsafe impl ShmSafe for HeapState {
    const LAYOUT: TypeLayout = TypeLayout {
        name: "HeapState",
        size: size_of::<HeapState>(),
        align: align_of::<HeapState>(),
        fingerprint: fingerprint::word(
            fingerprint::word(
                fingerprint::bytes(fingerprint::start(), b"HeapState/TLSF"),
                VERSION,
            ),
            size_of::<HeapState>() as u64,
        ),
    };
}

impl fmt::Debug for HeapState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeapState")
            .field("heap_start", &self.heap_start)
            .field("heap_end", &self.heap_end)
            .field("used_bytes", &self.used_bytes)
            .field("free_bytes", &self.free_bytes)
            .field("allocations", &self.allocations)
            .finish_non_exhaustive()
    }
}

/// The on-region block header.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawHeader {
    prev_phys: u64,
    size_flags: u64,
    tag: u64,
    aux: u64,
}

/// A block with its physical predecessor and successor.
type Neighbourhood = (Block, Option<Block>, Option<Block>);

/// A validated block header.
#[derive(Clone, Copy, Debug)]
struct Block {
    off: u64,
    prev: u64,
    size: u64,
    free: bool,
    aux: u64,
}

impl Block {
    fn next(&self) -> u64 {
        self.off + self.size
    }
}

fn tag(off: u64, prev: u64, size_flags: u64, aux: u64) -> u64 {
    // splitmix64-style finaliser over the fields.
    let mut x = HEAP_KEY ^ off;
    for w in [prev, size_flags, aux] {
        x = (x ^ w).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 31;
    }
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 29)
}

/// Keeps the compiler from moving stores across it: what comes before
/// (a new header) is in memory before what comes after (the commit store
/// of a size word), as a process killed between the two would see it.
/// The CPU keeps program order for a process's own stores as seen after
/// its death (x86 TSO; on weaker machines the kernel's exit path is a full
/// barrier), so a compiler fence is enough.
#[inline(always)]
pub(crate) fn commit_point() {
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

/// Free-list index of a block of `size` bytes.
fn mapping_insert(size: u64) -> (usize, usize) {
    if size < SMALL_BLOCK {
        (0, (size / GRANULE as u64) as usize)
    } else {
        let f = 63 - size.leading_zeros();
        let sl = ((size >> (f - SL_LOG)) as usize) ^ SL_COUNT;
        ((f - (SL_LOG + GRANULE_LOG) + 1) as usize, sl)
    }
}

/// Index of the first list whose every block holds `size` bytes.
fn mapping_search(size: u64) -> (usize, usize) {
    if size < SMALL_BLOCK {
        mapping_insert(size)
    } else {
        let f = 63 - size.leading_zeros();
        mapping_insert(size + (1 << (f - SL_LOG)) - 1)
    }
}

/// A checked view of the heap range inside a region.
struct Arena<'r> {
    region: &'r Region,
    start: u64,
    end: u64,
}

impl Arena<'_> {
    fn raw(&self, off: u64) -> *mut RawHeader {
        // Callers checked `off` lies inside the heap range (which is inside
        // the region) with room for a header; resolve re-checks anyway.
        match self.region.resolve::<RawHeader>(off as usize) {
            Ok(p) => p.as_ptr(),
            Err(_) => unreachable!("header offset validated before use"),
        }
    }

    fn in_heap(&self, off: u64, len: u64) -> bool {
        off >= self.start
            && (off - self.start) % GRANULE as u64 == 0
            && off.checked_add(len).is_some_and(|e| e <= self.end)
    }

    /// Reads and validates the header at `off`.
    fn block(&self, off: u64) -> Result<Block, AllocError> {
        let bad = AllocError::CorruptHeader { offset: off };
        if !self.in_heap(off, MIN_BLOCK) {
            return Err(bad);
        }
        // SAFETY: `off..off+48` is inside the heap range, which `Arena::new`
        // checked to be inside the region; `raw` derives the pointer from
        // the region base with an alignment check. The bytes are plain u64.
        let h = unsafe { ptr::read(self.raw(off)) };
        let size = h.size_flags & !FLAGS;
        let flags = h.size_flags & FLAGS;
        if flags & !FREE != 0
            || size < MIN_BLOCK
            || !self.in_heap(off, size)
            || h.tag != tag(off, h.prev_phys, h.size_flags, h.aux)
        {
            return Err(bad);
        }
        if h.prev_phys != NONE && !(h.prev_phys < off && self.in_heap(h.prev_phys, MIN_BLOCK)) {
            return Err(bad);
        }
        if (h.prev_phys == NONE) != (off == self.start) {
            return Err(bad);
        }
        Ok(Block {
            off,
            prev: h.prev_phys,
            size,
            free: flags & FREE != 0,
            aux: h.aux,
        })
    }

    fn write(&self, off: u64, prev: u64, size: u64, free: bool, aux: u64) {
        let size_flags = size | if free { FREE } else { 0 };
        let h = RawHeader {
            prev_phys: prev,
            size_flags,
            tag: tag(off, prev, size_flags, aux),
            aux,
        };
        // SAFETY: every caller passes an offset of a block it validated (or
        // carved out of one), so `off..off+32` is inside the heap range.
        unsafe { ptr::write(self.raw(off), h) }
    }

    fn set_prev(&self, b: &Block, prev: u64) {
        self.write(b.off, prev, b.size, b.free, b.aux);
    }

    /// The (next, prev) free-list links of a free block.
    fn links(&self, off: u64) -> (u64, u64) {
        // SAFETY: `off` is a validated block of at least MIN_BLOCK bytes,
        // so the two words after its header are inside the heap.
        unsafe {
            let p = self.raw(off).add(1).cast::<[u64; 2]>();
            let [n, p] = ptr::read(p);
            (n, p)
        }
    }

    fn set_links(&self, off: u64, next: u64, prev: u64) {
        // SAFETY: as in `links`.
        unsafe { ptr::write(self.raw(off).add(1).cast::<[u64; 2]>(), [next, prev]) }
    }

    /// The physical successor of `b`, validated to name `b` as its
    /// predecessor; `None` at the heap end.
    fn next_of(&self, b: &Block) -> Result<Option<Block>, AllocError> {
        let n = b.next();
        if n == self.end {
            return Ok(None);
        }
        let nb = self.block(n)?;
        if nb.prev != b.off {
            return Err(AllocError::CorruptHeader { offset: n });
        }
        Ok(Some(nb))
    }

    /// The physical predecessor of `b`, validated to end where `b` starts.
    fn prev_of(&self, b: &Block) -> Result<Option<Block>, AllocError> {
        if b.prev == NONE {
            return Ok(None);
        }
        let pb = self.block(b.prev)?;
        if pb.next() != b.off {
            return Err(AllocError::CorruptHeader { offset: b.prev });
        }
        Ok(Some(pb))
    }
}

impl Default for HeapState {
    fn default() -> Self {
        HeapState::zeroed()
    }
}

impl HeapState {
    /// An all-zero, not yet initialised state (what a fresh segment holds);
    /// call [`HeapState::init`] before use.
    pub const fn zeroed() -> HeapState {
        HeapState {
            magic: 0,
            version: 0,
            heap_start: 0,
            heap_end: 0,
            used_bytes: 0,
            free_bytes: 0,
            allocations: 0,
            free_blocks: 0,
            fl_bitmap: 0,
            sl_bitmap: [0; FL_COUNT],
            heads: [[0; SL_COUNT]; FL_COUNT],
        }
    }

    /// Makes `region[start..start+len]` one empty heap managed by this
    /// state. The range is shrunk to 16-byte alignment.
    ///
    /// The state may live inside `region` (the usual case) but must not
    /// overlap the heap range. Any previous contents are forgotten.
    pub fn init(&mut self, region: &Region, start: usize, len: usize) -> Result<(), HeapInitError> {
        region.sub(start, len).map_err(HeapInitError::OutOfRegion)?;
        let base = region.base().as_ptr() as usize;
        let first = (base + start).next_multiple_of(GRANULE) - base;
        let end_addr = (base + start + len) / GRANULE * GRANULE;
        let end = end_addr.saturating_sub(base);
        if end <= first || ((end - first) as u64) < MIN_BLOCK {
            return Err(HeapInitError::TooSmall {
                len: end.saturating_sub(first),
            });
        }
        if (end - first) as u64 >= 1 << MAX_SIZE_LOG {
            return Err(HeapInitError::TooLarge { len });
        }
        if let Ok(me) = region.offset_of(self as *const HeapState) {
            if me < end && first < me + size_of::<HeapState>() {
                return Err(HeapInitError::OverlapsState);
            }
        }
        self.magic = MAGIC;
        self.version = VERSION;
        self.heap_start = first as u64;
        self.heap_end = end as u64;
        self.used_bytes = 0;
        self.free_bytes = (end - first) as u64;
        self.allocations = 0;
        self.free_blocks = 0;
        self.fl_bitmap = 0;
        self.sl_bitmap = [0; FL_COUNT];
        self.heads = [[NONE; SL_COUNT]; FL_COUNT];
        let arena = Arena {
            region,
            start: first as u64,
            end: end as u64,
        };
        let size = (end - first) as u64;
        arena.write(first as u64, NONE, size, true, 0);
        let b = Block {
            off: first as u64,
            prev: NONE,
            size,
            free: true,
            aux: 0,
        };
        self.insert_free(&arena, &b)
            .map_err(|_| HeapInitError::TooSmall { len: size as usize })?;
        self.free_blocks = 1;
        Ok(())
    }

    /// Whether [`HeapState::init`] has run (magic and version match).
    pub fn is_initialized(&self) -> bool {
        self.magic == MAGIC && self.version == VERSION
    }

    /// The heap range `(start, end)` as offsets in the region.
    pub fn bounds(&self) -> (u64, u64) {
        (self.heap_start, self.heap_end)
    }

    /// Bytes currently in used blocks (O(1); see [`HeapState::stats`]).
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    fn arena<'r>(&self, region: &'r Region) -> Result<Arena<'r>, AllocError> {
        if !self.is_initialized() {
            return Err(AllocError::NotInitialized);
        }
        let (start, end) = (self.heap_start, self.heap_end);
        let bad = AllocError::BadHeapBounds {
            start,
            end,
            region_len: region.len(),
        };
        if start >= end
            || end > region.len() as u64
            || end - start < MIN_BLOCK
            || end - start >= 1 << MAX_SIZE_LOG
            || (region.base().as_ptr() as usize).wrapping_add(start as usize) % GRANULE != 0
            || (end - start) % GRANULE as u64 != 0
        {
            return Err(bad);
        }
        if let Ok(me) = region.offset_of(self as *const HeapState) {
            let me = me as u64;
            if me < end && start < me + size_of::<HeapState>() as u64 {
                return Err(bad);
            }
        }
        Ok(Arena { region, start, end })
    }

    fn head(&self, fl: usize, sl: usize) -> u64 {
        self.heads[fl][sl]
    }

    fn insert_free(&mut self, arena: &Arena<'_>, b: &Block) -> Result<(), AllocError> {
        let (fl, sl) = mapping_insert(b.size);
        if fl >= FL_COUNT {
            return Err(AllocError::CorruptHeader { offset: b.off });
        }
        let head = self.head(fl, sl);
        if head != NONE {
            let hb = arena.block(head)?;
            if !hb.free {
                return Err(AllocError::CorruptFreeList { offset: head });
            }
            let (hn, _) = arena.links(head);
            arena.set_links(head, hn, b.off);
        }
        arena.set_links(b.off, head, NONE);
        self.heads[fl][sl] = b.off;
        self.fl_bitmap |= 1 << fl;
        self.sl_bitmap[fl] |= 1 << sl;
        Ok(())
    }

    /// Unlinks free block `b` from its list, checking the links first.
    fn remove_free(&mut self, arena: &Arena<'_>, b: &Block) -> Result<(), AllocError> {
        let (fl, sl) = mapping_insert(b.size);
        let bad = AllocError::CorruptFreeList { offset: b.off };
        if fl >= FL_COUNT {
            return Err(bad);
        }
        let (next, prev) = arena.links(b.off);
        // Validate both neighbours before writing anything.
        let next_ok = next == NONE || {
            let nb = arena.block(next).map_err(|_| bad)?;
            nb.free && arena.links(next).1 == b.off && mapping_insert(nb.size) == (fl, sl)
        };
        let prev_ok = if prev == NONE {
            self.head(fl, sl) == b.off
        } else {
            let pb = arena.block(prev).map_err(|_| bad)?;
            pb.free && arena.links(prev).0 == b.off && mapping_insert(pb.size) == (fl, sl)
        };
        if !next_ok || !prev_ok || next == b.off || prev == b.off {
            return Err(bad);
        }
        if next != NONE {
            let (nn, _) = arena.links(next);
            arena.set_links(next, nn, prev);
        }
        if prev != NONE {
            let (_, pp) = arena.links(prev);
            arena.set_links(prev, next, pp);
        } else {
            self.heads[fl][sl] = next;
            if next == NONE {
                self.sl_bitmap[fl] &= !(1 << sl);
                if self.sl_bitmap[fl] == 0 {
                    self.fl_bitmap &= !(1 << fl);
                }
            }
        }
        Ok(())
    }

    /// Finds (does not unlink) a free block of at least `size` bytes.
    fn find_free(&self, arena: &Arena<'_>, size: u64) -> Result<Option<Block>, AllocError> {
        let (mut fl, sl) = mapping_search(size);
        if fl >= FL_COUNT {
            return Ok(None);
        }
        let mut sl_map = self.sl_bitmap[fl] & (!0u64 << sl) & 0xffff;
        if sl_map == 0 {
            let fl_map = if fl + 1 >= 64 {
                0
            } else {
                self.fl_bitmap & (!0u64 << (fl + 1)) & ((1u64 << FL_COUNT) - 1)
            };
            if fl_map == 0 {
                return Ok(None);
            }
            fl = fl_map.trailing_zeros() as usize;
            sl_map = self.sl_bitmap[fl] & 0xffff;
            if sl_map == 0 {
                return Err(AllocError::CorruptBitmap {
                    first: fl,
                    second: 0,
                });
            }
        }
        let sl = sl_map.trailing_zeros() as usize;
        let head = self.head(fl, sl);
        if head == NONE {
            return Err(AllocError::CorruptBitmap {
                first: fl,
                second: sl,
            });
        }
        let b = arena.block(head)?;
        if !b.free || mapping_insert(b.size) != (fl, sl) || b.size < size {
            return Err(AllocError::CorruptFreeList { offset: head });
        }
        Ok(Some(b))
    }

    /// Marks free block `b` used with exactly `need` bytes (splitting off
    /// the tail as a new free block when it is large enough).
    fn take(
        &mut self,
        arena: &Arena<'_>,
        b: Block,
        need: u64,
        aux: u64,
    ) -> Result<Block, AllocError> {
        let next = arena.next_of(&b)?;
        self.remove_free(arena, &b)?;
        let mut size = b.size;
        if b.size - need >= MIN_BLOCK {
            let rest = Block {
                off: b.off + need,
                prev: b.off,
                size: b.size - need,
                free: true,
                aux: 0,
            };
            arena.write(rest.off, rest.prev, rest.size, true, 0);
            if let Some(n) = next {
                arena.set_prev(&n, rest.off);
            }
            self.insert_free(arena, &rest)?;
            size = need;
        } else {
            self.free_blocks = self.free_blocks.wrapping_sub(1);
        }
        // Commit: the remainder's header is complete before `b` shrinks
        // onto it (see "Crash consistency").
        commit_point();
        arena.write(b.off, b.prev, size, false, aux);
        self.free_bytes = self.free_bytes.wrapping_sub(size);
        self.used_bytes = self.used_bytes.wrapping_add(size);
        self.allocations = self.allocations.wrapping_add(1);
        Ok(Block {
            size,
            free: false,
            aux,
            ..b
        })
    }

    /// Allocates `size` bytes aligned to `align` (a power of two up to
    /// [`MAX_ALIGN`]; alignment is of the *address* `region.base() +
    /// offset`, so in a page-aligned mapping it is the same in every
    /// process). Returns the offset of the payload from the region base.
    ///
    /// A zero `size` is rounded up to 16 bytes. O(1).
    pub fn allocate(
        &mut self,
        region: &Region,
        size: usize,
        align: usize,
    ) -> Result<Offset<u8>, AllocError> {
        if !align.is_power_of_two() || align > MAX_ALIGN {
            return Err(AllocError::UnsupportedAlignment { align });
        }
        let arena = self.arena(region)?;
        if size as u64 >= 1 << MAX_SIZE_LOG {
            return Err(AllocError::TooLarge { size });
        }
        let need = (size.max(1).next_multiple_of(GRANULE) + HEADER_SIZE) as u64;
        let need = need.max(MIN_BLOCK);
        if align <= GRANULE {
            let Some(b) = self.find_free(&arena, need)? else {
                return Err(AllocError::OutOfMemory { size, align });
            };
            let b = self.take(&arena, b, need, size as u64)?;
            return Ok(Offset::new(b.off + HEADER_SIZE as u64));
        }
        // Over-aligned: search for room for the payload plus a leading gap
        // that is either 0 or a whole free block.
        let search = need + align as u64 + MIN_BLOCK;
        let Some(b) = self.find_free(&arena, search)? else {
            return Err(AllocError::OutOfMemory { size, align });
        };
        let base = region.base().as_ptr() as usize as u64;
        let payload_addr = |off: u64| base.wrapping_add(off + HEADER_SIZE as u64);
        let mut gap = payload_addr(b.off).next_multiple_of(align as u64) - payload_addr(b.off);
        while gap != 0 && gap < MIN_BLOCK {
            gap += align as u64; // at most twice: align >= 32
        }
        if gap == 0 {
            let b = self.take(&arena, b, need, size as u64)?;
            return Ok(Offset::new(b.off + HEADER_SIZE as u64));
        }
        // Split [b.off, b.off+gap) off as its own free block.
        let next = arena.next_of(&b)?;
        self.remove_free(&arena, &b)?;
        let lead = Block { size: gap, ..b };
        let main = Block {
            off: b.off + gap,
            prev: b.off,
            size: b.size - gap,
            free: true,
            aux: 0,
        };
        // The main block's header first, inside `b`'s payload; then the
        // commit: `b` shrinks to the gap (see "Crash consistency").
        arena.write(main.off, main.prev, main.size, true, 0);
        if let Some(n) = next {
            arena.set_prev(&n, main.off);
        }
        commit_point();
        arena.write(lead.off, lead.prev, lead.size, true, 0);
        self.insert_free(&arena, &lead)?;
        self.insert_free(&arena, &main)?;
        self.free_blocks = self.free_blocks.wrapping_add(1);
        let b = self.take(&arena, main, need, size as u64)?;
        Ok(Offset::new(b.off + HEADER_SIZE as u64))
    }

    /// Validates that `offset` is a live allocation; returns its block and
    /// its validated physical neighbours.
    fn live_block(
        &self,
        arena: &Arena<'_>,
        offset: Offset<u8>,
    ) -> Result<Neighbourhood, AllocError> {
        let raw = offset.raw();
        let not_block = AllocError::NotABlock { offset: raw };
        let hdr = raw.checked_sub(HEADER_SIZE as u64).ok_or(not_block)?;
        if offset.is_null() || !arena.in_heap(hdr, MIN_BLOCK) {
            return Err(not_block);
        }
        let b = arena.block(hdr).map_err(|_| not_block)?;
        if b.free {
            return Err(AllocError::DoubleFree { offset: raw });
        }
        // Neighbours must agree: a forged header in the middle of a payload
        // is not linked from its physical predecessor.
        let prev = arena.prev_of(&b)?;
        let next = arena.next_of(&b)?;
        Ok((b, prev, next))
    }

    /// Bytes usable at `offset` (at least what was asked for).
    pub fn usable_size(&self, region: &Region, offset: Offset<u8>) -> Result<usize, AllocError> {
        let arena = self.arena(region)?;
        let (b, _, _) = self.live_block(&arena, offset)?;
        Ok((b.size - HEADER_SIZE as u64) as usize)
    }

    /// Frees the allocation at `offset` and merges it with free
    /// neighbours. O(1). An offset that is not a live allocation of this
    /// heap is [`AllocError::NotABlock`] or [`AllocError::DoubleFree`].
    pub fn deallocate(&mut self, region: &Region, offset: Offset<u8>) -> Result<(), AllocError> {
        let arena = self.arena(region)?;
        let (b, prev, next) = self.live_block(&arena, offset)?;
        let after = match next {
            Some(n) if n.free => arena.next_of(&n)?,
            other => other,
        };
        // All checks done; now mutate.
        self.used_bytes = self.used_bytes.wrapping_sub(b.size);
        self.free_bytes = self.free_bytes.wrapping_add(b.size);
        self.allocations = self.allocations.wrapping_sub(1);
        let mut merged = Block {
            free: true,
            aux: 0,
            ..b
        };
        self.free_blocks = self.free_blocks.wrapping_add(1);
        if let Some(n) = next.filter(|n| n.free) {
            self.remove_free(&arena, &n)?;
            merged.size += n.size;
            self.free_blocks = self.free_blocks.wrapping_sub(1);
        }
        if let Some(p) = prev.filter(|p| p.free) {
            self.remove_free(&arena, &p)?;
            merged.off = p.off;
            merged.prev = p.prev;
            merged.size += p.size;
            self.free_blocks = self.free_blocks.wrapping_sub(1);
        }
        commit_point();
        arena.write(merged.off, merged.prev, merged.size, true, 0);
        if let Some(a) = after {
            arena.set_prev(&a, merged.off);
        }
        self.insert_free(&arena, &merged)
    }

    /// Resizes the allocation at `offset` to `new_size` bytes with the
    /// same alignment `align`, in place when possible (shrinking, or
    /// growing into a free successor), else by allocate + copy + free.
    /// Returns the (possibly new) offset; on error the old allocation is
    /// untouched.
    pub fn reallocate(
        &mut self,
        region: &Region,
        offset: Offset<u8>,
        new_size: usize,
        align: usize,
    ) -> Result<Offset<u8>, AllocError> {
        let arena = self.arena(region)?;
        let (b, _, next) = self.live_block(&arena, offset)?;
        if new_size as u64 >= 1 << MAX_SIZE_LOG {
            return Err(AllocError::TooLarge { size: new_size });
        }
        let base = region.base().as_ptr() as usize as u64;
        let aligned = base.wrapping_add(offset.raw()) % align.max(1) as u64 == 0;
        let need =
            ((new_size.max(1).next_multiple_of(GRANULE) + HEADER_SIZE) as u64).max(MIN_BLOCK);
        if aligned && align.is_power_of_two() {
            if need <= b.size {
                arena.write(b.off, b.prev, b.size, false, new_size as u64);
                return Ok(offset);
            }
            if let Some(n) = next.filter(|n| n.free && b.size + n.size >= need) {
                // Absorb the successor, then give back what is not needed.
                let after = arena.next_of(&n)?;
                self.remove_free(&arena, &n)?;
                self.free_blocks = self.free_blocks.wrapping_sub(1);
                let mut size = b.size + n.size;
                self.free_bytes = self.free_bytes.wrapping_sub(n.size);
                self.used_bytes = self.used_bytes.wrapping_add(n.size);
                if size - need >= MIN_BLOCK {
                    let rest = Block {
                        off: b.off + need,
                        prev: b.off,
                        size: size - need,
                        free: true,
                        aux: 0,
                    };
                    arena.write(rest.off, rest.prev, rest.size, true, 0);
                    if let Some(a) = after {
                        arena.set_prev(&a, rest.off);
                    }
                    self.insert_free(&arena, &rest)?;
                    self.free_blocks = self.free_blocks.wrapping_add(1);
                    self.free_bytes = self.free_bytes.wrapping_add(rest.size);
                    self.used_bytes = self.used_bytes.wrapping_sub(rest.size);
                    size = need;
                } else if let Some(a) = after {
                    arena.set_prev(&a, b.off);
                }
                commit_point();
                arena.write(b.off, b.prev, size, false, new_size as u64);
                return Ok(offset);
            }
        }
        let new = self.allocate(region, new_size, align)?;
        let keep = (b.aux as usize)
            .min(new_size)
            .min((b.size - HEADER_SIZE as u64) as usize);
        let src = region
            .resolve_slice::<u8>(offset.raw() as usize, keep)
            .map_err(|_| AllocError::CorruptHeader { offset: b.off })?;
        let dst = region
            .resolve_slice::<u8>(new.raw() as usize, keep)
            .map_err(|_| AllocError::CorruptHeader { offset: new.raw() })?;
        // SAFETY: both ranges are inside the region (checked by
        // resolve_slice). They belong to two distinct live blocks unless
        // another process corrupted the heap between the checks; `ptr::copy`
        // (memmove) is defined for overlapping ranges as well.
        unsafe { ptr::copy(src.as_ptr(), dst.as_ptr(), keep) };
        self.deallocate(region, offset)?;
        Ok(new)
    }

    /// Rebuilds the heap's bookkeeping after a process died in the middle
    /// of an operation on it (a robust lock's owner-died path): walks the
    /// chain of blocks by their sizes, merges adjacent free blocks, and
    /// rewrites every header's back link and tag, every free list, both
    /// bitmaps and the counters; then [`verify`](Self::verify)s the
    /// result and returns its statistics.
    ///
    /// Every operation changes the chain of blocks with one store of one
    /// block's size word, after any header it exposes is complete (see
    /// "Crash consistency" in the module documentation), so the chain is
    /// walkable at every instant; a death can leak the block being
    /// allocated or freed, never lose the heap. A chain that does not walk
    /// (a size out of range, not reaching the heap's end) is
    /// [`AllocError::BrokenChain`] / [`AllocError::CorruptHeader`], and
    /// then nothing is written.
    pub fn repair(&mut self, region: &Region) -> Result<HeapStats, AllocError> {
        let arena = self.arena(region)?;
        // Pass 1: check the chain without writing anything.
        let limit = (arena.end - arena.start) / MIN_BLOCK + 1;
        let raw_block = |off: u64| -> Result<(u64, bool, u64), AllocError> {
            if !arena.in_heap(off, MIN_BLOCK) {
                return Err(AllocError::CorruptHeader { offset: off });
            }
            // SAFETY: `off..off+48` is inside the heap range, which
            // `arena` checked to be inside the region; the bytes are u64.
            let h = unsafe { ptr::read(arena.raw(off)) };
            let size = h.size_flags & !FLAGS;
            let flags = h.size_flags & FLAGS;
            if flags & !FREE != 0 || size < MIN_BLOCK || !arena.in_heap(off, size) {
                return Err(AllocError::CorruptHeader { offset: off });
            }
            Ok((size, flags & FREE != 0, h.aux))
        };
        let mut off = arena.start;
        let mut steps = 0u64;
        while off != arena.end {
            steps += 1;
            if steps > limit {
                return Err(AllocError::BrokenChain);
            }
            off += raw_block(off)?.0;
        }
        // Pass 2: rewrite the headers (tags and back links were possibly
        // torn), merging neighbouring free blocks.
        let mut off = arena.start;
        let mut prev = NONE;
        let mut open_free: Option<(u64, u64, u64)> = None; // (off, prev, size)
        while off != arena.end {
            let (size, free, aux) = raw_block(off)?;
            if free {
                if let Some((f_off, f_prev, f_size)) = open_free {
                    arena.write(f_off, f_prev, f_size + size, true, 0);
                    open_free = Some((f_off, f_prev, f_size + size));
                    off += size;
                    continue;
                }
                arena.write(off, prev, size, true, 0);
                open_free = Some((off, prev, size));
            } else {
                arena.write(off, prev, size, false, aux);
                open_free = None;
            }
            prev = off;
            off += size;
        }
        // Pass 3: free lists, bitmaps and counters from scratch.
        self.used_bytes = 0;
        self.free_bytes = 0;
        self.allocations = 0;
        self.free_blocks = 0;
        self.fl_bitmap = 0;
        self.sl_bitmap = [0; FL_COUNT];
        self.heads = [[NONE; SL_COUNT]; FL_COUNT];
        let mut off = arena.start;
        while off != arena.end {
            let b = arena.block(off)?;
            if b.free {
                self.insert_free(&arena, &b)?;
                self.free_bytes += b.size;
                self.free_blocks += 1;
            } else {
                self.used_bytes += b.size;
                self.allocations += 1;
            }
            off = b.next();
        }
        self.verify(region)
    }

    /// Walks every block once, checks every invariant (headers, neighbour
    /// links, no two adjacent free blocks, each free block in its list,
    /// counters) and returns exact statistics. O(number of blocks),
    /// bounded by `heap size / 48` steps. Run it after recovering the lock
    /// from a process that died mid-operation.
    pub fn verify(&self, region: &Region) -> Result<HeapStats, AllocError> {
        let arena = self.arena(region)?;
        let mut stats = HeapStats {
            capacity: arena.end - arena.start,
            ..HeapStats::default()
        };
        let limit = (arena.end - arena.start) / MIN_BLOCK + 1;
        let mut off = arena.start;
        let mut prev: Option<Block> = None;
        let mut steps = 0u64;
        while off != arena.end {
            steps += 1;
            if steps > limit || off > arena.end {
                return Err(AllocError::BrokenChain);
            }
            let b = arena.block(off)?;
            if b.prev != prev.map_or(NONE, |p| p.off) {
                return Err(AllocError::CorruptHeader { offset: off });
            }
            if b.free {
                if prev.is_some_and(|p| p.free) {
                    return Err(AllocError::CorruptHeader { offset: off });
                }
                let (next, back) = arena.links(off);
                let (fl, sl) = mapping_insert(b.size);
                if fl >= FL_COUNT
                    || self.sl_bitmap[fl] & (1 << sl) == 0
                    || (back == NONE && self.head(fl, sl) != off)
                    || (back != NONE && arena.block(back).is_err())
                    || (next != NONE && arena.block(next).is_err())
                {
                    return Err(AllocError::CorruptFreeList { offset: off });
                }
                stats.free_bytes += b.size;
                stats.free_blocks += 1;
                stats.largest_free = stats.largest_free.max(b.size - HEADER_SIZE as u64);
            } else {
                stats.used_bytes += b.size;
                stats.allocations += 1;
            }
            off = b.next();
            prev = Some(b);
        }
        if stats.used_bytes != self.used_bytes
            || stats.free_bytes != self.free_bytes
            || stats.allocations != self.allocations
            || stats.free_blocks != self.free_blocks
        {
            return Err(AllocError::BrokenChain);
        }
        Ok(stats)
    }

    /// Usage statistics (a bounded walk; see [`HeapState::verify`]).
    pub fn stats(&self, region: &Region) -> Result<HeapStats, AllocError> {
        self.verify(region)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use core::ptr::NonNull;
    use std::alloc::Layout;

    /// A zeroed, 4096-aligned heap buffer used as a region.
    pub(crate) struct TestRegion {
        ptr: NonNull<u8>,
        layout: Layout,
    }

    impl TestRegion {
        pub(crate) fn new(len: usize) -> TestRegion {
            let layout = Layout::from_size_align(len, 4096).unwrap();
            // SAFETY: non-zero size.
            let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
            TestRegion {
                ptr: NonNull::new(ptr).unwrap(),
                layout,
            }
        }
        pub(crate) fn region(&self) -> Region {
            // SAFETY: the buffer lives as long as `self`, and tests drop
            // regions before the buffer.
            unsafe { Region::new(self.ptr, self.layout.size()) }
        }
    }

    impl Drop for TestRegion {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
        }
    }

    /// A region with a `HeapState` at offset 0 and the heap after it.
    pub(crate) fn heap_in(buf: &mut TestRegion) -> (Region, &mut HeapState) {
        let region = buf.region();
        let state = region.resolve::<HeapState>(0).unwrap().as_ptr();
        // SAFETY: the state's bytes are in the buffer, zeroed (valid for
        // HeapState), and only reached through this reference.
        let state = unsafe { &mut *state };
        let start = size_of::<HeapState>();
        state.init(&region, start, region.len() - start).unwrap();
        (region, state)
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// What a process killed inside an operation can leave behind: torn
    /// bookkeeping (lists, bitmaps, counters, a tag, a back link) and two
    /// neighbouring free blocks (the over-aligned split between its two
    /// steps). `repair` rebuilds it all from the chain of blocks.
    #[test]
    fn repair_rebuilds_bookkeeping_from_the_chain() {
        let mut buf = TestRegion::new(1 << 16);
        let (region, state) = heap_in(&mut buf);
        let a = state.allocate(&region, 100, 16).unwrap();
        let b = state.allocate(&region, 300, 16).unwrap();
        let _c = state.allocate(&region, 50, 16).unwrap();
        state.deallocate(&region, b).unwrap();
        let before = state.verify(&region).unwrap();
        // Tear the bookkeeping.
        state.heads = [[0x1230; SL_COUNT]; FL_COUNT];
        state.fl_bitmap = !0;
        state.sl_bitmap = [!0; FL_COUNT];
        state.used_bytes = 7;
        state.free_blocks = 0;
        let arena = state.arena(&region).unwrap();
        let hdr = a.raw() - HEADER_SIZE as u64;
        // SAFETY: `hdr` is the header of live block `a`, inside the heap.
        unsafe { (*arena.raw(hdr)).tag ^= 1 };
        // Split the free block `b` into two neighbouring free blocks.
        let fb = arena.block(b.raw() - HEADER_SIZE as u64).unwrap();
        arena.write(fb.off + 64, fb.off, fb.size - 64, true, 0);
        arena.write(fb.off, fb.prev, 64, true, 0);
        // A torn back link of the block after it.
        let after = arena.block(fb.next()).unwrap();
        arena.write(after.off, 0x40, after.size, after.free, after.aux);
        assert!(state.verify(&region).is_err());
        assert_eq!(state.repair(&region).unwrap(), before);
        // Business as usual afterwards.
        let x = state.allocate(&region, 200, 16).unwrap();
        state.deallocate(&region, x).unwrap();
        state.deallocate(&region, a).unwrap();
        state.verify(&region).unwrap();
        // A chain that does not walk is refused, and nothing is written.
        let first = state.heap_start;
        let h = arena.raw(first);
        // SAFETY: the first block's header, inside the heap.
        unsafe { (*h).size_flags = 8 };
        assert!(state.repair(&region).is_err());
    }

    #[test]
    fn mapping_is_monotonic_and_search_rounds_up() {
        let mut last = (0, 0);
        let step = if cfg!(miri) { 16 * 97 } else { 16 };
        for size in (MIN_BLOCK..1 << 20).step_by(step) {
            let m = mapping_insert(size);
            assert!(m >= last, "{size}");
            last = m;
            let s = mapping_search(size);
            assert!(s >= m);
        }
    }

    #[test]
    fn layout_is_as_documented() {
        assert_eq!(FL_COUNT, 40);
        assert_eq!(size_of::<HeapState>(), 5512);
        assert_eq!(core::mem::offset_of!(HeapState, heads), 392);
        assert_eq!(size_of::<RawHeader>(), HEADER_SIZE);
    }

    #[test]
    fn fresh_heap_is_one_free_block() {
        let mut buf = TestRegion::new(64 * 1024);
        let (region, heap) = heap_in(&mut buf);
        let s = heap.stats(&region).unwrap();
        assert_eq!(s.free_blocks, 1);
        assert_eq!(s.allocations, 0);
        assert_eq!(s.free_bytes, s.capacity);
    }

    #[test]
    fn random_alloc_free_against_model() {
        let mut buf = TestRegion::new(256 * 1024);
        let (region, heap) = heap_in(&mut buf);
        let mut rng = Rng(0x1234_5678);
        let steps = if cfg!(miri) { 300 } else { 20_000 };
        // model: (offset, size, fill byte)
        let mut live: Vec<(u64, usize, u8)> = Vec::new();
        for step in 0..steps {
            let r = rng.next();
            if live.is_empty() || r % 3 != 0 {
                let size = match r % 7 {
                    0 => (r >> 8) as usize % 4000 + 1,
                    1 => 0,
                    _ => (r >> 8) as usize % 200 + 1,
                };
                let align = 1usize << ((r >> 32) % 13);
                match heap.allocate(&region, size, align) {
                    Ok(off) => {
                        let addr = region.base().as_ptr() as usize + off.raw() as usize;
                        assert_eq!(addr % align, 0);
                        assert!(heap.usable_size(&region, off).unwrap() >= size);
                        let fill = step as u8;
                        let p = region
                            .resolve_slice::<u8>(off.raw() as usize, size)
                            .unwrap();
                        // SAFETY: a fresh allocation of `size` bytes.
                        unsafe { ptr::write_bytes(p.as_ptr(), fill, size) };
                        for &(o, s, _) in &live {
                            let (a, b) = (off.raw(), off.raw() + size.max(1) as u64);
                            assert!(b <= o || o + s.max(1) as u64 <= a, "overlap");
                        }
                        live.push((off.raw(), size, fill));
                    }
                    Err(AllocError::OutOfMemory { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            } else {
                let i = (r >> 16) as usize % live.len();
                let (o, s, fill) = live.swap_remove(i);
                let p = region.resolve_slice::<u8>(o as usize, s).unwrap();
                // SAFETY: live allocation of `s` bytes.
                let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), s) };
                assert!(bytes.iter().all(|&b| b == fill), "payload clobbered");
                heap.deallocate(&region, Offset::new(o)).unwrap();
            }
            if step % 50 == 0 {
                let st = heap.verify(&region).unwrap();
                assert_eq!(st.allocations, live.len() as u64);
            }
        }
        for (o, _, _) in live.drain(..) {
            heap.deallocate(&region, Offset::new(o)).unwrap();
        }
        let st = heap.verify(&region).unwrap();
        assert_eq!(st.free_blocks, 1, "fully coalesced");
        assert_eq!(st.free_bytes, st.capacity);
        assert_eq!(st.used_bytes, 0);
    }

    #[test]
    fn reallocate_grows_in_place_and_moves() {
        let mut buf = TestRegion::new(64 * 1024);
        let (region, heap) = heap_in(&mut buf);
        let a = heap.allocate(&region, 10, 8).unwrap();
        let p = region.resolve_slice::<u8>(a.raw() as usize, 10).unwrap();
        // SAFETY: fresh allocation of 10 bytes.
        unsafe { ptr::copy_nonoverlapping(b"0123456789".as_ptr(), p.as_ptr(), 10) };
        let a2 = heap.reallocate(&region, a, 1000, 8).unwrap();
        assert_eq!(a, a2, "grows into the free successor");
        let _blocker = heap.allocate(&region, 16, 8).unwrap();
        let a3 = heap.reallocate(&region, a2, 5000, 8).unwrap();
        assert_ne!(a3, a2);
        let p = region.resolve_slice::<u8>(a3.raw() as usize, 10).unwrap();
        assert_eq!(
            // SAFETY: live allocation of >= 10 bytes.
            unsafe { core::slice::from_raw_parts(p.as_ptr(), 10) },
            b"0123456789"
        );
        heap.verify(&region).unwrap();
    }

    #[test]
    fn large_alignment() {
        let mut buf = TestRegion::new(128 * 1024);
        let (region, heap) = heap_in(&mut buf);
        let mut offs = Vec::new();
        for align in [32, 64, 256, 4096, 4096, 16384] {
            let o = heap.allocate(&region, 100, align).unwrap();
            assert_eq!(
                (region.base().as_ptr() as usize + o.raw() as usize) % align,
                0
            );
            offs.push(o);
        }
        assert!(matches!(
            heap.allocate(&region, 1, 3),
            Err(AllocError::UnsupportedAlignment { align: 3 })
        ));
        for o in offs {
            heap.deallocate(&region, o).unwrap();
        }
        assert_eq!(heap.verify(&region).unwrap().free_blocks, 1);
    }

    #[test]
    fn out_of_memory_is_an_error() {
        let mut buf = TestRegion::new(16 * 1024);
        let (region, heap) = heap_in(&mut buf);
        assert!(matches!(
            heap.allocate(&region, 1 << 20, 8),
            Err(AllocError::OutOfMemory { .. })
        ));
        assert!(matches!(
            heap.allocate(&region, usize::MAX, 8),
            Err(AllocError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_frees_are_errors() {
        let mut buf = TestRegion::new(64 * 1024);
        let (region, heap) = heap_in(&mut buf);
        let a = heap.allocate(&region, 64, 8).unwrap();
        let b = heap.allocate(&region, 64, 8).unwrap();
        assert!(matches!(
            heap.deallocate(&region, Offset::new(a.raw() + 16)),
            Err(AllocError::NotABlock { .. })
        ));
        assert!(matches!(
            heap.deallocate(&region, Offset::new(3)),
            Err(AllocError::NotABlock { .. })
        ));
        assert!(matches!(
            heap.deallocate(&region, Offset::NULL),
            Err(AllocError::NotABlock { .. })
        ));
        assert!(matches!(
            heap.deallocate(&region, Offset::new(u64::MAX - 1)),
            Err(AllocError::NotABlock { .. })
        ));
        heap.deallocate(&region, a).unwrap();
        assert_eq!(
            heap.deallocate(&region, a),
            Err(AllocError::DoubleFree { offset: a.raw() })
        );
        heap.deallocate(&region, b).unwrap();
        assert_eq!(heap.verify(&region).unwrap().free_blocks, 1);
    }

    fn write_u64(region: &Region, off: u64, v: u64) {
        let p = region.resolve::<u64>(off as usize).unwrap();
        // SAFETY: inside the buffer, aligned, no reference to it is live.
        unsafe { p.as_ptr().write(v) }
    }

    #[test]
    fn corrupted_headers_are_errors() {
        let mut buf = TestRegion::new(64 * 1024);
        let (region, heap) = heap_in(&mut buf);
        let a = heap.allocate(&region, 64, 8).unwrap();
        let b = heap.allocate(&region, 64, 8).unwrap();
        let hdr_b = b.raw() - HEADER_SIZE as u64;
        // Garbage size in b's header: freeing b is refused, freeing a sees
        // a corrupted neighbour; verify reports it; nothing panics.
        write_u64(&region, hdr_b + 8, 0xdead_beef_dead_bee0);
        assert!(matches!(
            heap.deallocate(&region, b),
            Err(AllocError::NotABlock { .. })
        ));
        assert!(matches!(
            heap.deallocate(&region, a),
            Err(AllocError::CorruptHeader { .. })
        ));
        assert!(heap.verify(&region).is_err());
        // Garbage in the state's bounds.
        heap.heap_end = u64::MAX - 7;
        assert!(matches!(
            heap.allocate(&region, 8, 8),
            Err(AllocError::BadHeapBounds { .. })
        ));
        heap.magic = 0;
        assert_eq!(
            heap.allocate(&region, 8, 8),
            Err(AllocError::NotInitialized)
        );
    }

    #[test]
    fn corrupted_free_list_is_an_error() {
        let mut buf = TestRegion::new(64 * 1024);
        let (region, heap) = heap_in(&mut buf);
        let a = heap.allocate(&region, 64, 8).unwrap();
        let _b = heap.allocate(&region, 64, 8).unwrap();
        heap.deallocate(&region, a).unwrap();
        // Make a's free-list "next" point at itself (a cycle).
        let hdr_a = a.raw() - HEADER_SIZE as u64;
        write_u64(&region, hdr_a + 32, hdr_a);
        let r = heap.allocate(&region, 64, 8);
        assert!(
            matches!(r, Err(AllocError::CorruptFreeList { .. })),
            "{r:?}"
        );
        // Garbage list head.
        let (fl, sl) = mapping_insert(MIN_BLOCK + 64);
        heap.heads[fl][sl] = 12345;
        assert!(heap.allocate(&region, 64, 8).is_err());
    }

    /// Random garbage written into block headers, payloads and the state:
    /// every later operation returns Ok or an error, never panics or hangs.
    #[test]
    fn random_corruption_never_panics() {
        let seeds: u64 = if cfg!(miri) { 8 } else { 200 };
        for seed in 1..=seeds {
            let mut buf = TestRegion::new(32 * 1024);
            let (region, heap) = heap_in(&mut buf);
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut live = Vec::new();
            for _ in 0..40 {
                let r = rng.next();
                if let Ok(o) = heap.allocate(&region, (r % 300) as usize, 1 << ((r >> 60) % 7)) {
                    live.push(o);
                }
                if r % 3 == 0 && !live.is_empty() {
                    let o = live.swap_remove((r >> 20) as usize % live.len());
                    heap.deallocate(&region, o).unwrap();
                }
            }
            let (start, end) = heap.bounds();
            for _ in 0..(1 + seed % 4) {
                let r = rng.next();
                let value = match r % 5 {
                    0 => rng.next(),
                    1 => rng.next() % (end + 64),
                    2 => u64::MAX,
                    3 => 0,
                    _ => (rng.next() % 4096) & !15,
                };
                if r % 11 == 0 {
                    // Somewhere in the state's counters, bitmaps or heads.
                    let words = size_of::<HeapState>() / 8;
                    let i = 2 + (rng.next() as usize % (words - 2));
                    // SAFETY: `i` indexes a u64 of the state, which we own
                    // exclusively through `heap`.
                    unsafe { (heap as *mut HeapState).cast::<u64>().add(i).write(value) };
                } else {
                    let off = start + (rng.next() % ((end - start) / 8)) * 8;
                    write_u64(&region, off, value);
                }
            }
            for _ in 0..60 {
                let r = rng.next();
                match r % 4 {
                    0 => {
                        if let Ok(o) =
                            heap.allocate(&region, (r >> 8) as usize % 2000, 1 << ((r >> 60) % 13))
                        {
                            live.push(o);
                        }
                    }
                    1 if !live.is_empty() => {
                        let o = live.swap_remove((r >> 20) as usize % live.len());
                        let _ = heap.deallocate(&region, o);
                    }
                    2 if !live.is_empty() => {
                        let i = (r >> 20) as usize % live.len();
                        if let Ok(o) =
                            heap.reallocate(&region, live[i], (r >> 8) as usize % 3000, 16)
                        {
                            live[i] = o;
                        }
                    }
                    _ => {
                        let _ = heap.verify(&region);
                        let _ = heap.deallocate(&region, Offset::new(rng.next() % end));
                    }
                }
            }
        }
    }

    #[test]
    fn zeroed_state_is_not_initialized() {
        let buf = TestRegion::new(16 * 1024);
        let region = buf.region();
        // SAFETY: zeroed bytes are a valid HeapState; exclusive.
        let state = unsafe { &mut *region.resolve::<HeapState>(0).unwrap().as_ptr() };
        assert_eq!(
            state.allocate(&region, 8, 8),
            Err(AllocError::NotInitialized)
        );
        assert_eq!(
            state.init(&region, 0, 8192),
            Err(HeapInitError::OverlapsState)
        );
        assert!(matches!(
            state.init(&region, 8192, 1 << 20),
            Err(HeapInitError::OutOfRegion(_))
        ));
    }
}
