//! Any bytes given to the image decoder decode or are refused, without a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    kestrel_tests::fuzz_checks::image_decode(bytes);
});
