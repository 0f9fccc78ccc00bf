//! [`ShmString`]: a growable UTF-8 string in shared memory.

use super::{ContainerError, Context, ShmVec, View, generic_layout};
use crate::shm::shm_safe::{ShmSafe, TypeLayout};

/// A UTF-8 string whose bytes live in the heap of a region.
///
/// Layout: one [`ShmVec<u8>`] (24 bytes). The bytes are checked to be
/// UTF-8 on every read ([`ShmString::as_str`]), because another process
/// may have written anything into them.
#[repr(C)]
#[derive(Debug, Default)]
pub struct ShmString {
    bytes: ShmVec<u8>,
}

// SAFETY: repr(C) around one ShmVec<u8>, which is ShmSafe.
unsafe impl ShmSafe for ShmString {
    const LAYOUT: TypeLayout = generic_layout(
        "ShmString",
        size_of::<Self>(),
        align_of::<Self>(),
        &[<ShmVec<u8>>::LAYOUT.fingerprint],
    );
}

impl ShmString {
    /// An empty string with no storage.
    pub const fn new() -> ShmString {
        ShmString {
            bytes: ShmVec::new(),
        }
    }

    /// Recorded length in bytes (not validated).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the recorded length is 0.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends `s`.
    pub fn push_str(&mut self, ctx: &mut Context<'_>, s: &str) -> Result<(), ContainerError> {
        self.bytes.extend_from_slice(ctx, s.as_bytes())
    }

    /// The raw bytes (not checked for UTF-8).
    pub fn as_bytes(&self, view: impl Into<View>) -> Result<&[u8], ContainerError> {
        self.bytes.as_slice(view)
    }

    /// The string, after checking that its bytes are UTF-8.
    pub fn as_str(&self, view: impl Into<View>) -> Result<&str, ContainerError> {
        core::str::from_utf8(self.bytes.as_slice(view)?).map_err(ContainerError::InvalidUtf8)
    }

    /// Sets the length to 0 (keeps the storage).
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// Returns the storage to the heap; the string becomes empty.
    pub fn free(&mut self, ctx: &mut Context<'_>) -> Result<(), ContainerError> {
        self.bytes.free(ctx)
    }

    /// The underlying byte vector, for writing raw bytes (which
    /// [`ShmString::as_str`] will then check).
    pub fn as_mut_vec(&mut self) -> &mut ShmVec<u8> {
        &mut self.bytes
    }
}
