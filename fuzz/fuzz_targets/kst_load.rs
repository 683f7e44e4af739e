//! Any bytes given to the `.kst` loader load or are refused, without a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

// The checks are shared with the test suite, which replays every seed and every crash the
// fuzzer found through the same code (tests/tests/fuzz_corpus.rs).
// Each target uses one of its checks.
#[allow(dead_code)]
#[path = "../../tests/fuzz_checks.rs"]
mod fuzz_checks;

fuzz_target!(|bytes: &[u8]| {
    fuzz_checks::kst_load(bytes);
});
