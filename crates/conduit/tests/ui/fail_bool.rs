use conduit::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Flags {
    ready: bool,
}

fn main() {}
