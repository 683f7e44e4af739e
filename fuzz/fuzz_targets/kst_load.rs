//! Any bytes given to the `.kst` loader load or are refused, without a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    kestrel_tests::fuzz_checks::kst_load(bytes);
});
