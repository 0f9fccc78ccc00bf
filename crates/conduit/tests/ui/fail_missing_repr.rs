use conduit::ShmSafe;

#[derive(ShmSafe)]
struct NoRepr {
    value: u32,
}

#[derive(ShmSafe)]
#[repr(align(8))]
struct OnlyAlign {
    value: u32,
}

fn main() {}
