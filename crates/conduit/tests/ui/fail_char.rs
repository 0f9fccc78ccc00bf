use conduit::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Letter(char);

fn main() {}
