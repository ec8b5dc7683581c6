//! Native control protocol: parse any bytes as request lines and check every reply line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rtpark::control::native::fuzzing::check_native_request(data);
});
