//! ng control protocol: parse any bytes as a UDP datagram and as a bare body, and
//! check the reply each would get.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rtpark::control::ng::fuzzing::check_ng_request(data);
});
