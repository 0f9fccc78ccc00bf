//! A service's static configuration, decoded from a patched valid one
//! (or from raw bytes).
#![no_main]

use conduit::__fuzz;
use conduit_fuzz::{DecoderInput, run_decoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: DecoderInput| {
    run_decoder(
        input,
        __fuzz::valid_service_config,
        __fuzz::decode_service_config,
    );
});
