//! Any bytes given to the ONNX importer import or are refused, without a panic; what imports
//! is optimized and, when small, run once.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    kestrel_tests::fuzz_checks::onnx_import(bytes);
});
