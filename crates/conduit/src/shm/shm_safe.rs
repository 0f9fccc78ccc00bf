//! [`ShmSafe`]: the types that may live in shared memory.

use core::marker::PhantomData;
use core::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32,
    AtomicU64, AtomicUsize,
};

/// Description of a type's layout, compared between processes so that two
/// programs built from different versions of a type refuse to share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeLayout {
    /// The type's name as written in its definition (`Pose`, `[u8; 4]`).
    pub name: &'static str,
    /// `size_of::<T>()`.
    pub size: usize,
    /// `align_of::<T>()`.
    pub align: usize,
    /// A 64-bit hash over the name, size, alignment and, for derived types,
    /// every field's name, offset and own fingerprint.
    pub fingerprint: u64,
}

impl TypeLayout {
    /// Layout of a leaf type that has no fields of its own.
    pub const fn leaf(name: &'static str, size: usize, align: usize) -> TypeLayout {
        let mut h = fingerprint::start();
        h = fingerprint::bytes(h, name.as_bytes());
        h = fingerprint::word(h, size as u64);
        h = fingerprint::word(h, align as u64);
        TypeLayout {
            name,
            size,
            align,
            fingerprint: h,
        }
    }
}

/// Const FNV-1a hashing used to build layout fingerprints (also used by
/// `#[derive(ShmSafe)]`).
pub mod fingerprint {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// Initial hash state.
    pub const fn start() -> u64 {
        OFFSET
    }

    /// Folds `data` into the hash, followed by its length (so that
    /// `"ab","c"` and `"a","bc"` differ).
    pub const fn bytes(mut h: u64, data: &[u8]) -> u64 {
        let mut i = 0;
        while i < data.len() {
            h ^= data[i] as u64;
            h = h.wrapping_mul(PRIME);
            i += 1;
        }
        word(h, data.len() as u64)
    }

    /// Folds a 64-bit word into the hash.
    pub const fn word(mut h: u64, value: u64) -> u64 {
        let b = value.to_le_bytes();
        let mut i = 0;
        while i < 8 {
            h ^= b[i] as u64;
            h = h.wrapping_mul(PRIME);
            i += 1;
        }
        h
    }
}

/// Types that may be placed in shared memory and read by other processes.
///
/// A `ShmSafe` type
/// * contains no pointer, reference or handle that is only meaningful in
///   one address space (`&T`, `*const T`, `Box`, `Vec`, `String`, fds…);
///   data in a segment refers to other data by offset ([`RelPtr`],
///   [`Offset`]);
/// * has a layout fixed by `#[repr(C)]` or `#[repr(transparent)]`, so
///   that every program built with any compiler version agrees on it;
/// * is valid for **every** bit pattern. Another process may be buggy or
///   hostile and write anything; reading such a value must never be
///   undefined behaviour. That is why `bool`, `char`, enums and `NonZero*`
///   are *not* `ShmSafe`: use `u8`/`u32` and convert with a check;
/// * has no `Drop` glue that matters across processes (shared memory is
///   never dropped by Rust as a whole).
///
/// Implement it with `#[derive(ShmSafe)]`, which checks all of this at
/// compile time and computes [`ShmSafe::LAYOUT`].
///
/// [`RelPtr`]: crate::shm::RelPtr
/// [`Offset`]: crate::shm::Offset
///
/// # Safety
///
/// Implementors guarantee the four properties above and that `LAYOUT`
/// describes the type truthfully (`size` and `align` equal `size_of` and
/// `align_of`).
pub unsafe trait ShmSafe: Sized + 'static {
    /// Name, size, alignment and fingerprint of the type.
    const LAYOUT: TypeLayout;
}

macro_rules! leaf {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: integers, floats and atomics are plain bytes with no
        // pointers, a fixed layout, and every bit pattern is valid.
        unsafe impl ShmSafe for $t {
            const LAYOUT: TypeLayout = TypeLayout::leaf(
                stringify!($t),
                core::mem::size_of::<$t>(),
                core::mem::align_of::<$t>(),
            );
        }
    )*};
}

leaf!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, ());
leaf!(
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize
);

// SAFETY: an array of ShmSafe elements is ShmSafe: contiguous, no extra
// bytes, every bit pattern valid when every element's is.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {
    const LAYOUT: TypeLayout = {
        let mut h = fingerprint::start();
        h = fingerprint::bytes(h, b"[;]");
        h = fingerprint::word(h, T::LAYOUT.fingerprint);
        h = fingerprint::word(h, N as u64);
        TypeLayout {
            name: "array",
            size: core::mem::size_of::<[T; N]>(),
            align: core::mem::align_of::<[T; N]>(),
            fingerprint: h,
        }
    };
}

// SAFETY: PhantomData is a zero-sized type with no bytes at all.
unsafe impl<T: ShmSafe> ShmSafe for PhantomData<T> {
    const LAYOUT: TypeLayout = TypeLayout {
        name: "PhantomData",
        size: 0,
        align: 1,
        fingerprint: fingerprint::word(fingerprint::start(), T::LAYOUT.fingerprint ^ 0x5048),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_between_types() {
        assert_ne!(u32::LAYOUT.fingerprint, i32::LAYOUT.fingerprint);
        assert_ne!(u32::LAYOUT.fingerprint, f32::LAYOUT.fingerprint);
        assert_ne!(
        <[u8; 4]>::LAYOUT.fingerprint,
        <[u8; 5]>::LAYOUT.fingerprint
        );
        assert_eq!(<[u64; 3]>::LAYOUT.size, 24);
        assert_eq!(u64::LAYOUT.align, core::mem::align_of::<u64>());
    }
}
