use conduit::ShmSafe;

#[derive(ShmSafe)]
#[repr(C, packed)]
struct Packed {
    tag: u8,
    value: u32,
}

#[derive(ShmSafe)]
#[repr(C, packed(2))]
struct PackedTwo {
    tag: u8,
    value: u32,
}

fn main() {}
