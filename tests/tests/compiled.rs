//! The bundled models compiled to `.kst` and loaded back: the same graph, weights used in
//! place, the same outputs (bit-identical with f32 weights, within 1e-3 with f16) and the same
//! CAM tail.

use kestrel_format::{load_file, write_file, WriteOptions};
use kestrel_graph::{Graph, Tensor, ValueKind};
use kestrel_runtime::Session;
use kestrel_tests::{random_tensor, repo_root};

fn optimized(name: &str) -> Graph {
    let path = repo_root()
        .join("models/synthetic")
        .join(format!("{name}.onnx"));
    let graph = kestrel_onnx::import_file(&path).unwrap();
    kestrel_optimizer::optimize(&graph).unwrap().0
}

fn run(graph: &Graph) -> Vec<Tensor> {
    let shape = &graph.value(graph.inputs[0]).shape;
    let mut shape = shape.clone();
    shape[0] = 2;
    let input = random_tensor(&shape, 7);
    Session::new(graph.clone())
        .unwrap()
        .run(vec![input])
        .unwrap()
}

fn compile(graph: &Graph, name: &str, f16: bool) -> Graph {
    let dir = std::env::temp_dir().join(format!("kestrel-compiled-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{f16}.kst"));
    write_file(graph, &path, WriteOptions { f16_weights: f16 }).unwrap();
    load_file(&path).unwrap()
}

#[test]
fn bundled_models_round_trip_bit_identically() {
    for name in ["googlenet_tiny", "resnet_tiny"] {
        let graph = optimized(name);
        let loaded = compile(&graph, name, false);
        assert_eq!(loaded, graph, "{name}: the loaded graph differs");
        for value in &loaded.values {
            if let ValueKind::Constant(t) = &value.kind {
                assert!(t.is_shared(), "{name}: '{}' was copied", value.name);
            }
        }
        for (a, b) in run(&graph).iter().zip(&run(&loaded)) {
            assert_eq!(a.shape(), b.shape());
            let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert!(bits(a) == bits(b), "{name}: outputs differ");
        }
        let before = kestrel_explain::find_cam_tail(&graph).unwrap();
        let after = kestrel_explain::find_cam_tail(&loaded).unwrap();
        assert_eq!(before.features, after.features);
        assert_eq!(before.weights, after.weights);
    }
}

#[test]
fn bundled_models_with_f16_weights_stay_within_1e_3() {
    for name in ["googlenet_tiny", "resnet_tiny"] {
        let graph = optimized(name);
        let loaded = compile(&graph, name, true);
        assert_eq!(loaded.nodes, graph.nodes);
        for (a, b) in run(&graph).iter().zip(&run(&loaded)) {
            let scale = a.data().iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
            let diff = kestrel_tests::max_abs_diff(a.data(), b.data());
            assert!(
                diff <= 1e-3 * scale,
                "{name}: f16 outputs differ by {diff} (scale {scale})"
            );
        }
    }
}
