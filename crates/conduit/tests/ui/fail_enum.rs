use conduit::ShmSafe;

#[derive(ShmSafe)]
#[repr(u8)]
enum State {
    Idle,
    Busy,
}

fn main() {}
