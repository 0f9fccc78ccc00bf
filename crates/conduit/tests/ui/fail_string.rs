use conduit::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Named {
    name: String,
}

fn main() {}
