use conduit::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Boxed {
    value: Box<u64>,
    shared: std::sync::Arc<u64>,
}

fn main() {}

// Not recognisable by name: caught by the trait-bound check instead.
type Owned = Box<u32>;

#[derive(ShmSafe)]
#[repr(C)]
struct Aliased {
    value: Owned,
}
