use conduit::ShmSafe;

// `T: ShmSafe` is added, but `Option<T>` is still not ShmSafe.
#[derive(ShmSafe)]
#[repr(C)]
struct Slot<T> {
    value: Option<T>,
}

fn main() {}
