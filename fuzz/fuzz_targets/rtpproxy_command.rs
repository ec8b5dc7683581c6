//! rtpproxy control protocol: parse any bytes with and without a cookie, check the
//! canonical form parses back to the same request and every reply is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rtpark::control::rtpproxy::fuzzing::check_rtpproxy_command(data);
});
