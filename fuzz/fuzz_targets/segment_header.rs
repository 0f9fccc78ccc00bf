//! Segment header validation: an anonymous segment whose header (and the
//! start of its data area) is patched, then adopted with `Segment::from_fd`
//! and mapped again, as a process receiving it over a socket would.
#![no_main]

use arbitrary::Arbitrary;
use conduit::shm::{ManagedSegment, Segment};
use conduit_fuzz::{Patch, apply};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    patches: Vec<Patch>,
    check_fingerprint: bool,
    read_only: bool,
}

fuzz_target!(|input: Input| {
    let segment = Segment::builder("fuzz")
        .size(4096)
        .fingerprint(0xf00d)
        .create_anonymous()
        .expect("memfd segment");
    // The header is 128 bytes; the next 128 hold what a managed segment's
    // magic would.
    apply(&segment.whole(), 0, 256, 0..0, &input.patches);
    let fd = segment.fd().try_clone_to_owned().expect("dup");
    let fingerprint = input.check_fingerprint.then_some(0xf00d);
    if let Ok(adopted) = Segment::from_fd(fd, fingerprint, input.read_only) {
        assert_eq!(adopted.len(), segment.len());
        let _ = adopted.fingerprint();
        let _ = adopted.creator_pid();
        assert_eq!(
            adopted.data().len(),
            adopted.len() - conduit::shm::HEADER_SIZE
        );
        if let Ok(again) = adopted.map_again() {
            let _ = ManagedSegment::from_segment(again);
        }
    }
});
