//! What each fuzz target checks for one input, shared by the `cargo fuzz` targets in `fuzz/`
//! and by the test that replays their seeds and every crash they found
//! (`tests/tests/fuzz_corpus.rs`). Each function returns normally for any input, whether the
//! input is accepted or refused; a panic anywhere below is a bug.

use std::path::Path;

use kestrel_graph::{Dim, Tensor, ValueKind};
use kestrel_runtime::Session;

/// Largest input, in elements, that [`onnx_import`] runs a graph on: small graphs only, so
/// every run stays fast; real networks are imported and optimized but not run.
pub const MAX_RUN_INPUT_ELEMENTS: usize = 1 << 12;

/// Pixel limit for [`image_decode`]: room for every seed, and small enough that a header
/// declaring the limit does not make each fuzz run take seconds.
pub const MAX_FUZZ_PIXELS: u64 = 1 << 22;

/// A `.kst` file: loads or is refused; a graph that loads validates again.
pub fn kst_load(bytes: &[u8]) {
    if let Ok(graph) = kestrel_format::load_bytes(bytes, "fuzz.kst") {
        graph
            .validate()
            .expect("a loaded .kst graph validates again");
    }
}

/// An ONNX model: imports or is refused. A graph that imports is optimized, and when the
/// result validates and its inputs are small, run once on zeros (free dimensions at 1).
/// Returns whether the run happened and succeeded.
pub fn onnx_import(bytes: &[u8]) -> bool {
    // No folder: external data is refused, so the importer never opens a file here.
    let Ok(graph) = kestrel_onnx::import_bytes(bytes, None) else {
        return false;
    };
    let (graph, _) = kestrel_optimizer::optimize(&graph)
        .expect("the optimizer accepts every graph the importer produced");
    let Ok(session) = Session::new(graph) else {
        return false;
    };
    let graph = session.graph();
    let mut inputs = Vec::new();
    for &id in &graph.inputs {
        let ValueKind::Input { dims } = &graph.value(id).kind else {
            return false;
        };
        let shape: Vec<usize> = dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Free(_) => 1,
            })
            .collect();
        match kestrel_graph::element_count(&shape) {
            Some(n) if n <= MAX_RUN_INPUT_ELEMENTS => inputs.push(Tensor::zeros(shape)),
            _ => return false,
        }
    }
    session.run(inputs).is_ok()
}

/// A PNG or JPEG: decodes to RGB of a consistent size, or is refused.
pub fn image_decode(bytes: &[u8]) {
    if let Ok(image) = kestrel_vision::decode_image(bytes, Path::new("fuzz.img"), MAX_FUZZ_PIXELS) {
        assert!(u64::from(image.width()) * u64::from(image.height()) <= MAX_FUZZ_PIXELS);
        assert_eq!(
            image.as_raw().len(),
            image.width() as usize * image.height() as usize * 3
        );
    }
}
