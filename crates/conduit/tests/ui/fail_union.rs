use conduit::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
union Either {
    int: u32,
    float: f32,
}

fn main() {}
