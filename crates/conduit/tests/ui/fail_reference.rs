use conduit::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Borrowed {
    value: &'static u32,
}

fn main() {}
