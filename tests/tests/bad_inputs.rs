//! Kinds of bad input not covered elsewhere (see docs/bad-inputs.md for the whole table):
//! ONNX tensors whose declared size does not match their data, external data that leaves the
//! model's folder, and numerics at the edges (huge pooled maps, 1x1 inputs, kernels larger
//! than their input).

use std::path::{Path, PathBuf};

use kestrel_graph::{Dim, Tensor};
use kestrel_runtime::Session;
use kestrel_tests::onnx_builder::{attr_ints, ModelBuilder};
use kestrel_tests::random_tensor;
use prost::Message;
use tract_onnx::pb::{ModelProto, StringStringEntryProto, TensorProto};

const FLOAT: i32 = 1;

/// A scratch folder unique to one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kestrel-bad-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `y = x + B` with `B` of shape [4]: the smallest model with one weight tensor.
fn add_model() -> ModelProto {
    ModelBuilder::new(13)
        .input_fixed("x", &[1, 4])
        .weights("B", &[4], vec![1.0, 2.0, 3.0, 4.0])
        .output("y")
        .node("Add", "add", &["x", "B"], &["y"], vec![])
        .build()
}

/// The model with its weight tensor replaced by `tensor`.
fn with_weight(tensor: TensorProto) -> Vec<u8> {
    let mut model = add_model();
    model.graph.as_mut().unwrap().initializer[0] = tensor;
    model.encode_to_vec()
}

fn weight(dims: &[i64]) -> TensorProto {
    TensorProto {
        name: "B".into(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        ..Default::default()
    }
}

/// The weight stored externally at `location`, `length` bytes if given.
fn external(location: &str, length: Option<u64>) -> TensorProto {
    let mut entries = vec![StringStringEntryProto {
        key: "location".into(),
        value: location.into(),
    }];
    if let Some(length) = length {
        entries.push(StringStringEntryProto {
            key: "length".into(),
            value: length.to_string(),
        });
    }
    TensorProto {
        external_data: entries,
        data_location: Some(1),
        ..weight(&[4])
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes `bytes` as `model.onnx` in `dir` and imports it; the error as one line.
fn import_in(dir: &Path, bytes: &[u8]) -> Result<kestrel_graph::Graph, String> {
    let path = dir.join("model.onnx");
    std::fs::write(&path, bytes).unwrap();
    kestrel_onnx::import_file(&path).map_err(|e| {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        msg
    })
}

fn run_add(graph: kestrel_graph::Graph) -> Vec<f32> {
    let x = Tensor::new(vec![1, 4], vec![10.0; 4]).unwrap();
    Session::new(graph).unwrap().run(vec![x]).unwrap()[0]
        .data()
        .to_vec()
}

#[test]
fn external_data_next_to_the_model_loads() {
    let dir = scratch("external-ok");
    std::fs::create_dir_all(dir.join("weights")).unwrap();
    std::fs::write(dir.join("weights/b.bin"), f32_bytes(&[1.0, 2.0, 3.0, 4.0])).unwrap();
    let graph = import_in(&dir, &with_weight(external("weights/b.bin", Some(16)))).unwrap();
    assert_eq!(run_add(graph), [11.0, 12.0, 13.0, 14.0]);
}

#[test]
fn external_data_with_an_absolute_path_is_refused() {
    let dir = scratch("external-absolute");
    let outside = scratch("external-absolute-target").join("b.bin");
    std::fs::write(&outside, f32_bytes(&[1.0; 4])).unwrap();
    let err = import_in(
        &dir,
        &with_weight(external(outside.to_str().unwrap(), None)),
    )
    .unwrap_err();
    assert!(
        err.contains("leaves the model's folder") && err.contains("'B'"),
        "{err}"
    );
}

#[test]
fn external_data_with_dot_dot_is_refused() {
    let dir = scratch("external-dotdot");
    let inner = dir.join("model");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::write(dir.join("b.bin"), f32_bytes(&[1.0; 4])).unwrap();
    for location in ["../b.bin", "sub/../../b.bin", "./../b.bin"] {
        let err = import_in(&inner, &with_weight(external(location, None))).unwrap_err();
        assert!(
            err.contains("leaves the model's folder"),
            "{location}: {err}"
        );
    }
}

#[cfg(unix)]
#[test]
fn external_data_through_a_symlink_out_of_the_folder_is_refused() {
    let dir = scratch("external-symlink");
    let outside = scratch("external-symlink-target");
    std::fs::write(outside.join("b.bin"), f32_bytes(&[1.0; 4])).unwrap();
    std::os::unix::fs::symlink(outside.join("b.bin"), dir.join("b.bin")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("sub")).unwrap();
    for location in ["b.bin", "sub/b.bin"] {
        let err = import_in(&dir, &with_weight(external(location, None))).unwrap_err();
        assert!(
            err.contains("outside the model's folder"),
            "{location}: {err}"
        );
    }
    // A link that stays inside the folder is fine.
    std::fs::write(dir.join("real.bin"), f32_bytes(&[1.0, 2.0, 3.0, 4.0])).unwrap();
    std::os::unix::fs::symlink(dir.join("real.bin"), dir.join("alias.bin")).unwrap();
    let graph = import_in(&dir, &with_weight(external("alias.bin", None))).unwrap();
    assert_eq!(run_add(graph), [11.0, 12.0, 13.0, 14.0]);
}

#[test]
fn external_data_that_is_short_missing_or_not_a_file_is_refused() {
    let dir = scratch("external-short");
    std::fs::write(dir.join("short.bin"), f32_bytes(&[1.0; 3])).unwrap();
    let err = import_in(&dir, &with_weight(external("short.bin", None))).unwrap_err();
    assert!(
        err.contains("holds 12 bytes") && err.contains("needs 16"),
        "{err}"
    );
    let err = import_in(&dir, &with_weight(external("short.bin", Some(12)))).unwrap_err();
    assert!(err.contains("length 12"), "{err}");
    let err = import_in(&dir, &with_weight(external("absent.bin", None))).unwrap_err();
    assert!(err.contains("absent.bin"), "{err}");
    std::fs::create_dir_all(dir.join("folder.bin")).unwrap();
    let err = import_in(&dir, &with_weight(external("folder.bin", None))).unwrap_err();
    assert!(err.contains("not a regular file"), "{err}");
    // In memory there is no folder to read from.
    let err = kestrel_onnx::import_bytes(&with_weight(external("short.bin", None)), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("folder"), "{err}");
}

/// A tensor declaring 2^42 floats (16 TiB) is refused from its header, whatever data follows
/// and wherever it says the data is, before anything that size is allocated.
#[test]
fn tensor_declaring_16_tib_is_refused_before_allocation() {
    let dims = [1 << 20, 1 << 22];
    let raw = TensorProto {
        raw_data: vec![0; 64],
        ..weight(&dims)
    };
    let typed = TensorProto {
        float_data: vec![0.0; 16],
        ..weight(&dims)
    };
    let dir = scratch("huge");
    std::fs::write(dir.join("b.bin"), [0u8; 64]).unwrap();
    let mut ext = external("b.bin", None);
    ext.dims = dims.to_vec();
    for (what, tensor) in [("raw", raw), ("typed", typed), ("external", ext)] {
        let err = import_in(&dir, &with_weight(tensor)).unwrap_err();
        // 2^44 bytes, or 2^42 values for data stored as a list of floats.
        let sized = err.contains("17592186044416") || err.contains("4398046511104");
        assert!(err.contains("'B'") && sized, "{what}: {err}");
    }
    // A shape whose element count overflows usize is refused as such.
    let err = import_in(&dir, &with_weight(weight(&[1 << 40, 1 << 40]))).unwrap_err();
    assert!(err.contains("overflows"), "{err}");
}

#[test]
fn shape_larger_than_its_data_is_refused() {
    let raw = TensorProto {
        raw_data: f32_bytes(&[1.0; 3]),
        ..weight(&[4])
    };
    let err = kestrel_onnx::import_bytes(&with_weight(raw), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'B'") && err.contains("16 bytes") && err.contains("12"),
        "{err}"
    );
    let typed = TensorProto {
        float_data: vec![1.0; 3],
        ..weight(&[4])
    };
    let err = kestrel_onnx::import_bytes(&with_weight(typed), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("needs 4 values") && err.contains("holds 3"),
        "{err}"
    );
    // More data than the shape is just as wrong.
    let long = TensorProto {
        float_data: vec![1.0; 5],
        ..weight(&[4])
    };
    assert!(kestrel_onnx::import_bytes(&with_weight(long), None).is_err());
}

#[test]
fn negative_dimension_is_refused() {
    let t = TensorProto {
        float_data: vec![1.0; 4],
        ..weight(&[-4])
    };
    let err = kestrel_onnx::import_bytes(&with_weight(t), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("negative dimension -4"), "{err}");
}

/// A file larger than any protobuf can be is refused from its size, without reading it.
#[test]
fn model_file_over_2_gib_is_refused_unread() {
    let dir = scratch("huge-file");
    let path = dir.join("model.onnx");
    let file = std::fs::File::create(&path).unwrap();
    // Sparse: no disk space is used.
    file.set_len((2 << 30) + 1).unwrap();
    let err = kestrel_onnx::import_file(&path).unwrap_err().to_string();
    assert!(err.contains("larger than any valid ONNX"), "{err}");
    std::fs::remove_file(&path).unwrap();
}

/// `GlobalAveragePool` over a 4096x4096 map of values whose f32 running sum would drift:
/// the result matches the f64 mean to f32 rounding.
#[test]
fn global_average_pool_over_a_huge_map_keeps_its_precision() {
    let side = 4096;
    let bytes = ModelBuilder::new(13)
        .input_fixed("x", &[1, 2, side, side])
        .output("y")
        .node("GlobalAveragePool", "gap", &["x"], &["y"], vec![])
        .bytes();
    let graph = kestrel_onnx::import_bytes(&bytes, None).unwrap();
    let n = side * side;
    // Channel 0: 1 + tiny noise, whose f32 running sum stalls at 2^24. Channel 1: large values
    // of both signs that nearly cancel.
    let data: Vec<f32> = (0..2 * n)
        .map(|i| {
            if i < n {
                1.0 + ((i % 97) as f32) * 1e-6
            } else if i % 2 == 0 {
                1.0e6 + (i % 13) as f32
            } else {
                -1.0e6
            }
        })
        .collect();
    let want: Vec<f64> = data
        .chunks(n)
        .map(|c| c.iter().map(|&v| v as f64).sum::<f64>() / n as f64)
        .collect();
    let x = Tensor::new(vec![1, 2, side, side], data).unwrap();
    let got = Session::new(graph).unwrap().run(vec![x]).unwrap();
    for (c, (&g, &w)) in got[0].data().iter().zip(&want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= w.abs() * 1e-6 + 1e-6,
            "channel {c}: got {g}, f64 mean {w}"
        );
    }
}

/// conv -> maxpool -> global pool on a 1x1 image: every window is clipped to the one pixel.
#[test]
fn one_by_one_spatial_input_runs() {
    let bytes = ModelBuilder::new(13)
        .input(
            "x",
            &[
                Dim::Free("N".into()),
                Dim::Fixed(3),
                Dim::Fixed(1),
                Dim::Fixed(1),
            ],
        )
        .weights(
            "W",
            &[2, 3, 3, 3],
            random_tensor(&[2, 3, 3, 3], 7).into_data(),
        )
        .output("y")
        .node(
            "Conv",
            "conv",
            &["x", "W"],
            &["c"],
            vec![attr_ints("pads", &[1, 1, 1, 1])],
        )
        .node(
            "MaxPool",
            "pool",
            &["c"],
            &["p"],
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("pads", &[1, 1, 1, 1]),
            ],
        )
        .node("GlobalAveragePool", "gap", &["p"], &["y"], vec![])
        .bytes();
    let graph = kestrel_onnx::import_bytes(&bytes, None).unwrap();
    let (graph, _) = kestrel_optimizer::optimize(&graph).unwrap();
    let w = random_tensor(&[2, 3, 3, 3], 7);
    let x = Tensor::new(vec![1, 3, 1, 1], vec![0.5, -1.0, 2.0]).unwrap();
    let got = Session::new(graph).unwrap().run(vec![x.clone()]).unwrap();
    assert_eq!(got[0].shape(), [1, 2, 1, 1]);
    // Only the kernel's centre tap meets the pixel.
    for o in 0..2 {
        let want: f32 = (0..3)
            .map(|c| w.data()[o * 27 + c * 9 + 4] * x.data()[c])
            .sum();
        assert!((got[0].data()[o] - want).abs() < 1e-5, "channel {o}");
    }
}

/// A 5x5 kernel on a 3x3 input has no valid position: refused when the session is built,
/// naming the node and both sizes; with enough padding the same kernel runs.
#[test]
fn kernel_larger_than_the_input() {
    let model = |pads: &[i64]| {
        ModelBuilder::new(13)
            .input_fixed("x", &[1, 1, 3, 3])
            .weights("W", &[1, 1, 5, 5], vec![1.0; 25])
            .output("y")
            .node(
                "Conv",
                "big_conv",
                &["x", "W"],
                &["y"],
                vec![attr_ints("pads", pads)],
            )
            .bytes()
    };
    let refused = kestrel_onnx::import_bytes(&model(&[0, 0, 0, 0]), None)
        .map_err(|e| e.to_string())
        .and_then(|g| Session::new(g).map_err(|e| e.to_string()));
    let err = refused.unwrap_err();
    assert!(err.contains("big_conv"), "{err}");
    assert!(!err.contains('\n'), "{err}");

    let pool = ModelBuilder::new(13)
        .input_fixed("x", &[1, 1, 3, 3])
        .output("y")
        .node(
            "MaxPool",
            "big_pool",
            &["x"],
            &["y"],
            vec![attr_ints("kernel_shape", &[4, 4])],
        )
        .bytes();
    let err = kestrel_onnx::import_bytes(&pool, None)
        .map_err(|e| e.to_string())
        .and_then(|g| Session::new(g).map_err(|e| e.to_string()))
        .unwrap_err();
    assert!(err.contains("big_pool"), "{err}");

    let graph = kestrel_onnx::import_bytes(&model(&[1, 1, 1, 1]), None).unwrap();
    let x = Tensor::new(vec![1, 1, 3, 3], vec![1.0; 9]).unwrap();
    let got = Session::new(graph).unwrap().run(vec![x]).unwrap();
    // One output position; the 5x5 window covers the whole image.
    assert_eq!(got[0].shape(), [1, 1, 1, 1]);
    assert_eq!(got[0].data(), [9.0]);
}

/// A graph built for 8x8 inputs refuses a 224x224 tensor, naming the input and both shapes;
/// a symbolic spatial size is refused at import only if the graph needs it fixed.
#[test]
fn input_of_another_size_than_the_model_was_built_for_is_named() {
    let bytes = ModelBuilder::new(13)
        .input_fixed("image", &[1, 3, 8, 8])
        .output("y")
        .node("GlobalAveragePool", "gap", &["image"], &["y"], vec![])
        .bytes();
    let graph = kestrel_onnx::import_bytes(&bytes, None).unwrap();
    let session = Session::new(graph).unwrap();
    let err = session
        .run(vec![Tensor::zeros(vec![1, 3, 224, 224])])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("image") && err.contains("224") && err.contains('8'),
        "{err}"
    );
}
