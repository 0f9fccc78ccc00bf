use conduit::ShmSafe;

// repr(C) plain data, but nobody derived ShmSafe for it.
#[repr(C)]
struct Inner {
    value: u32,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Outer {
    inner: Inner,
    maybe: Option<u32>,
}

fn main() {}
