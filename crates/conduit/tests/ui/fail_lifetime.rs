use conduit::ShmSafe;
use core::marker::PhantomData;

#[derive(ShmSafe)]
#[repr(C)]
struct WithLifetime<'a> {
    value: u32,
    _borrow: PhantomData<&'a u32>,
}

fn main() {}
