use conduit::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Samples {
    values: Vec<f32>,
}

fn main() {}
