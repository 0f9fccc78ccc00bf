use conduit::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Pointer {
    target: *const u64,
}

fn main() {}
