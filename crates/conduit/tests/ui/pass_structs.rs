//! Definitions the derive must accept, used through the public API only.

use core::marker::PhantomData;
use core::num::Wrapping;
use core::sync::atomic::{AtomicU32, AtomicU64};

use conduit::ShmSafe;
use conduit::shm::{Offset, RelPtr};

#[derive(ShmSafe)]
#[repr(C)]
pub struct Pose {
    pub x: f64,
    pub y: f64,
    pub seq: u32,
}

#[derive(ShmSafe)]
#[repr(C)]
pub struct Tuple(pub u8, pub u64);

#[derive(ShmSafe)]
#[repr(C)]
pub struct Unit;

#[derive(ShmSafe)]
#[repr(transparent)]
pub struct Meters(pub f64);

#[derive(ShmSafe)]
#[repr(C, align(64))]
pub struct Padded {
    pub head: AtomicU64,
}

#[derive(ShmSafe)]
#[repr(C)]
#[repr(align(16))]
pub struct TwoAttributes {
    pub word: AtomicU32,
}

#[derive(ShmSafe)]
#[repr(C)]
pub struct Generic<T, U: Copy, const N: usize = 4>
where
    U: Default,
{
    pub items: [T; N],
    pub extra: U,
    pub counter: Wrapping<u32>,
}

#[derive(ShmSafe)]
#[repr(C)]
pub struct Links<T> {
    pub next: RelPtr<Links<T>>,
    pub previous: RelPtr<Self>,
    pub payload: Offset<T>,
    pub _marker: PhantomData<T>,
    pub r#type: u32,
}

/// Names that could clash with the derive's own locals.
#[allow(non_upper_case_globals)]
#[derive(ShmSafe)]
#[repr(C)]
pub struct Clashes<const hash: usize> {
    pub hash: [u8; hash],
    pub h: u8,
    pub r#struct: u8,
}

mod mine {
    use conduit::ShmSafe;

    /// A user type that happens to be called `Vec`: fine when written with a path.
    #[derive(ShmSafe)]
    #[repr(C)]
    pub struct Vec {
        pub len: u32,
        pub items: [u32; 8],
    }
}

#[derive(ShmSafe)]
#[repr(C)]
pub struct UsesMine {
    pub list: mine::Vec,
    pub nested: Generic<Pose, u16>,
}

fn needs_shm_safe<T: ShmSafe>() -> usize {
    T::LAYOUT.size
}

fn main() {
    assert_eq!(needs_shm_safe::<Pose>(), 24);
    assert_eq!(needs_shm_safe::<Tuple>(), 16);
    assert_eq!(needs_shm_safe::<Unit>(), 0);
    assert_eq!(needs_shm_safe::<Meters>(), 8);
    assert_eq!(needs_shm_safe::<Padded>(), 64);
    assert_eq!(TwoAttributes::LAYOUT.align, 16);
    assert_eq!(Generic::<u8, u16>::LAYOUT.size, 12);
    assert_eq!(Links::<Pose>::LAYOUT.name, "Links");
    assert_eq!(UsesMine::LAYOUT.size, core::mem::size_of::<UsesMine>());
    assert_eq!(Clashes::<3>::LAYOUT.size, 5);
}
