//! Bencode: decode any bytes; whatever decodes re-encodes to the same bytes and value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rtpark::control::ng::fuzzing::check_bencode(data);
});
