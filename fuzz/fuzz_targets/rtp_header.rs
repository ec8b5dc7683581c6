//! RTP header: parse any datagram; if valid, rewrite it in place and re-parse.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rtpark::rtp::fuzzing::check_rtp_header(data);
});
