//! Any bytes given to the ONNX importer import or are refused, without a panic; what imports
//! is optimized and, when small, run once.

#![no_main]

use libfuzzer_sys::fuzz_target;

// The checks are shared with the test suite, which replays every seed and every crash the
// fuzzer found through the same code (tests/tests/fuzz_corpus.rs).
// Each target uses one of its checks.
#[allow(dead_code)]
#[path = "../../tests/fuzz_checks.rs"]
mod fuzz_checks;

fuzz_target!(|bytes: &[u8]| {
    let _ = fuzz_checks::onnx_import(bytes);
});
