//! A managed segment in the spirit of Boost.Interprocess'
//! `managed_shared_memory`: a segment with a heap and a directory of named
//! objects, shared by any number of processes.
//!
//! ```no_run
//! use conduit::shm::{ManagedSegment, ShmList};
//! let managed = ManagedSegment::open_or_create("inventory", 1 << 20)?;
//! let mut m = managed.lock()?;
//! let list = m.find_or_construct("parts", ShmList::<u64>::new)?;
//! let (parts, mut ctx) = m.get(list)?;
//! parts.push_back(&mut ctx, 42)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout of the data area
//!
//! | offset | what |
//! |---|---|
//! | 0 | `magic` (`"MANAGED\0"`, written last by the creator) and padding to 64 bytes |
//! | 64 | [`RobustMutex`]`<ManagedState>`: the lock word, owner fields, then the heap state and the directory (an [`ShmHashMap`] from a 64-byte name to an entry) |
//! | heap start (64-aligned) .. end | the heap's blocks: objects, container storage, the directory's slots |
//!
//! Everything is reached through the one robust lock: [`ManagedSegment::lock`]
//! returns a [`ManagedGuard`], and every object and container is read and
//! changed only while it is held. If a process dies holding it, the next
//! locker rebuilds the heap's bookkeeping from its chain of blocks (a
//! death inside the allocator leaks at most the block it was allocating
//! or freeing) and verifies the heap and the directory: if they are intact it
//! carries on ([`ManagedGuard::recovered`] tells it so); if not, it gets
//! [`ManagedError::Corrupted`] and the segment is marked not recoverable.
//!
//! # Directory and checks
//!
//! A [`DirectoryEntry`] is four `u64`: `offset`, `size`, `align`,
//! `fingerprint` of the named object's type. The segment header's
//! fingerprint is that of the root structure, so a segment of another
//! format version is refused on open (the segment layer's
//! `FingerprintMismatch`), and one without the managed magic by
//! [`ManagedSegment::from_segment`] ([`ManagedError::NotManaged`]).
//! `find::<T>` checks the entry's fingerprint and size against `T::LAYOUT`
//! ([`ManagedError::TypeMismatch`]); `get(offset)` accepts only a live heap
//! block at least `size_of::<T>()` long ([`ManagedError::NotAnObject`]).
//! Recovery after an owner died: `HeapState::repair` rebuilds the heap's
//! bookkeeping from its chain of blocks, `verify` walks every block, and
//! every directory entry must name a live block; only then is the mutex
//! marked consistent.
//!
//! **Nothing is rolled back.** The new holder sees every container as the
//! dead holder left it (each one consistent, see the crash-consistency
//! rules in [`containers`](super::containers) and [`alloc`](super::alloc)),
//! so an application whose invariant spans several containers must check
//! [`ManagedGuard::recovered`] and repair its own data.

use std::sync::atomic::{AtomicU64, Ordering};

use super::alloc::{AllocError, HeapState};
use super::containers::{ContainerError, Context, ShmHashMap};
use super::relptr::{Offset, OffsetError, Region};
use super::segment::{CreateError, OpenError, OpenOrCreateError, Origin, Segment, SegmentBuilder};
use super::shm_safe::ShmSafe;
use std::time::Duration;

use crate::sync::{LockError, LockTimeoutError, RobustMutex, RobustMutexGuard};

const MANAGED_MAGIC: u64 = u64::from_le_bytes(*b"MANAGED\0");
/// Longest name of an object in a managed segment, in bytes.
pub const MAX_OBJECT_NAME: usize = 63;

type Key = [u8; 64];

/// One directory entry: where a named object lives and what type it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, conduit_derive::ShmSafe)]
#[repr(C)]
pub struct DirectoryEntry {
    offset: u64,
    size: u64,
    align: u64,
    fingerprint: u64,
}

/// Heap and directory, protected by the segment's robust lock.
#[derive(conduit_derive::ShmSafe)]
#[repr(C)]
pub struct ManagedState {
    heap: HeapState,
    directory: ShmHashMap<Key, DirectoryEntry>,
}

#[derive(conduit_derive::ShmSafe)]
#[repr(C, align(64))]
struct Root {
    magic: AtomicU64,
    _pad: [u64; 7],
    state: RobustMutex<ManagedState>,
}

/// What can go wrong in a managed segment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagedError {
    /// Creating the segment failed.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// Opening the segment failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Opening or creating the segment failed.
    #[error(transparent)]
    OpenOrCreate(#[from] OpenOrCreateError),
    /// The segment is not a managed segment (or is smaller than one).
    #[error("the segment is not a managed segment: {reason}")]
    NotManaged {
        /// What is missing.
        reason: String,
    },
    /// The object name is empty or longer than [`MAX_OBJECT_NAME`] bytes.
    #[error("invalid object name {name:?}: 1 to {MAX_OBJECT_NAME} bytes required")]
    InvalidName {
        /// The offending name.
        name: String,
    },
    /// The object exists with another type.
    #[error(
        "object {name:?} has type fingerprint {found:#018x} ({found_size} bytes), not {expected:#018x} ({expected_size} bytes)"
    )]
    TypeMismatch {
        /// The object name.
        name: String,
        /// Fingerprint of the requested type.
        expected: u64,
        /// Size of the requested type.
        expected_size: u64,
        /// Fingerprint recorded for the object.
        found: u64,
        /// Size recorded for the object.
        found_size: u64,
    },
    /// An offset handed to [`ManagedGuard::get`] is not an object of this
    /// heap.
    #[error("offset {offset:#x} is not an object of this managed segment")]
    NotAnObject {
        /// The offset.
        offset: u64,
    },
    /// The heap has no room for the object.
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// A directory operation failed (corrupted directory or no memory).
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// An offset read from the segment is out of bounds.
    #[error(transparent)]
    Offset(#[from] OffsetError),
    /// A process died holding the lock and left the heap or directory
    /// inconsistent; the segment is now marked not recoverable.
    #[error("a process died while changing the managed segment and left it corrupted: {reason}")]
    Corrupted {
        /// What the verification found.
        reason: String,
    },
    /// An earlier holder died and nobody could recover the segment.
    #[error("the managed segment is not recoverable: a holder died and the data was not repaired")]
    NotRecoverable,
    /// The calling thread already holds the lock.
    #[error("the calling thread already holds this managed segment's lock")]
    WouldDeadlock,
    /// [`ManagedSegment::lock_timeout`]: a live thread (or a lock word that
    /// garbage made name a thread) held the lock for the whole timeout.
    #[error("the managed segment's lock stayed held for the whole timeout")]
    Timeout,
}

/// A [`Segment`] holding a heap and a directory of named objects.
#[derive(Debug)]
pub struct ManagedSegment {
    segment: Segment,
}

fn root_fingerprint() -> u64 {
    <Root as ShmSafe>::LAYOUT.fingerprint
}

fn heap_start() -> usize {
    size_of::<Root>().next_multiple_of(64)
}

fn initialize(region: &Region) -> Result<(), String> {
    let root = region.resolve::<Root>(0).map_err(|e| e.to_string())?;
    // SAFETY: the data area of a segment that is being created is only
    // visible to its creator (openers wait for READY), it is zeroed, and
    // zeroed memory is a valid Root (atomics, an unlocked RobustMutex,
    // an empty heap state and map).
    let root = unsafe { &mut *root.as_ptr() };
    let state = root.state.get_mut();
    // Zeroed memory is not an empty map (its null offset is u64::MAX).
    state.directory = ShmHashMap::new();
    state
        .heap
        .init(region, heap_start(), region.len() - heap_start())
        .map_err(|e| e.to_string())?;
    root.magic.store(MANAGED_MAGIC, Ordering::Release);
    Ok(())
}

impl ManagedSegment {
    /// Creates a managed segment with `size` bytes of data area in the
    /// default domain.
    pub fn create(name: &str, size: usize) -> Result<ManagedSegment, ManagedError> {
        Self::create_with(Segment::builder(name).size(size))
    }

    /// Opens a managed segment in the default domain.
    pub fn open(name: &str) -> Result<ManagedSegment, ManagedError> {
        Self::open_with(Segment::builder(name))
    }

    /// Opens, or creates with `size` bytes, a managed segment in the
    /// default domain.
    pub fn open_or_create(name: &str, size: usize) -> Result<ManagedSegment, ManagedError> {
        Self::open_or_create_with(Segment::builder(name).size(size)).map(|(m, _)| m)
    }

    /// Creates with a configured builder (domain, mode, size…). The
    /// builder's fingerprint and initialiser are replaced.
    pub fn create_with(builder: SegmentBuilder<'_>) -> Result<ManagedSegment, ManagedError> {
        let segment = builder
            .fingerprint(root_fingerprint())
            .init(initialize)
            .create()?;
        Self::from_segment(segment)
    }

    /// Opens with a configured builder (domain, mode, timeout…).
    pub fn open_with(builder: SegmentBuilder<'_>) -> Result<ManagedSegment, ManagedError> {
        Self::from_segment(builder.fingerprint(root_fingerprint()).open()?)
    }

    /// Opens or creates with a configured builder.
    pub fn open_or_create_with(
        builder: SegmentBuilder<'_>,
    ) -> Result<(ManagedSegment, Origin), ManagedError> {
        let (segment, origin) = builder
            .fingerprint(root_fingerprint())
            .init(initialize)
            .open_or_create()?;
        Ok((Self::from_segment(segment)?, origin))
    }

    /// Wraps an already opened segment, checking that it is managed.
    pub fn from_segment(segment: Segment) -> Result<ManagedSegment, ManagedError> {
        if !segment.is_writable() {
            return Err(ManagedError::NotManaged {
                reason: "a managed segment must be mapped read-write".into(),
            });
        }
        let data = segment.data();
        if data.len() < heap_start() + 64 {
            return Err(ManagedError::NotManaged {
                reason: format!("data area of {} bytes is too small", data.len()),
            });
        }
        let managed = ManagedSegment { segment };
        if managed.root().magic.load(Ordering::Acquire) != MANAGED_MAGIC {
            return Err(ManagedError::NotManaged {
                reason: "no managed-segment magic".into(),
            });
        }
        Ok(managed)
    }

    fn root(&self) -> &Root {
        let p = self
            .segment
            .data()
            .resolve::<Root>(0)
            .expect("size checked in from_segment");
        // SAFETY: in bounds and aligned (resolve); Root is all atomics and
        // a RobustMutex, which are designed for concurrent access from
        // several processes; the reference lives no longer than `self`,
        // which keeps the mapping.
        unsafe { p.as_ref() }
    }

    /// The underlying segment.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Takes the segment's lock. If the previous holder died, verifies the
    /// heap and the directory first (see the module documentation).
    ///
    /// Waits as long as a live thread holds the lock, also one in another
    /// PID namespace, and forever if another process wrote a thread id
    /// into the lock word (see [`RobustMutex`]'s residual risks);
    /// [`lock_timeout`](Self::lock_timeout) bounds the wait.
    pub fn lock(&self) -> Result<ManagedGuard<'_>, ManagedError> {
        match self.root().state.lock() {
            Ok(guard) => Ok(self.guard(guard, false)),
            Err(LockError::OwnerDied(guard)) => self.recovered(guard),
            Err(LockError::NotRecoverable) => Err(ManagedError::NotRecoverable),
            Err(LockError::WouldDeadlock) => Err(ManagedError::WouldDeadlock),
        }
    }

    /// [`lock`](Self::lock), giving up with [`ManagedError::Timeout`] once
    /// the lock has stayed held for `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ManagedGuard<'_>, ManagedError> {
        match self.root().state.lock_timeout(timeout) {
            Ok(guard) => Ok(self.guard(guard, false)),
            Err(LockTimeoutError::OwnerDied(guard)) => self.recovered(guard),
            Err(LockTimeoutError::NotRecoverable) => Err(ManagedError::NotRecoverable),
            Err(LockTimeoutError::WouldDeadlock) => Err(ManagedError::WouldDeadlock),
            Err(LockTimeoutError::Timeout) => Err(ManagedError::Timeout),
        }
    }

    fn guard<'a>(
        &'a self,
        guard: RobustMutexGuard<'a, ManagedState>,
        recovered: bool,
    ) -> ManagedGuard<'a> {
        ManagedGuard {
            guard,
            region: self.segment.data(),
            recovered,
        }
    }

    /// A lock whose previous holder died: repair and verify, then hand out.
    fn recovered<'a>(
        &'a self,
        mut guard: RobustMutexGuard<'a, ManagedState>,
    ) -> Result<ManagedGuard<'a>, ManagedError> {
        recover(&mut guard, &self.segment.data())?;
        guard.mark_consistent();
        Ok(self.guard(guard, true))
    }
}

/// After a holder died: rebuilds the heap's bookkeeping from its chain of
/// blocks (the holder may have died inside the allocator, see
/// [`HeapState::repair`](super::alloc::HeapState::repair)), then checks
/// the directory.
fn recover(state: &mut ManagedState, region: &Region) -> Result<(), ManagedError> {
    let corrupted = |reason: String| ManagedError::Corrupted { reason };
    state
        .heap
        .repair(region)
        .map_err(|e| corrupted(e.to_string()))?;
    let view = super::containers::View::with_heap(*region, &state.heap);
    for item in state
        .directory
        .iter(view)
        .map_err(|e| corrupted(e.to_string()))?
    {
        let (_, entry) = item.map_err(|e| corrupted(e.to_string()))?;
        state
            .heap
            .usable_size(region, Offset::new(entry.offset))
            .map_err(|e| corrupted(format!("directory entry: {e}")))?;
    }
    Ok(())
}

fn key(name: &str) -> Result<Key, ManagedError> {
    if name.is_empty() || name.len() > MAX_OBJECT_NAME {
        return Err(ManagedError::InvalidName {
            name: name.to_owned(),
        });
    }
    let mut k = [0u8; 64];
    k[..name.len()].copy_from_slice(name.as_bytes());
    Ok(k)
}

/// The lock of a [`ManagedSegment`], held: gives access to its named
/// objects and to a [`Context`] for its containers. Unlocks when dropped.
pub struct ManagedGuard<'a> {
    guard: RobustMutexGuard<'a, ManagedState>,
    region: Region,
    recovered: bool,
}

impl ManagedGuard<'_> {
    /// Whether a previous holder died with the lock and this guard's
    /// creation verified and recovered the segment.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// A context for container operations on this segment's heap.
    pub fn context(&mut self) -> Context<'_> {
        Context::new(self.region, &mut self.guard.heap)
    }

    /// Heap statistics (capacity, used, free, largest free block).
    pub fn stats(&self) -> Result<super::alloc::HeapStats, ManagedError> {
        Ok(self.guard.heap.stats(&self.region)?)
    }

    /// Returns the object called `name`, constructing it with `init` if it
    /// does not exist yet. Fails with [`ManagedError::TypeMismatch`] if it
    /// exists with another type.
    pub fn find_or_construct<T: ShmSafe>(
        &mut self,
        name: &str,
        init: impl FnOnce() -> T,
    ) -> Result<Offset<T>, ManagedError> {
        if let Some(found) = self.find::<T>(name)? {
            return Ok(found);
        }
        let k = key(name)?;
        let region = self.region;
        let state = &mut *self.guard;
        let offset = state
            .heap
            .allocate(&region, size_of::<T>().max(1), align_of::<T>())?;
        let ptr =
            Offset::<T>::new(offset.raw())
                .resolve(&region)?
                .ok_or(ManagedError::NotAnObject {
                    offset: offset.raw(),
                })?;
        // SAFETY: the block was just allocated for a T (size and alignment
        // as requested), lies inside the region (resolve), and nothing
        // else refers to it yet.
        unsafe { ptr.as_ptr().write(init()) };
        let entry = DirectoryEntry {
            offset: offset.raw(),
            size: size_of::<T>() as u64,
            align: align_of::<T>() as u64,
            fingerprint: T::LAYOUT.fingerprint,
        };
        let mut ctx = Context::new(region, &mut state.heap);
        if let Err(e) = state.directory.insert(&mut ctx, k, entry) {
            let _ = state.heap.deallocate(&region, offset);
            return Err(e.into());
        }
        Ok(Offset::new(offset.raw()))
    }

    /// The object called `name`, if it exists with type `T`.
    pub fn find<T: ShmSafe>(&mut self, name: &str) -> Result<Option<Offset<T>>, ManagedError> {
        let k = key(name)?;
        let view = super::containers::View::with_heap(self.region, &self.guard.heap);
        let Some(entry) = self.guard.directory.get(view, &k)? else {
            return Ok(None);
        };
        check_type::<T>(name, entry)?;
        Ok(Some(Offset::new(entry.offset)))
    }

    /// Removes the object called `name` and frees its memory. Returns
    /// whether it existed. Storage the object owns (a container's
    /// elements) must be freed first with the container's `free`.
    pub fn destroy(&mut self, name: &str) -> Result<bool, ManagedError> {
        let k = key(name)?;
        let region = self.region;
        let state = &mut *self.guard;
        let mut ctx = Context::new(region, &mut state.heap);
        let Some(entry) = state.directory.remove(&mut ctx, &k)? else {
            return Ok(false);
        };
        state.heap.deallocate(&region, Offset::new(entry.offset))?;
        Ok(true)
    }

    /// The names of all objects, sorted.
    pub fn names(&self) -> Result<Vec<String>, ManagedError> {
        let view = super::containers::View::with_heap(self.region, &self.guard.heap);
        let mut names = Vec::new();
        for item in self.guard.directory.iter(view)? {
            let (k, _) = item?;
            let len = k.iter().position(|&b| b == 0).unwrap_or(k.len());
            names.push(String::from_utf8_lossy(&k[..len]).into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Exclusive access to the object at `object` together with a context
    /// for container operations (the object and the heap state are
    /// disjoint, so both can be borrowed at once).
    ///
    /// `object` must come from [`find`](Self::find) or
    /// [`find_or_construct`](Self::find_or_construct) with the same `T`;
    /// an offset that is not a live heap block of at least `size_of::<T>()`
    /// bytes is refused with [`ManagedError::NotAnObject`].
    pub fn get<T: ShmSafe>(
        &mut self,
        object: Offset<T>,
    ) -> Result<(&mut T, Context<'_>), ManagedError> {
        let region = self.region;
        let not = ManagedError::NotAnObject {
            offset: object.raw(),
        };
        let usable = self
            .guard
            .heap
            .usable_size(&region, Offset::new(object.raw()))
            .map_err(|_| ManagedError::NotAnObject {
                offset: object.raw(),
            })?;
        if usable < size_of::<T>() {
            return Err(not);
        }
        let ptr = object.resolve(&region)?.ok_or(not)?;
        // SAFETY: the offset is a live heap block (usable_size checked its
        // header) of at least size_of::<T>() bytes, aligned and inside the
        // region (resolve). Heap blocks never overlap the ManagedState, so
        // this &mut T is disjoint from the &mut HeapState in the context.
        // The lock is held for the guard's lifetime, which bounds both
        // borrows. T is ShmSafe, so any bytes are a valid T.
        let value = unsafe { &mut *ptr.as_ptr() };
        Ok((value, Context::new(region, &mut self.guard.heap)))
    }
}

fn check_type<T: ShmSafe>(name: &str, entry: &DirectoryEntry) -> Result<(), ManagedError> {
    if entry.fingerprint != T::LAYOUT.fingerprint || entry.size != size_of::<T>() as u64 {
        return Err(ManagedError::TypeMismatch {
            name: name.to_owned(),
            expected: T::LAYOUT.fingerprint,
            expected_size: size_of::<T>() as u64,
            found: entry.fingerprint,
            found_size: entry.size,
        });
    }
    Ok(())
}
