//! Every model the project claims to run, imported and run by Kestrel and compared with tract
//! on a deterministic pseudo-random input at its nominal shape; and the optimized graph
//! compared with the graph as imported.

use kestrel_graph::{Dim, Graph, Op, Tensor, ValueKind};
use kestrel_optimizer::Report;
use kestrel_runtime::Session;
use kestrel_tests::oracle::{compare_with_tract, Comparison, Onnx};
use kestrel_tests::{model_file, random_tensor, repo_root, required_file};
use std::path::Path;

/// Imports `path` and runs both engines on standard-normal inputs of the declared shape, with
/// every free dimension (a symbolic batch) set to `batch`.
fn check_model(path: &Path, batch: usize, seed: u64) {
    let graph = kestrel_onnx::import_file(path)
        .unwrap_or_else(|e| panic!("Kestrel cannot import {}: {e}", path.display()));
    let inputs: Vec<Tensor> = graph
        .inputs
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let ValueKind::Input { dims } = &graph.value(id).kind else {
                unreachable!()
            };
            let shape: Vec<usize> = dims
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => *n,
                    Dim::Free(_) => batch,
                })
                .collect();
            random_tensor(&shape, seed + i as u64)
        })
        .collect();
    check_optimizer(path, &graph, &inputs);
    drop(graph);
    compare_with_tract(Onnx::File(path), inputs).assert_ok();
}

/// The optimizer's promise: the rewritten graph gives the imported graph's outputs within
/// 1e-5 of the largest output.
fn check_optimizer(path: &Path, graph: &Graph, inputs: &[Tensor]) {
    let (optimized, report) = kestrel_optimizer::optimize(graph)
        .unwrap_or_else(|e| panic!("{}: optimizer failed: {e}", path.display()));
    eprintln!("{}: {report}", path.display());
    let run = |g: Graph| {
        Session::new(g)
            .and_then(|s| s.run(inputs.to_vec()))
            .expect("run")
    };
    let want = run(graph.clone());
    let got = run(optimized);
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        let c = Comparison::new(&format!("output {i}"), got, want, 1e-5);
        assert!(c.ok(), "{}: optimized graph differs: {c}", path.display());
    }
}

fn check_cached(relative: &str, batch: usize) {
    if let Some(path) = model_file(relative) {
        check_model(&path, batch, 0x6b65_7374_7265_6c00);
    }
}

#[test]
fn zoo_inception_v1() {
    check_cached("zoo/inception_v1.onnx", 1);
}

#[test]
fn zoo_resnet50() {
    check_cached("zoo/resnet50.onnx", 1);
}

#[test]
fn zoo_bvlc_alexnet() {
    check_cached("zoo/bvlc_alexnet.onnx", 1);
}

#[test]
fn zoo_zfnet512() {
    check_cached("zoo/zfnet512.onnx", 1);
}

#[test]
fn zoo_vgg19() {
    check_cached("zoo/vgg19.onnx", 1);
}

#[test]
fn zoo_squeezenet() {
    check_cached("zoo/squeezenet.onnx", 1);
}

#[test]
fn torchvision_googlenet() {
    check_cached("torchvision/googlenet.onnx", 1);
}

#[test]
fn torchvision_resnet18_batch_2() {
    check_cached("torchvision/resnet18.onnx", 2);
}

#[test]
fn torchvision_resnet50() {
    check_cached("torchvision/resnet50.onnx", 1);
}

#[test]
fn real_efficientnet_lite0() {
    check_cached("real/efficientnet_lite0.onnx", 1);
}

#[test]
fn real_resnet50_opennsfw() {
    check_cached("real/resnet50_opennsfw.onnx", 1);
}

/// The synthetic-task models are committed (not generated), under `models/synthetic/`.
fn check_synthetic(name: &str) {
    let path = repo_root().join("models").join("synthetic").join(name);
    let how = "it is trained by models/train_synthetic.py and committed";
    if let Some(path) = required_file(path, how) {
        check_model(&path, 3, 0x7379_6e74_6800);
    }
}

#[test]
fn synthetic_googlenet_tiny_batch_3() {
    check_synthetic("googlenet_tiny.onnx");
}

#[test]
fn synthetic_resnet_tiny_batch_3() {
    check_synthetic("resnet_tiny.onnx");
}

/// How many nodes of the optimized graph satisfy `pred`.
fn count_after_optimizing(relative: &str, pred: impl Fn(&Op) -> bool) -> Option<(usize, Report)> {
    let path = model_file(relative)?;
    let graph = kestrel_onnx::import_file(&path).expect("import");
    let (optimized, report) = kestrel_optimizer::optimize(&graph).expect("optimize");
    Some((
        optimized.nodes.iter().filter(|n| pred(&n.op)).count(),
        report,
    ))
}

/// ResNet-50: every batch norm folds into its conv, and every residual Add and every ReLU ends
/// up in a conv epilogue.
#[test]
fn zoo_resnet50_fusions() {
    let left = |op: &Op| matches!(op, Op::BatchNorm { .. } | Op::Binary(_) | Op::Relu);
    let Some((remaining, report)) = count_after_optimizing("zoo/resnet50.onnx", left) else {
        return;
    };
    assert_eq!(remaining, 0, "{report}");
    assert_eq!(report.count("fold-batch-norm"), 53, "{report}");
    assert_eq!(report.count("fold-residual-add"), 16, "{report}");
    assert_eq!(report.count("fuse-activation"), 49, "{report}");
}

/// GoogLeNet: every ReLU follows a conv and fuses into it, Dropout disappears, each of the 9
/// inception modules' three 1x1 convs on the module input (the 1x1 branch and the 3x3 and 5x5
/// reduces) merge into one, read through 27 channel slices, and conv1's pool joins its conv.
#[test]
fn zoo_inception_v1_fusions() {
    let left = |op: &Op| matches!(op, Op::Relu | Op::Identity);
    let Some((remaining, report)) = count_after_optimizing("zoo/inception_v1.onnx", left) else {
        return;
    };
    assert_eq!(remaining, 0, "{report}");
    assert_eq!(report.count("fuse-activation"), 57, "{report}");
    assert_eq!(report.count("merge-parallel-1x1"), 9, "{report}");
    assert_eq!(report.count("fuse-max-pool"), 1, "{report}");
    let slices = |op: &Op| matches!(op, Op::ChannelSlice { .. });
    let (slices, _) = count_after_optimizing("zoo/inception_v1.onnx", slices).expect("cached");
    assert_eq!(slices, 27);
}

/// GoogLeNet's memory plan at batch 1: every inception Concat is written in place by its
/// branches (the 1x1 branch's slice is copied straight into its place, the 3x3 and 5x5
/// branches' reduce slices are read in place), and the arena is a fraction of one buffer per
/// activation.
#[test]
fn zoo_inception_v1_memory_plan() {
    let Some(path) = model_file("zoo/inception_v1.onnx") else {
        return;
    };
    let graph = kestrel_onnx::import_file(&path).expect("import");
    let (optimized, _) = kestrel_optimizer::optimize(&graph).expect("optimize");
    let concats = optimized
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Concat { .. }))
        .count();
    let session = Session::new(optimized).expect("session");
    let plan = session.memory_plan(&[&[1, 3, 224, 224]]).expect("plan");
    assert_eq!(concats, 9);
    assert_eq!(plan.concats_in_place(), 9);
    assert_eq!(plan.slices_in_place(), 18);
    assert!(plan.arena_bytes() * 3 < plan.separate_bytes());
}

/// Conv + ReLU + MaxPool becomes one conv wherever the pool reads the ReLU alone (a pool after
/// an LRN or a Concat stays), and no zoo model has a constant Mul/Add after a conv.
#[test]
fn zoo_conv_relu_max_pool_fusions() {
    for (model, pools) in [
        ("zoo/inception_v1.onnx", 1),
        ("zoo/resnet50.onnx", 1),
        ("zoo/bvlc_alexnet.onnx", 1),
        ("zoo/zfnet512.onnx", 1),
        ("zoo/vgg19.onnx", 5),
        ("zoo/squeezenet.onnx", 1),
        ("torchvision/googlenet.onnx", 2),
        ("torchvision/resnet18.onnx", 1),
        ("torchvision/resnet50.onnx", 1),
    ] {
        let fused = |op: &Op| matches!(op, Op::Conv(c) if c.epilogue.pool.is_some());
        let Some((fused, report)) = count_after_optimizing(model, fused) else {
            continue;
        };
        assert_eq!(report.count("fuse-max-pool"), pools, "{model}: {report}");
        assert_eq!(fused, pools, "{model}: {report}");
        assert_eq!(report.count("fold-mul-add"), 0, "{model}: {report}");
    }
}

/// The same input gives bitwise the same output, run after run, optimized or not.
#[test]
fn runs_are_bitwise_repeatable() {
    let path = repo_root().join("models/synthetic/googlenet_tiny.onnx");
    let Some(path) = required_file(path, "it is committed") else {
        return;
    };
    let graph = kestrel_onnx::import_file(&path).expect("import");
    let (optimized, _) = kestrel_optimizer::optimize(&graph).expect("optimize");
    let input = random_tensor(&[2, 3, 96, 96], 11);
    for g in [graph, optimized] {
        let session = Session::new(g).expect("session");
        let first = session.run(vec![input.clone()]).expect("run");
        for _ in 0..3 {
            let again = session.run(vec![input.clone()]).expect("run");
            for (a, b) in first.iter().zip(&again) {
                let same = a
                    .data()
                    .iter()
                    .zip(b.data())
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "two runs on the same input differ");
            }
        }
    }
}

/// Splitting the work across threads changes no bit of the output: each thread computes whole
/// output channels with the same sequence of operations a single thread would.
#[test]
fn thread_count_does_not_change_a_bit() {
    let Some(path) = model_file("zoo/inception_v1.onnx") else {
        return;
    };
    let graph = kestrel_onnx::import_file(&path).expect("import");
    let (optimized, _) = kestrel_optimizer::optimize(&graph).expect("optimize");
    let input = random_tensor(&[1, 3, 224, 224], 5);
    let run = |threads: usize| {
        let session = Session::with_threads(optimized.clone(), threads).expect("session");
        assert_eq!(session.threads(), threads);
        session.run(vec![input.clone()]).expect("run")
    };
    let single = run(1);
    for threads in [2, 3] {
        for (a, b) in single.iter().zip(&run(threads)) {
            let same = a
                .data()
                .iter()
                .zip(b.data())
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{threads} threads differ from 1 thread");
        }
    }
}
