use conduit::ShmSafe;

#[derive(ShmSafe)]
#[repr(Rust)]
struct Explicit {
    value: u32,
}

fn main() {}
