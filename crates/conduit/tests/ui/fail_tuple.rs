use conduit::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Point {
    xy: (f32, f32),
}

fn main() {}
