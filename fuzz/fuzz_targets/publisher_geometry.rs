//! A publisher data segment's geometry header, read from a patched valid one
//! (or from raw bytes).
#![no_main]

use arbitrary::Arbitrary;
use conduit::__fuzz;
use conduit_fuzz::{Buffer, Patch, apply};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    Patched(Vec<Patch>),
    Raw(Vec<u8>),
}

fuzz_target!(|input: Input| {
    match input {
        Input::Patched(patches) => {
            let mut bytes = __fuzz::valid_publisher_data();
            let mut buf = Buffer::new(bytes.len().next_multiple_of(8));
            let region = buf.region();
            // SAFETY: the buffer is at least bytes.len() long.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), region.base().as_ptr(), bytes.len())
            };
            apply(&region, 0, bytes.len(), 0..0, &patches);
            // SAFETY: as above.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    region.base().as_ptr(),
                    bytes.as_mut_ptr(),
                    bytes.len(),
                )
            };
            __fuzz::decode_publisher_geometry(&bytes);
        }
        Input::Raw(bytes) => __fuzz::decode_publisher_geometry(&bytes),
    }
});
