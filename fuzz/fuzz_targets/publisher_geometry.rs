//! A publisher data segment's geometry header, read from a patched valid one
//! (or from raw bytes).
#![no_main]

use conduit::__fuzz;
use conduit_fuzz::{DecoderInput, run_decoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: DecoderInput| {
    run_decoder(
        input,
        __fuzz::valid_publisher_data,
        __fuzz::decode_publisher_geometry,
    );
});
