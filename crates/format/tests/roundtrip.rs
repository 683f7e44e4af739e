//! Writing graphs as `.kst` and loading them back: equal graphs, identical outputs, weights
//! used in place.

mod common;

use std::path::PathBuf;

use kestrel_format::{load_bytes, load_file, to_bytes, write_file, WriteOptions};
use kestrel_graph::{Graph, Tensor, ValueKind};
use kestrel_runtime::Session;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kestrel-format-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn run(graph: Graph) -> Vec<Tensor> {
    let input = common::tensor(&[2, 3, 8, 8], 99);
    Session::new(graph).unwrap().run(vec![input]).unwrap()
}

const F32: WriteOptions = WriteOptions { f16_weights: false };
const F16: WriteOptions = WriteOptions { f16_weights: true };

#[test]
fn every_op_round_trips_exactly() {
    let graph = common::every_op();
    let path = scratch("every_op.kst");
    let size = write_file(&graph, &path, F32).unwrap();
    assert_eq!(size, std::fs::metadata(&path).unwrap().len());
    let loaded = load_file(&path).unwrap();
    assert_eq!(loaded, graph);
    let (a, b) = (run(graph), run(loaded));
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(x.shape(), y.shape());
        assert_eq!(bits(x), bits(y));
    }
}

#[test]
fn f32_weights_are_used_in_place() {
    let graph = common::every_op();
    let bytes = to_bytes(&graph, F32).unwrap();
    let loaded = load_bytes(&bytes, "memory").unwrap();
    let path = scratch("in_place.kst");
    write_file(&graph, &path, F32).unwrap();
    let mapped = load_file(&path).unwrap();
    for g in [&loaded, &mapped] {
        let constants: Vec<&Tensor> = g
            .values
            .iter()
            .filter_map(|v| match &v.kind {
                ValueKind::Constant(t) => Some(t),
                _ => None,
            })
            .collect();
        assert!(!constants.is_empty());
        for t in &constants {
            assert!(t.is_shared());
            assert_eq!(
                t.data().as_ptr() as usize % 64,
                0,
                "blobs are 64-byte aligned"
            );
        }
    }
    // Every mapped weight points into the one range the map covers, and the whole set spans
    // no more than the file.
    let ptrs: Vec<(usize, usize)> = mapped
        .values
        .iter()
        .filter_map(|v| match &v.kind {
            ValueKind::Constant(t) => Some((t.data().as_ptr() as usize, t.len() * 4)),
            _ => None,
        })
        .collect();
    let lo = ptrs.iter().map(|p| p.0).min().unwrap();
    let hi = ptrs.iter().map(|p| p.0 + p.1).max().unwrap();
    let file_len = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(hi - lo < file_len);
    // Copy on write: changing one weight copies it, and leaves the others in place.
    let mut edited = mapped.clone();
    let w1 = mapped.find_value("w1").unwrap().0;
    let ValueKind::Constant(t) = &mut edited.values[w1].kind else {
        panic!("w1 is a constant");
    };
    t.data_mut()[0] += 1.0;
    assert!(!t.is_shared());
    assert!(edited.values[w1] != mapped.values[w1]);
    assert!(mapped
        .constant(mapped.find_value("w1").unwrap())
        .unwrap()
        .is_shared());
}

#[test]
fn f16_weights_round_trip_within_tolerance() {
    let graph = common::every_op();
    let f32_size = to_bytes(&graph, F32).unwrap().len();
    let bytes = to_bytes(&graph, F16).unwrap();
    assert!(bytes.len() < f32_size);
    let loaded = load_bytes(&bytes, "memory").unwrap();
    assert_eq!(loaded.nodes, graph.nodes);
    assert_eq!(loaded.inputs, graph.inputs);
    assert_eq!(loaded.outputs, graph.outputs);
    for (a, b) in graph.values.iter().zip(&loaded.values) {
        assert_eq!((&a.name, &a.shape), (&b.name, &b.shape));
        if let (ValueKind::Constant(x), ValueKind::Constant(y)) = (&a.kind, &b.kind) {
            assert!(!y.is_shared(), "f16 weights are widened into owned buffers");
            for (p, q) in x.data().iter().zip(y.data()) {
                assert!((p - q).abs() <= 1e-3 * p.abs().max(1e-2), "{p} vs {q}");
            }
        }
    }
    for (x, y) in run(graph).iter().zip(&run(loaded)) {
        for (p, q) in x.data().iter().zip(y.data()) {
            assert!((p - q).abs() <= 1e-3 * p.abs().max(1.0), "{p} vs {q}");
        }
    }
}

#[test]
fn the_cam_tail_survives() {
    let graph = common::cam_net();
    let loaded = load_bytes(&to_bytes(&graph, F32).unwrap(), "memory").unwrap();
    let before = kestrel_explain::find_cam_tail(&graph).unwrap();
    let after = kestrel_explain::find_cam_tail(&loaded).unwrap();
    assert_eq!(before.features, after.features);
    assert_eq!(before.logits, after.logits);
    assert_eq!(before.weights, after.weights);
    assert_eq!(before.bias, after.bias);
}

#[test]
fn the_writer_refuses_an_inconsistent_graph() {
    let mut graph = common::cam_net();
    graph.values[0].shape = vec![1, 3, 9, 8];
    let err = to_bytes(&graph, F32).unwrap_err().to_string();
    assert!(err.contains("cannot write"), "{err}");
}

/// A weight beyond f16's range would become infinity, then NaN in the outputs: the writer
/// refuses f16 storage for it, naming the constant, and f32 storage still works.
#[test]
fn f16_storage_refuses_weights_out_of_its_range() {
    let mut graph = common::cam_net();
    let name = graph
        .values
        .iter_mut()
        .find_map(|v| match &mut v.kind {
            ValueKind::Constant(t) => {
                t.data_mut()[0] = 1e5;
                Some(v.name.clone())
            }
            _ => None,
        })
        .expect("the test graph has weights");
    let f16 = WriteOptions { f16_weights: true };
    let err = to_bytes(&graph, f16).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains("f16"), "{err}");
    assert!(to_bytes(&graph, F32).is_ok());
}
