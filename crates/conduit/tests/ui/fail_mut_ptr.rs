use conduit::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Pointer {
    len: u32,
    targets: [*mut u64; 4],
}

fn main() {}
