//! A blackboard's configuration, key table and entry words, decoded and
//! read from a patched valid data area (or from raw bytes).
#![no_main]

use conduit::__fuzz;
use conduit_fuzz::{DecoderInput, run_decoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: DecoderInput| {
    run_decoder(input, __fuzz::valid_blackboard, __fuzz::decode_blackboard);
});
