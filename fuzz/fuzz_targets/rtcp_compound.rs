//! RTCP compound: walk every packet of any datagram, then rewrite a copy in place.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rtpark::rtp::fuzzing::check_rtcp_compound(data);
});
