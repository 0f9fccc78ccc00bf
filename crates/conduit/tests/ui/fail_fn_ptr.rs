use conduit::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Callback {
    call: fn(u32) -> u32,
}

fn main() {}
