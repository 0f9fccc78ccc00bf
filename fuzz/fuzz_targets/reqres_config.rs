//! A request/response service's configuration, decoded from a patched
//! valid one (or from raw bytes).
#![no_main]

use conduit::__fuzz;
use conduit_fuzz::{DecoderInput, run_decoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: DecoderInput| {
    run_decoder(
        input,
        __fuzz::valid_reqres_config,
        __fuzz::decode_reqres_config,
    );
});
