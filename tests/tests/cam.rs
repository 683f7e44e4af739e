//! Class Activation Maps: which classifier tails are recognised, which are refused and why, and
//! the CAM identity `mean(M_c) + b_c = logit_c`, which ties the map to the network's own output.

use kestrel_explain::{find_cam_tail, CamBox, CamError, Explainer, Heatmap};
use kestrel_graph::Dim;
use kestrel_runtime::Session;
use kestrel_tests::onnx_builder::{attr_float, attr_int, attr_ints, ModelBuilder};
use kestrel_tests::{model_file, random_tensor, uniform_tensor};

const CHANNELS: usize = 6;
const CLASSES: usize = 4;

/// `x [N, 3, 7, 5] -> Conv 3x3 pad 1 -> Relu` named `feat`, the body every test graph shares.
fn body() -> ModelBuilder {
    ModelBuilder::new(13)
        .input(
            "x",
            &[
                Dim::Free("N".into()),
                Dim::Fixed(3),
                Dim::Fixed(7),
                Dim::Fixed(5),
            ],
        )
        .weights(
            "conv_w",
            &[CHANNELS, 3, 3, 3],
            random_tensor(&[CHANNELS, 3, 3, 3], 1).into_data(),
        )
        .weights(
            "conv_b",
            &[CHANNELS],
            random_tensor(&[CHANNELS], 2).into_data(),
        )
        .weights(
            "fc_w",
            &[CLASSES, CHANNELS],
            random_tensor(&[CLASSES, CHANNELS], 3).into_data(),
        )
        .weights(
            "fc_wt",
            &[CHANNELS, CLASSES],
            random_tensor(&[CHANNELS, CLASSES], 4).into_data(),
        )
        .weights("fc_b", &[CLASSES], random_tensor(&[CLASSES], 5).into_data())
        .node(
            "Conv",
            "conv",
            &["x", "conv_w", "conv_b"],
            &["c"],
            vec![attr_ints("pads", &[1, 1, 1, 1])],
        )
        .node("Relu", "relu", &["c"], &["feat"], vec![])
}

fn explainer(bytes: &[u8]) -> Result<Explainer, CamError> {
    let graph = kestrel_onnx::import_bytes(bytes, None).expect("test graph imports");
    Explainer::new(Session::new(graph).expect("session"))
}

fn not_applicable(bytes: &[u8]) -> String {
    match explainer(bytes) {
        Err(e @ CamError::NotApplicable { .. }) => e.to_string(),
        Err(e) => panic!("expected a not-applicable error, got: {e}"),
        Ok(_) => panic!("expected CAM to be refused"),
    }
}

/// For every image and class: the map has the feature map's size, and its mean plus the class
/// bias is the logit the network computed.
fn assert_cam_identity(bytes: &[u8], batch: usize) {
    let explainer = explainer(bytes).expect("CAM applies");
    let tail = explainer.tail();
    assert_eq!((tail.channels, tail.classes), (CHANNELS, CLASSES));
    assert_eq!(tail.feature_size, (7, 5));
    let input = uniform_tensor(&[batch, 3, 7, 5], 9, -1.0, 1.0);
    let run = explainer.run(input).expect("run");
    assert_eq!(run.images(), batch);
    assert_eq!(run.logits.shape(), [batch, CLASSES]);
    for image in 0..batch {
        for class in 0..CLASSES {
            let map = run.map(tail, image, class).expect("map");
            assert_eq!((map.width, map.height), (5, 7));
            let logit = run.logits.data()[image * CLASSES + class];
            let rebuilt = map.mean() + tail.bias[class];
            assert!(
                (rebuilt - logit).abs() <= 1e-5 * logit.abs().max(1.0),
                "image {image} class {class}: mean(map) + bias = {rebuilt}, logit {logit}"
            );
        }
    }
    assert!(matches!(
        run.map(tail, 0, CLASSES),
        Err(CamError::BadClass {
            class: CLASSES,
            classes: CLASSES
        })
    ));
    assert!(matches!(
        run.map(tail, batch, 0),
        Err(CamError::BadImage { .. })
    ));
}

#[test]
fn gap_flatten_gemm_softmax() {
    let bytes = body()
        .output("prob")
        .node("GlobalAveragePool", "gap", &["feat"], &["g"], vec![])
        .node(
            "Flatten",
            "flatten",
            &["g"],
            &["f"],
            vec![attr_int("axis", 1)],
        )
        .node(
            "Gemm",
            "fc",
            &["f", "fc_w", "fc_b"],
            &["logits"],
            vec![attr_int("transB", 1)],
        )
        .node(
            "Softmax",
            "softmax",
            &["logits"],
            &["prob"],
            vec![attr_int("axis", 1)],
        )
        .bytes();
    assert_cam_identity(&bytes, 3);
}

/// Gemm with B stored `[K, classes]` (transB = 0) and alpha, beta other than 1: both are folded
/// into the tail's weights and bias.
#[test]
fn whole_map_average_pool_then_gemm_with_alpha_and_beta() {
    let bytes = body()
        .output("logits")
        .node(
            "AveragePool",
            "pool",
            &["feat"],
            &["g"],
            vec![attr_ints("kernel_shape", &[7, 5])],
        )
        .node("Reshape", "reshape", &["g", "shape"], &["f"], vec![])
        .ints("shape", &[-1, CHANNELS as i64])
        .node(
            "Gemm",
            "fc",
            &["f", "fc_wt", "fc_b"],
            &["logits"],
            vec![attr_float("alpha", 0.5), attr_float("beta", 2.0)],
        )
        .bytes();
    assert_cam_identity(&bytes, 2);
}

/// The TensorFlow-style head: a spatial mean, then MatMul by `[K, classes]` and Add of a bias.
#[test]
fn reduce_mean_squeeze_matmul_add() {
    // Opset 13: ReduceMean takes its axes as an attribute, Squeeze as an input.
    let bytes = body()
        .output("logits")
        .node(
            "ReduceMean",
            "mean",
            &["feat"],
            &["g"],
            vec![attr_ints("axes", &[2, 3]), attr_int("keepdims", 1)],
        )
        .node("Squeeze", "squeeze", &["g", "axes"], &["f"], vec![])
        .ints("axes", &[2, 3])
        .node("MatMul", "fc", &["f", "fc_wt"], &["mm"], vec![])
        .node("Add", "bias", &["mm", "fc_b"], &["logits"], vec![])
        .bytes();
    assert_cam_identity(&bytes, 2);
}

/// AlexNet and VGG flatten the whole feature map into the classifier: no global pool.
#[test]
fn flatten_without_pool_is_refused() {
    let bytes = body()
        .weights(
            "big_w",
            &[CLASSES, CHANNELS * 35],
            random_tensor(&[CLASSES, CHANNELS * 35], 6).into_data(),
        )
        .output("logits")
        .node(
            "Flatten",
            "flatten",
            &["feat"],
            &["f"],
            vec![attr_int("axis", 1)],
        )
        .node(
            "Gemm",
            "fc",
            &["f", "big_w", "fc_b"],
            &["logits"],
            vec![attr_int("transB", 1)],
        )
        .bytes();
    let msg = not_applicable(&bytes);
    assert!(
        msg.contains("Gemm 'fc'") && msg.contains("not a global average pool"),
        "{msg}"
    );
}

#[test]
fn pool_that_does_not_cover_the_map_is_refused() {
    let bytes = body()
        .weights(
            "w2",
            &[CLASSES, CHANNELS * 2],
            random_tensor(&[CLASSES, CHANNELS * 2], 7).into_data(),
        )
        .output("logits")
        .node(
            "AveragePool",
            "pool",
            &["feat"],
            &["g"],
            vec![
                attr_ints("kernel_shape", &[4, 5]),
                attr_ints("strides", &[3, 1]),
            ],
        )
        .node(
            "Flatten",
            "flatten",
            &["g"],
            &["f"],
            vec![attr_int("axis", 1)],
        )
        .node(
            "Gemm",
            "fc",
            &["f", "w2", "fc_b"],
            &["logits"],
            vec![attr_int("transB", 1)],
        )
        .bytes();
    let msg = not_applicable(&bytes);
    assert!(msg.contains("AveragePool 'pool'"), "{msg}");
}

/// Two fully connected layers: the map of the last one is not a sum over feature channels.
#[test]
fn two_fully_connected_layers_are_refused() {
    let bytes = body()
        .weights(
            "fc2_w",
            &[CLASSES, CLASSES],
            random_tensor(&[CLASSES, CLASSES], 8).into_data(),
        )
        .output("logits")
        .node("GlobalAveragePool", "gap", &["feat"], &["g"], vec![])
        .node(
            "Flatten",
            "flatten",
            &["g"],
            &["f"],
            vec![attr_int("axis", 1)],
        )
        .node(
            "Gemm",
            "fc1",
            &["f", "fc_w", "fc_b"],
            &["h"],
            vec![attr_int("transB", 1)],
        )
        .node("Relu", "relu2", &["h"], &["hr"], vec![])
        .node(
            "Gemm",
            "fc2",
            &["hr", "fc2_w"],
            &["logits"],
            vec![attr_int("transB", 1)],
        )
        .bytes();
    let msg = not_applicable(&bytes);
    assert!(
        msg.contains("Gemm 'fc2'") && msg.contains("Relu 'relu2'"),
        "{msg}"
    );
}

/// SqueezeNet ends in a conv, a global pool and a softmax: no fully connected layer.
#[test]
fn global_pool_without_fully_connected_layer_is_refused() {
    let bytes = body()
        .output("prob")
        .node("GlobalAveragePool", "gap", &["feat"], &["g"], vec![])
        .node(
            "Softmax",
            "softmax",
            &["g"],
            &["prob"],
            vec![attr_int("axis", 1)],
        )
        .bytes();
    let msg = not_applicable(&bytes);
    assert!(msg.contains("no fully connected layer follows"), "{msg}");
}

#[test]
fn fully_connected_layer_by_computed_weights_is_refused() {
    let bytes = body()
        .input_fixed("w", &[CHANNELS, CLASSES])
        .output("logits")
        .node("GlobalAveragePool", "gap", &["feat"], &["g"], vec![])
        .node(
            "Flatten",
            "flatten",
            &["g"],
            &["f"],
            vec![attr_int("axis", 1)],
        )
        .node("MatMul", "fc", &["f", "w"], &["logits"], vec![])
        .bytes();
    let msg = not_applicable(&bytes);
    assert!(msg.contains("not constant weights"), "{msg}");
}

/// The classic nets as users bring them: GoogLeNet and ResNet-50 have the tail; AlexNet, VGG and
/// SqueezeNet do not. The zoo GoogLeNet's stride-2 max pools have neither padding nor ceil mode,
/// so its last feature maps are 6x6, and its 7x7 average pool with bottom/right padding of 1
/// covers them in one window (padding excluded from the count): still a global average.
#[test]
fn zoo_models_tail_or_reason() {
    for (name, feature_size) in [
        ("inception_v1", Some((6, 6))),
        ("resnet50", Some((7, 7))),
        ("bvlc_alexnet", None),
        ("vgg19", None),
        ("squeezenet", None),
    ] {
        let Some(path) = model_file(&format!("zoo/{name}.onnx")) else {
            return;
        };
        let graph = kestrel_onnx::import_file(&path).expect("zoo model imports");
        match (find_cam_tail(&graph), feature_size) {
            (Ok(tail), Some(size)) => {
                assert_eq!(tail.classes, 1000, "{name}");
                assert_eq!(tail.feature_size, size, "{name}");
            }
            (Err(CamError::NotApplicable { reason }), None) => {
                eprintln!("{name}: {reason}");
                assert!(!reason.is_empty());
            }
            (Ok(_), None) => panic!("{name}: CAM tail found where there is none"),
            (Err(e), _) => panic!("{name}: {e}"),
        }
    }
}

fn map(width: usize, height: usize, rows: &[&[f32]]) -> Heatmap {
    Heatmap::new(width, height, rows.concat()).expect("width x height values")
}

#[test]
fn box_surrounds_the_largest_region_above_20_percent() {
    // Two regions pass 0.2 * 10 = 2: a single hot pixel and a larger, cooler blob, joined to
    // nothing. The box goes around the larger one, with exclusive ends.
    let m = map(
        6,
        4,
        &[
            &[10.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            &[0.0, 0.0, 0.0, 3.0, 2.0, 0.0],
            &[0.0, 0.0, 0.0, 2.5, 1.9, 2.0],
            &[0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ],
    );
    assert_eq!(
        m.bounding_box(0.2),
        Some(CamBox {
            x0: 3.0,
            y0: 1.0,
            x1: 6.0,
            y1: 3.0
        })
    );
    // Diagonal neighbours connect (8-connectivity): with the hot pixel joined to the blob by a
    // diagonal chain, everything is one region.
    let m = map(
        4,
        4,
        &[
            &[10.0, 0.0, 0.0, 0.0],
            &[0.0, 5.0, 0.0, 0.0],
            &[0.0, 0.0, 5.0, 5.0],
            &[0.0, 0.0, 5.0, 5.0],
        ],
    );
    assert_eq!(
        m.bounding_box(0.2),
        Some(CamBox {
            x0: 0.0,
            y0: 0.0,
            x1: 4.0,
            y1: 4.0
        })
    );
}

#[test]
fn box_of_degenerate_maps() {
    // A map whose maximum is negative has no pixel above a fraction of it.
    assert_eq!(map(2, 1, &[&[-1.0, -2.0]]).bounding_box(0.2), None);
    // A NaN anywhere leaves the map without a box rather than a wrong one.
    assert_eq!(map(2, 1, &[&[f32::NAN, 2.0]]).bounding_box(0.2), None);
    // A flat map is all object.
    assert_eq!(
        map(3, 2, &[&[0.0; 3], &[0.0; 3]]).bounding_box(0.2),
        Some(CamBox {
            x0: 0.0,
            y0: 0.0,
            x1: 3.0,
            y1: 2.0
        })
    );
    // Infinite values do not break the walk.
    assert!(map(2, 1, &[&[f32::INFINITY, 1.0]])
        .bounding_box(0.2)
        .is_some());
}

#[test]
fn upsampling_keeps_constant_and_linear_maps() {
    let flat = map(3, 2, &[&[4.0; 3], &[4.0; 3]]).upsample(13, 9);
    assert_eq!((flat.width, flat.height), (13, 9));
    assert!(flat.data.iter().all(|&v| (v - 4.0).abs() < 1e-6));

    // Same size: the identity.
    let m = map(3, 2, &[&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]]);
    assert_eq!(m.upsample(3, 2), m);

    // 2x along a ramp: half-pixel centres give 1, 1.25, 1.75, 2.25, 2.75, 3 (edges clamp).
    let up = map(3, 1, &[&[1.0, 2.0, 3.0]]).upsample(6, 1);
    let want = [1.0, 1.25, 1.75, 2.25, 2.75, 3.0];
    for (got, want) in up.data.iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "{:?}", up.data);
    }
}
