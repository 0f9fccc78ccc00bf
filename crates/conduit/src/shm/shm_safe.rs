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
/// compile time and computes [`ShmSafe::LAYOUT`]:
///
/// ```
/// use conduit::ShmSafe;
/// use conduit::shm::RelPtr;
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Pose {
///     x: f64,
///     y: f64,
///     seq: u32,
///     next: RelPtr<Pose>, // not `&Pose` or `Box<Pose>`
/// }
///
/// assert_eq!(Pose::LAYOUT.name, "Pose");
/// assert_eq!(Pose::LAYOUT.size, 32);
/// ```
///
/// The derive refuses enums (a discriminant written by another process
/// may match no variant), unions, `packed` structs, structs without
/// `repr(C)`/`repr(transparent)`, and fields that are not `ShmSafe`.
///
/// [`RelPtr`]: crate::shm::RelPtr
/// [`Offset`]: crate::shm::Offset
///
/// # Safety
///
/// Implementors guarantee the four properties above and that `LAYOUT`
/// describes the type truthfully (`size` and `align` equal `size_of` and
/// `align_of`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be placed in shared memory: it does not implement `ShmSafe`",
    label = "not `ShmSafe`",
    note = "`ShmSafe` types are `#[repr(C)]` plain data, valid for every bit pattern, with no pointers: \
            derive it with `#[derive(ShmSafe)]`, and refer to other data with `RelPtr`/`Offset`"
)]
pub unsafe trait ShmSafe: Sized + 'static {
    /// Name, size, alignment and fingerprint of the type.
    ///
    /// The fingerprint covers everything stored by value (recursively) and
    /// one pointer hop: a [`RelPtr<T>`] or [`Offset<T>`] folds in
    /// `T::SHALLOW_FINGERPRINT`, not `T::LAYOUT`.
    ///
    /// [`RelPtr<T>`]: crate::shm::RelPtr
    /// [`Offset<T>`]: crate::shm::Offset
    const LAYOUT: TypeLayout;

    /// The fingerprint with every pointer target left out: like
    /// `LAYOUT.fingerprint`, except that pointer-like types
    /// ([`RelPtr`](crate::shm::RelPtr), [`Offset`](crate::shm::Offset),
    /// `PhantomData`) contribute only their own name.
    ///
    /// It exists to break cycles: a list node that holds a
    /// `RelPtr<Node>` would otherwise need `Node::LAYOUT` to compute
    /// `Node::LAYOUT`. The default (`LAYOUT.fingerprint`) is right for
    /// types without type parameters; a generic hand-written impl that
    /// stores `T` by value should fold in `T::SHALLOW_FINGERPRINT` instead
    /// of `T::LAYOUT.fingerprint` here, as `#[derive(ShmSafe)]` does.
    const SHALLOW_FINGERPRINT: u64 = Self::LAYOUT.fingerprint;

    /// `true` if every byte of the type belongs to a field (no padding,
    /// recursively), so a value can be read as plain initialised bytes.
    /// Integers, floats, atomics and arrays of padding-free types are;
    /// `#[derive(ShmSafe)]` computes it (fields padding-free and their
    /// sizes adding up to the struct's). The default, `false`, is always
    /// correct. Patterns that copy values word by word through atomics
    /// (the [`blackboard`](crate::blackboard)) require it.
    const PADDING_FREE: bool = false;
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
            const PADDING_FREE: bool = true;
        }
    )*};
}

leaf!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    ()
);
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
    const LAYOUT: TypeLayout = TypeLayout {
        name: "array",
        size: core::mem::size_of::<[T; N]>(),
        align: core::mem::align_of::<[T; N]>(),
        fingerprint: array_fingerprint(T::LAYOUT.fingerprint, N),
    };
    const SHALLOW_FINGERPRINT: u64 = array_fingerprint(T::SHALLOW_FINGERPRINT, N);
    const PADDING_FREE: bool = T::PADDING_FREE;
}

pub(crate) const fn array_fingerprint(element: u64, len: usize) -> u64 {
    let mut h = fingerprint::start();
    h = fingerprint::bytes(h, b"[;]");
    h = fingerprint::word(h, element);
    fingerprint::word(h, len as u64)
}

// SAFETY: PhantomData is a zero-sized type with no bytes at all.
unsafe impl<T: ShmSafe> ShmSafe for PhantomData<T> {
    const LAYOUT: TypeLayout = TypeLayout {
        name: "PhantomData",
        size: 0,
        align: 1,
        // Like a pointer: one hop (`T` may be the struct holding this).
        fingerprint: fingerprint::word(fingerprint::start(), T::SHALLOW_FINGERPRINT ^ 0x5048),
    };
    const SHALLOW_FINGERPRINT: u64 = fingerprint::bytes(fingerprint::start(), b"PhantomData");
}

/// `ShmSafe` for a `#[repr(transparent)]` wrapper of `T`; the fingerprint
/// folds in the wrapper's name so that `Wrapping<u32>` and `u32` differ.
macro_rules! transparent_wrapper {
    ($($wrapper:ident => $path:ty),* $(,)?) => {$(
        // SAFETY: the standard library guarantees the wrapper has the same
        // layout and bit validity as `T` (it is `repr(transparent)` over
        // it), so it inherits all four properties from `T: ShmSafe`.
        unsafe impl<T: ShmSafe> ShmSafe for $path {
            const LAYOUT: TypeLayout = TypeLayout {
                name: stringify!($wrapper),
                size: core::mem::size_of::<T>(),
                align: core::mem::align_of::<T>(),
                fingerprint: fingerprint::word(
                    fingerprint::bytes(fingerprint::start(), stringify!($wrapper).as_bytes()),
                    T::LAYOUT.fingerprint,
                ),
            };
            const SHALLOW_FINGERPRINT: u64 = fingerprint::word(
                fingerprint::bytes(fingerprint::start(), stringify!($wrapper).as_bytes()),
                T::SHALLOW_FINGERPRINT,
            );
            const PADDING_FREE: bool = T::PADDING_FREE;
        }
    )*};
}

// Deliberately not here: `Option<NonZero*>` (sound - every integer maps to
// a valid value - but it invites `NonZero*` itself, which is not), `bool`,
// `char`, `AtomicBool` (invalid bit patterns), `Cell` (not useful across
// processes), `MaybeUninit` (reading it back needs the same checks as a
// plain byte array: use one).
transparent_wrapper!(
    Wrapping => core::num::Wrapping<T>,
    Saturating => core::num::Saturating<T>,
    ManuallyDrop => core::mem::ManuallyDrop<T>,
    UnsafeCell => core::cell::UnsafeCell<T>,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::{Offset, RelPtr};

    // The derive works inside this crate too (`extern crate self as conduit`).
    #[derive(crate::ShmSafe)]
    #[repr(C)]
    struct ListNode {
        next: RelPtr<ListNode>,
        value: core::num::Wrapping<u32>,
        owner: Offset<ListNode>,
        _self: PhantomData<ListNode>,
    }

    #[test]
    fn derive_inside_the_crate_and_self_reference() {
        assert_eq!(ListNode::LAYOUT.name, "ListNode");
        assert_eq!(ListNode::LAYOUT.size, 24);
        assert_eq!(ListNode::LAYOUT.align, 8);
        // One pointer hop: the node's full fingerprint sees its own shallow one.
        assert_ne!(ListNode::LAYOUT.fingerprint, ListNode::SHALLOW_FINGERPRINT);
        assert_eq!(
            RelPtr::<ListNode>::LAYOUT.fingerprint,
            fingerprint::word(
                fingerprint::bytes(fingerprint::start(), b"RelPtr"),
                ListNode::SHALLOW_FINGERPRINT
            )
        );
    }

    #[test]
    fn wrappers_keep_the_layout_and_change_the_fingerprint() {
        use core::cell::UnsafeCell;
        use core::mem::ManuallyDrop;
        use core::num::{Saturating, Wrapping};
        let plain = u32::LAYOUT;
        for layout in [
            Wrapping::<u32>::LAYOUT,
            Saturating::<u32>::LAYOUT,
            ManuallyDrop::<u32>::LAYOUT,
            UnsafeCell::<u32>::LAYOUT,
        ] {
            assert_eq!((layout.size, layout.align), (plain.size, plain.align));
            assert_ne!(layout.fingerprint, plain.fingerprint, "{}", layout.name);
        }
        assert_ne!(
            Wrapping::<u32>::LAYOUT.fingerprint,
            Wrapping::<i32>::LAYOUT.fingerprint
        );
        // Leaves: shallow and full agree.
        assert_eq!(u64::SHALLOW_FINGERPRINT, u64::LAYOUT.fingerprint);
        assert_eq!(
            <[u64; 2]>::SHALLOW_FINGERPRINT,
            <[u64; 2]>::LAYOUT.fingerprint
        );
    }

    #[test]
    fn fingerprints_differ_between_types() {
        assert_ne!(u32::LAYOUT.fingerprint, i32::LAYOUT.fingerprint);
        assert_ne!(u32::LAYOUT.fingerprint, f32::LAYOUT.fingerprint);
        assert_ne!(<[u8; 4]>::LAYOUT.fingerprint, <[u8; 5]>::LAYOUT.fingerprint);
        assert_eq!(<[u64; 3]>::LAYOUT.size, 24);
        assert_eq!(u64::LAYOUT.align, core::mem::align_of::<u64>());
    }
}
