//! The shared fault cases (`../shared/cases` next to the repository), when they are present:
//! each case's model runs on its inputs and must give its expected outputs to
//! `1e-4 + 1e-4 * |expected|`. The cases are not part of the project, so without them these
//! tests print a note and pass; `tests/tests/faults.rs` covers the same kinds of fault on its
//! own.

use std::path::{Path, PathBuf};

use kestrel_graph::Tensor;
use kestrel_runtime::Session;
use kestrel_tests::read_npy;

fn cases_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/cases");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("note: {} is absent, shared cases skipped", dir.display());
        None
    }
}

/// Runs case `id` and compares every `expected_<name>.npy` with the graph output `<name>`;
/// returns the largest error.
fn run_case(id: &str) -> Option<f32> {
    let dir = cases_dir()?.join(id);
    let graph = kestrel_onnx::import_file(&dir.join("model.onnx"))
        .unwrap_or_else(|e| panic!("{id}: import failed: {e}"));
    let inputs: Vec<Tensor> = graph
        .inputs
        .iter()
        .map(|&i| read_npy(&dir.join(format!("input_{}.npy", graph.value(i).name))))
        .collect();
    let names: Vec<String> = graph
        .outputs
        .iter()
        .map(|&o| graph.value(o).name.clone())
        .collect();
    let outputs = Session::new(graph)
        .and_then(|s| s.run(inputs))
        .unwrap_or_else(|e| panic!("{id}: run failed: {e}"));
    let mut worst = 0.0f32;
    for (name, got) in names.iter().zip(&outputs) {
        let want = read_npy(&dir.join(format!("expected_{name}.npy")));
        assert_eq!(got.shape(), want.shape(), "{id} output '{name}': shape");
        for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
            let err = (g - w).abs();
            assert!(
                err <= 1e-4 + 1e-4 * w.abs(),
                "{id} output '{name}' element {i}: got {g}, expected {w}"
            );
            worst = worst.max(err);
        }
    }
    eprintln!(
        "{id}: {} outputs match, max |error| {worst:.3e}",
        names.len()
    );
    Some(worst)
}

#[test]
fn c01_conv_same_padding() {
    run_case("C01");
}

#[test]
fn c02_max_pool_ceil_mode() {
    run_case("C02");
}

#[test]
fn c04_average_pool_count_include_pad() {
    run_case("C04");
}

#[test]
fn c07_lrn() {
    run_case("C07");
}

#[test]
fn c09_grouped_and_depthwise_conv() {
    run_case("C09");
}

#[test]
fn c18_symbolic_batch_classifier_head() {
    run_case("C18");
}

#[test]
fn c19_softmax_huge_logits() {
    if run_case("C19").is_some() {
        let dir = cases_dir().unwrap().join("C19");
        let graph = kestrel_onnx::import_file(&dir.join("model.onnx")).unwrap();
        let x = read_npy(&dir.join("input_x.npy"));
        let y = Session::new(graph).unwrap().run(vec![x]).unwrap();
        for row in y[0].data().chunks(y[0].shape()[1]) {
            assert!(row.iter().all(|v| v.is_finite()));
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}

#[test]
fn c21_batch_0() {
    run_case("C21");
}

/// Quantized operators are not supported: the model must be refused at import with one line
/// naming the operator and the node.
#[test]
fn c12_quantized_conv_is_refused() {
    let Some(dir) = cases_dir() else { return };
    let err = kestrel_onnx::import_file(&dir.join("C12/model.onnx"))
        .expect_err("QLinearConv must be refused");
    let msg = err.to_string();
    assert!(msg.contains("QLinearConv"), "{msg}");
    assert!(msg.contains("node"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

/// Malformed graphs: a clear, one-line error naming the node or the file problem, no panic.
#[test]
fn c15_malformed_graphs() {
    let Some(dir) = cases_dir() else { return };
    for (file, must_name) in [
        ("model.onnx", "Concat"),
        ("model_gemm_one_input.onnx", "Gemm"),
        ("model_conv_one_input.onnx", "Conv"),
        ("model_truncated.onnx", "truncated"),
    ] {
        let path = dir.join("C15").join(file);
        let result = std::panic::catch_unwind(|| kestrel_onnx::import_file(&path));
        let err = result
            .unwrap_or_else(|_| panic!("{file}: import panicked"))
            .expect_err("a malformed model must be refused");
        let msg = err.to_string();
        eprintln!("C15 {file}: {msg}");
        assert!(msg.contains(must_name), "{file}: {msg}");
        assert!(!msg.contains('\n'), "{file}: {msg}");
    }
}
