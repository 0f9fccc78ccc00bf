//! Shared memory: segments, offsets instead of pointers, and the types
//! that may live in a segment.

mod permissions;
mod relptr;
mod segment;
pub(crate) mod shm_safe;
pub(crate) mod words;

pub use permissions::Permissions;
pub use relptr::{Offset, OffsetError, Region, RelPtr};
#[allow(unused_imports)]
pub use segment::*;
pub use shm_safe::{ShmSafe, TypeLayout, fingerprint};

/// The seals of an anonymous segment ([`Segment::seals`]) or of a memfd
/// shared through a socket ([`SharedMemfd::seals`]).
///
/// [`SharedMemfd::seals`]: crate::socket::SharedMemfd::seals
pub use crate::sys::memfd::Seals;

pub mod alloc;
pub mod containers;
mod managed;
pub use alloc::{AllocError, HeapInitError, HeapState, HeapStats};
pub use containers::{
    ContainerError, Context, ShmBox, ShmHashMap, ShmList, ShmString, ShmVec, StableHasher, View,
};
pub use managed::{
    DirectoryEntry, MAX_OBJECT_NAME, ManagedError, ManagedGuard, ManagedSegment, ManagedState,
};
