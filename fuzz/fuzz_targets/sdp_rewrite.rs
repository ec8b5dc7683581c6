//! SDP: parse any body; if valid, rewrite it with a plan drawn from the input and
//! check the output re-parses with the planned values and every other line intact.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rtpark::sdp::fuzzing::check_sdp_rewrite(data);
});
