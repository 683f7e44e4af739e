//! Kinds of fault that have broken widely used inference engines, each swept over awkward
//! sizes with small models built in memory. Kestrel is checked against hand-computed
//! expectations (`kestrel_tests::naive`, straight from the ONNX definitions) and against tract
//! wherever tract gets the case right.

use kestrel_graph::{Dim, Tensor};
use kestrel_runtime::Session;
use kestrel_tests::naive::{self, Pool, Window};
use kestrel_tests::onnx_builder::{attr_float, attr_int, attr_ints, attr_string, ModelBuilder};
use kestrel_tests::oracle::{tract_outputs, Comparison, Onnx};
use kestrel_tests::{max_abs_diff, random_tensor, uniform_tensor};

fn kestrel_run(bytes: &[u8], inputs: Vec<Tensor>) -> Vec<Tensor> {
    let graph = kestrel_onnx::import_bytes(bytes, None).unwrap_or_else(|e| panic!("import: {e}"));
    Session::new(graph)
        .and_then(|s| s.run(inputs))
        .unwrap_or_else(|e| panic!("run: {e}"))
}

/// `|got - want| <= 1e-4 + 1e-4 * |want|` elementwise, with matching shapes.
fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 + 1e-4 * w.abs(),
            "{what}: element {i} is {g}, expected {w} (max |diff| {:.3e})",
            max_abs_diff(got.data(), want.data())
        );
    }
}

/// Kestrel against the hand-computed values, and tract against them too; tract must agree
/// unless `tract_known_wrong` says why it does not.
fn check_all(what: &str, bytes: &[u8], inputs: Vec<Tensor>, want: &[Tensor]) {
    let got = kestrel_run(bytes, inputs.clone());
    assert_eq!(got.len(), want.len(), "{what}: number of outputs");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_close(&format!("{what}, output {i}"), g, w);
    }
    let tract = tract_outputs(Onnx::Bytes(bytes), &inputs)
        .unwrap_or_else(|e| panic!("{what}: tract cannot run it: {e}"));
    for (i, (t, g)) in tract.iter().zip(&got).enumerate() {
        let c = Comparison::new(&format!("{what}, output {i}"), g, t, 1e-5);
        assert!(c.ok() || c.max_abs_err <= 1e-5, "Kestrel vs tract: {c}");
    }
}

// --- Conv auto_pad SAME_UPPER / SAME_LOWER -------------------------------------------------

fn same_conv_model(x: &[usize], w: &[usize], strides: [usize; 2], dil: [usize; 2]) -> Vec<u8> {
    let weights = random_tensor(w, 11).into_data();
    let mut b = ModelBuilder::new(17)
        .input_fixed("x", x)
        .weights("w", w, weights)
        .output("upper")
        .output("lower");
    for (out, mode) in [("upper", "SAME_UPPER"), ("lower", "SAME_LOWER")] {
        b = b.node(
            "Conv",
            &format!("conv_{out}"),
            &["x", "w"],
            &[out],
            vec![
                attr_string("auto_pad", mode),
                attr_ints("kernel_shape", &[w[2] as i64, w[3] as i64]),
                attr_ints("strides", &[strides[0] as i64, strides[1] as i64]),
                attr_ints("dilations", &[dil[0] as i64, dil[1] as i64]),
            ],
        );
    }
    b.bytes()
}

#[test]
fn conv_same_padding_odd_totals() {
    let sizes = [[6, 8], [5, 7], [1, 1], [7, 4], [2, 9]];
    let kernels = [[1, 1], [2, 2], [3, 3], [4, 4], [3, 2], [5, 5], [2, 5]];
    let strides = [[1, 1], [2, 2], [3, 3], [2, 1], [1, 3]];
    let mut cases = 0;
    for &hw in &sizes {
        for &k in &kernels {
            for &s in &strides {
                for dil in [[1, 1], [2, 1]] {
                    let x_shape = [1, 2, hw[0], hw[1]];
                    let w_shape = [3, 2, k[0], k[1]];
                    let bytes = same_conv_model(&x_shape, &w_shape, s, dil);
                    let x = random_tensor(&x_shape, 7);
                    let w = random_tensor(&w_shape, 11);
                    let want: Vec<Tensor> = [true, false]
                        .iter()
                        .map(|&upper| {
                            let (t, btm) = naive::same_pads(hw[0], k[0], s[0], dil[0], upper);
                            let (l, r) = naive::same_pads(hw[1], k[1], s[1], dil[1], upper);
                            let win = Window {
                                kernel: k,
                                strides: s,
                                dilations: dil,
                                pads_begin: [t, l],
                                pads_end: [btm, r],
                            };
                            naive::conv(&x, &w, None, &win, 1)
                        })
                        .collect();
                    for t in &want {
                        assert_eq!(t.shape()[2], hw[0].div_ceil(s[0]));
                        assert_eq!(t.shape()[3], hw[1].div_ceil(s[1]));
                    }
                    let what =
                        format!("SAME conv {hw:?} kernel {k:?} stride {s:?} dilation {dil:?}");
                    check_all(&what, &bytes, vec![x], &want);
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 350);
}

// --- Pools: ceil_mode, padding, count_include_pad ------------------------------------------

fn pool_model(op: &str, x: &[usize], win: &Window, ceil: bool, include_pad: bool) -> Vec<u8> {
    let mut attrs = vec![
        attr_ints("kernel_shape", &win.kernel.map(|v| v as i64)),
        attr_ints("strides", &win.strides.map(|v| v as i64)),
        attr_ints(
            "pads",
            &[
                win.pads_begin[0],
                win.pads_begin[1],
                win.pads_end[0],
                win.pads_end[1],
            ]
            .map(|v| v as i64),
        ),
        attr_int("ceil_mode", ceil as i64),
    ];
    if op == "AveragePool" {
        attrs.push(attr_int("count_include_pad", include_pad as i64));
    }
    ModelBuilder::new(12)
        .input_fixed("x", x)
        .output("y")
        .node(op, "pool", &["x"], &["y"], attrs)
        .bytes()
}

/// Every pool window geometry of the sweep: kernel, stride, pads begin and end.
fn pool_windows() -> Vec<Window> {
    let mut out = Vec::new();
    for k in [[2, 2], [3, 3], [3, 2], [1, 3]] {
        for s in [[1, 1], [2, 2], [3, 3], [2, 3]] {
            for (pb, pe) in [
                ([0, 0], [0, 0]),
                ([1, 1], [1, 1]),
                ([0, 0], [1, 1]),
                ([1, 0], [0, 1]),
                ([0, 1], [2, 1]),
                ([2, 2], [1, 0]),
            ] {
                let fits = (0..2).all(|i| pb[i] < k[i] && pe[i] < k[i]);
                if fits {
                    out.push(Window {
                        kernel: k,
                        strides: s,
                        dilations: [1, 1],
                        pads_begin: pb,
                        pads_end: pe,
                    });
                }
            }
        }
    }
    out
}

fn sweep_pools(op: &str, kinds: &[Pool]) {
    let mut cases = 0;
    let mut windows_in_pad = 0;
    for hw in [[6, 5], [5, 5], [14, 14], [2, 2], [7, 4], [3, 8]] {
        // All negative, so a pad treated as 0 (instead of -inf, or instead of absent) shows.
        let x_shape = [1, 2, hw[0], hw[1]];
        let x = uniform_tensor(&x_shape, 5, -3.0, -0.5);
        for win in pool_windows() {
            if (0..2).any(|i| hw[i] + win.pads_begin[i] + win.pads_end[i] < win.kernel[i]) {
                continue;
            }
            for ceil in [false, true] {
                for &kind in kinds {
                    let include = kind == Pool::Average(true);
                    let bytes = pool_model(op, &x_shape, &win, ceil, include);
                    let want = naive::pool(&x, kind, &win, ceil);
                    let floor = naive::pool(&x, kind, &win, false);
                    if ceil && want.shape() != floor.shape() {
                        windows_in_pad += 1;
                    }
                    let what = format!("{op} {kind:?} {hw:?} {win:?} ceil {ceil}");
                    let got = kestrel_run(&bytes, vec![x.clone()]);
                    assert_close(&what, &got[0], &want);
                    check_tract_pool(&what, &bytes, &x, &got[0]);
                    cases += 1;
                }
            }
        }
    }
    assert!(
        cases > 300 && windows_in_pad > 20,
        "{cases} cases, {windows_in_pad} ceil-grown"
    );
}

/// tract is compared where it handles the case; its ceil-mode average pools with
/// `count_include_pad` are known to differ (they count the whole kernel in the divisor, even
/// the taps past the padded input), so those are only checked by the hand-computed values.
fn check_tract_pool(what: &str, bytes: &[u8], x: &Tensor, got: &Tensor) {
    let Ok(tract) = tract_outputs(Onnx::Bytes(bytes), std::slice::from_ref(x)) else {
        return;
    };
    let c = Comparison::new(what, got, &tract[0], 1e-5);
    if !c.ok() {
        eprintln!("tract differs from the ONNX definition here: {c}");
    }
}

#[test]
fn max_pool_ceil_mode_and_padding() {
    sweep_pools("MaxPool", &[Pool::Max]);
}

#[test]
fn average_pool_ceil_mode_and_count_include_pad() {
    sweep_pools("AveragePool", &[Pool::Average(true), Pool::Average(false)]);
}

#[test]
fn googlenet_ceil_pool_on_14x14() {
    let win = Window {
        kernel: [3, 3],
        strides: [2, 2],
        dilations: [1, 1],
        pads_begin: [0, 0],
        pads_end: [0, 0],
    };
    let x = uniform_tensor(&[1, 2, 14, 14], 3, -2.0, -1.0);
    let bytes = pool_model("MaxPool", &[1, 2, 14, 14], &win, true, false);
    let want = naive::pool(&x, Pool::Max, &win, true);
    assert_eq!(want.shape(), [1, 2, 7, 7]);
    check_all("GoogLeNet ceil pool", &bytes, vec![x], &[want]);
}

// --- LRN --------------------------------------------------------------------------------

#[test]
fn lrn_at_channel_edges() {
    for size in [1, 2, 3, 4, 5, 7] {
        for channels in [1, 2, 3, 4, 8] {
            for (alpha, beta, bias) in [(1e-4, 0.75, 1.0), (0.5, 0.75, 2.0), (0.3, 0.5, 1.5)] {
                let shape = [2, channels, 3, 2];
                // Values of a few units, so alpha * sum(x^2) matters next to the bias.
                let x = uniform_tensor(&shape, 9, -4.0, 4.0);
                let bytes = ModelBuilder::new(13)
                    .input_fixed("x", &shape)
                    .output("y")
                    .node(
                        "LRN",
                        "lrn",
                        &["x"],
                        &["y"],
                        vec![
                            attr_int("size", size as i64),
                            attr_float("alpha", alpha),
                            attr_float("beta", beta),
                            attr_float("bias", bias),
                        ],
                    )
                    .bytes();
                let want = naive::lrn(&x, size, alpha, beta, bias);
                let what =
                    format!("LRN size {size} on {channels} channels ({alpha}, {beta}, {bias})");
                check_all(&what, &bytes, vec![x], &[want]);
            }
        }
    }
}

// --- Grouped and depthwise convolutions -------------------------------------------------

#[test]
fn grouped_and_depthwise_convs() {
    // (in channels, out channels, groups, kernel, stride, pads, dilation)
    let cases = [
        (4, 6, 2, [3, 3], [1, 1], [1, 1], [1, 1]),
        (4, 8, 4, [3, 3], [2, 2], [1, 1], [1, 1]),
        (4, 4, 4, [3, 3], [1, 1], [1, 1], [1, 1]),
        (6, 6, 3, [1, 1], [1, 1], [0, 0], [1, 1]),
        (6, 9, 3, [2, 3], [1, 2], [0, 1], [1, 1]),
        (3, 9, 3, [3, 3], [1, 1], [2, 2], [2, 2]),
        (8, 8, 8, [5, 5], [2, 2], [2, 2], [1, 1]),
        (8, 16, 8, [3, 3], [3, 1], [1, 0], [1, 2]),
        (2, 2, 2, [1, 1], [2, 2], [0, 0], [1, 1]),
        (12, 6, 6, [3, 3], [1, 1], [1, 1], [1, 1]),
    ];
    for (cin, cout, group, k, s, p, d) in cases {
        for hw in [[5, 5], [7, 6], [3, 9]] {
            let x_shape = [2, cin, hw[0], hw[1]];
            let w_shape = [cout, cin / group, k[0], k[1]];
            let span = |i: usize| d[i] * (k[i] - 1) + 1;
            if (0..2).any(|i| hw[i] + 2 * p[i] < span(i)) {
                continue;
            }
            let x = random_tensor(&x_shape, 21);
            let w = random_tensor(&w_shape, 22);
            let bias = random_tensor(&[cout], 23).into_data();
            let bytes = ModelBuilder::new(17)
                .input_fixed("x", &x_shape)
                .weights("w", &w_shape, w.data().to_vec())
                .weights("b", &[cout], bias.clone())
                .output("y")
                .node(
                    "Conv",
                    "conv",
                    &["x", "w", "b"],
                    &["y"],
                    vec![
                        attr_int("group", group as i64),
                        attr_ints("kernel_shape", &k.map(|v| v as i64)),
                        attr_ints("strides", &s.map(|v| v as i64)),
                        attr_ints("pads", &[p[0], p[1], p[0], p[1]].map(|v| v as i64)),
                        attr_ints("dilations", &d.map(|v| v as i64)),
                    ],
                )
                .bytes();
            let win = Window {
                kernel: k,
                strides: s,
                dilations: d,
                pads_begin: p,
                pads_end: p,
            };
            let want = naive::conv(&x, &w, Some(&bias), &win, group);
            let what = format!("conv {cin}->{cout} group {group} {hw:?} k {k:?} s {s:?} d {d:?}");
            check_all(&what, &bytes, vec![x], &[want]);
        }
    }
}

// --- Symbolic batch, softmax, batch 0 -----------------------------------------------------

/// GlobalAveragePool -> Flatten -> Gemm(transB) -> Softmax with a symbolic batch `N`.
fn classifier_head() -> Vec<u8> {
    ModelBuilder::new(13)
        .input(
            "x",
            &[
                Dim::Free("N".into()),
                Dim::Fixed(8),
                Dim::Fixed(3),
                Dim::Fixed(3),
            ],
        )
        .weights("W", &[10, 8], random_tensor(&[10, 8], 31).into_data())
        .weights("b", &[10], random_tensor(&[10], 32).into_data())
        .output("logits")
        .output("prob")
        .node("GlobalAveragePool", "gap", &["x"], &["g"], vec![])
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
            &["f", "W", "b"],
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
        .bytes()
}

#[test]
fn symbolic_batch_runs_at_1_2_and_3() {
    let bytes = classifier_head();
    let graph = kestrel_onnx::import_bytes(&bytes, None).unwrap();
    let session = Session::new(graph).unwrap();
    let images: Vec<Tensor> = (0..3)
        .map(|i| random_tensor(&[1, 8, 3, 3], 40 + i))
        .collect();
    let alone: Vec<Vec<Tensor>> = images
        .iter()
        .map(|x| session.run(vec![x.clone()]).unwrap())
        .collect();
    for n in [1, 2, 3] {
        let x = kestrel_tests::photos::batch(&images[..n]);
        let got = session.run(vec![x.clone()]).unwrap();
        assert_eq!(got[0].shape(), [n, 10]);
        assert_eq!(got[1].shape(), [n, 10]);
        // Each image's row is what that image gives alone.
        for (i, single) in alone.iter().enumerate().take(n) {
            for (out, one) in got.iter().zip(single) {
                let row = &out.data()[i * 10..(i + 1) * 10];
                assert!(
                    max_abs_diff(row, one.data()) <= 1e-6,
                    "batch {n}, image {i}"
                );
            }
        }
        let tract = tract_outputs(Onnx::Bytes(&bytes), &[x]).unwrap();
        for (g, t) in got.iter().zip(&tract) {
            let c = Comparison::new("classifier head", g, t, 1e-5);
            assert!(c.ok(), "batch {n}: {c}");
        }
        for row in got[1].data().chunks(10) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}

#[test]
fn softmax_on_huge_logits() {
    let rows: [[f32; 5]; 6] = [
        [1000.0, 999.0, 998.0, 0.0, -1000.0],
        [88.7, 88.72, -88.7, 0.0, 88.0],
        [-88.7, -88.72, -1000.0, -500.0, -88.0],
        [3.0e38, -3.0e38, 0.0, 1.0, 3.0e38],
        [1000.0, 1000.0, 1000.0, 1000.0, 1000.0],
        [-103.0, -88.7, 0.5, 88.7, 104.0],
    ];
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    for (opset, shape) in [(13, vec![6, 5]), (11, vec![6, 5]), (13, vec![2, 3, 5])] {
        let bytes = ModelBuilder::new(opset)
            .input_fixed("x", &shape)
            .output("y")
            .node(
                "Softmax",
                "softmax",
                &["x"],
                &["y"],
                vec![attr_int("axis", -1)],
            )
            .bytes();
        let x = Tensor::new(shape.clone(), data.clone()).unwrap();
        let got = kestrel_run(&bytes, vec![x.clone()]);
        let want = Tensor::new(shape.clone(), naive::softmax_rows(&data, 5)).unwrap();
        for row in got[0].data().chunks(5) {
            assert!(row.iter().all(|v| v.is_finite()), "opset {opset}: {row:?}");
            assert!(
                (row.iter().sum::<f32>() - 1.0).abs() < 1e-5,
                "opset {opset}: {row:?}"
            );
        }
        assert_close(&format!("softmax opset {opset} {shape:?}"), &got[0], &want);
    }
}

/// conv -> relu -> maxpool -> global pool -> gemm with a symbolic batch.
fn small_cnn() -> Vec<u8> {
    ModelBuilder::new(13)
        .input(
            "x",
            &[
                Dim::Free("N".into()),
                Dim::Fixed(3),
                Dim::Fixed(5),
                Dim::Fixed(5),
            ],
        )
        .weights(
            "W",
            &[4, 3, 3, 3],
            random_tensor(&[4, 3, 3, 3], 51).into_data(),
        )
        .weights("Wf", &[10, 4], random_tensor(&[10, 4], 52).into_data())
        .output("y")
        .node(
            "Conv",
            "conv",
            &["x", "W"],
            &["c"],
            vec![attr_ints("pads", &[1, 1, 1, 1])],
        )
        .node("Relu", "relu", &["c"], &["r"], vec![])
        .node(
            "MaxPool",
            "pool",
            &["r"],
            &["p"],
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("strides", &[2, 2]),
            ],
        )
        .node("GlobalAveragePool", "gap", &["p"], &["g"], vec![])
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
            &["f", "Wf"],
            &["y"],
            vec![attr_int("transB", 1)],
        )
        .bytes()
}

#[test]
fn batch_0_gives_an_empty_result() {
    let bytes = small_cnn();
    let graph = kestrel_onnx::import_bytes(&bytes, None).unwrap();
    let session = Session::new(graph).unwrap();
    let got = session
        .run(vec![Tensor::new(vec![0, 3, 5, 5], vec![]).unwrap()])
        .unwrap();
    assert_eq!(got[0].shape(), [0, 10]);
    assert!(got[0].is_empty());
    // The same session still runs a real batch afterwards, and agrees with tract.
    let x = random_tensor(&[2, 3, 5, 5], 53);
    let got = session.run(vec![x.clone()]).unwrap();
    let tract = tract_outputs(Onnx::Bytes(&bytes), &[x]).unwrap();
    let c = Comparison::new("small cnn", &got[0], &tract[0], 1e-5);
    assert!(c.ok(), "{c}");
}

// --- Malformed graphs and unsupported operators ------------------------------------------

fn import_error(bytes: &[u8]) -> String {
    match kestrel_onnx::import_bytes(bytes, None) {
        Ok(_) => panic!("a malformed model was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_inputs_are_named_errors() {
    let concat = ModelBuilder::new(13)
        .input_fixed("x", &[2])
        .output("y")
        .node("Concat", "cat", &[], &["y"], vec![attr_int("axis", 0)])
        .bytes();
    let gemm = ModelBuilder::new(13)
        .input_fixed("x", &[2, 2])
        .output("y")
        .node("Gemm", "fc", &["x"], &["y"], vec![])
        .bytes();
    let conv = ModelBuilder::new(13)
        .input_fixed("x", &[1, 1, 4, 4])
        .output("y")
        .node("Conv", "conv", &["x"], &["y"], vec![])
        .bytes();
    let conv_empty_weights = ModelBuilder::new(13)
        .input_fixed("x", &[1, 1, 4, 4])
        .output("y")
        .node("Conv", "conv", &["x", ""], &["y"], vec![])
        .bytes();
    let dangling = ModelBuilder::new(13)
        .input_fixed("x", &[1, 1, 4, 4])
        .output("y")
        .node("Relu", "relu", &["nowhere"], &["y"], vec![])
        .bytes();
    for (bytes, node, op) in [
        (concat, "cat", "Concat"),
        (gemm, "fc", "Gemm"),
        (conv, "conv", "Conv"),
        (conv_empty_weights, "conv", "Conv"),
        (dangling, "relu", "Relu"),
    ] {
        let msg = import_error(&bytes);
        assert!(msg.contains(node) && msg.contains(op), "{op}: {msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
}

#[test]
fn unknown_op_fails_at_import_naming_op_and_node() {
    let bytes = ModelBuilder::new(13)
        .input_fixed("x", &[1, 1, 3, 3])
        .output("y")
        .node("Relu", "first", &["x"], &["r"], vec![])
        .node("FancyActivation", "my_fancy_node", &["r"], &["y"], vec![])
        .bytes();
    let msg = import_error(&bytes);
    assert!(
        msg.contains("FancyActivation") && msg.contains("my_fancy_node"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    // An op from another domain is named with its domain.
    let mut model = ModelBuilder::new(13)
        .input_fixed("x", &[1, 1, 3, 3])
        .output("y")
        .node("Gelu", "gelu", &["x"], &["y"], vec![])
        .build();
    model.graph.as_mut().unwrap().node[0].domain = "com.microsoft".into();
    let msg = import_error(&prost::Message::encode_to_vec(&model));
    assert!(
        msg.contains("com.microsoft.Gelu") && msg.contains("gelu"),
        "{msg}"
    );
}

#[test]
fn quantized_conv_is_refused_at_import() {
    let bytes = ModelBuilder::new(13)
        .input_fixed("x", &[1, 1, 3, 3])
        .weights("s", &[], vec![0.1])
        .output("y")
        .node(
            "QLinearConv",
            "qconv",
            &["x", "s", "s", "s", "s", "s", "s", "s"],
            &["y"],
            vec![],
        )
        .bytes();
    let msg = import_error(&bytes);
    assert!(
        msg.contains("QLinearConv") && msg.contains("qconv"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn truncated_files_fail_cleanly_at_every_cut() {
    let bytes = small_cnn();
    let mut refused = 0;
    for cut in 0..bytes.len() {
        let truncated = &bytes[..cut];
        let result = std::panic::catch_unwind(|| {
            let graph = kestrel_onnx::import_bytes(truncated, None)?;
            // A cut on a field boundary can leave a valid, smaller model; it must still be
            // consistent enough to prepare.
            Session::new(graph).map_err(|e| kestrel_onnx::ImportError::Model(e.to_string()))?;
            Ok::<_, kestrel_onnx::ImportError>(())
        });
        match result {
            Err(_) => panic!(
                "import panicked on the first {cut} of {} bytes",
                bytes.len()
            ),
            Ok(Err(e)) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
            Ok(Ok(())) => {}
        }
    }
    assert!(
        refused >= bytes.len() * 9 / 10,
        "only {refused} of {} cuts refused",
        bytes.len()
    );
}

#[test]
fn garbage_bytes_fail_cleanly() {
    let mut rng = kestrel_tests::SplitMix64::new(99);
    let valid = small_cnn();
    for trial in 0..500 {
        let mut bytes = valid.clone();
        // Flip a few bytes anywhere in a valid model.
        for _ in 0..1 + trial % 4 {
            let i = (rng.next_u64() % bytes.len() as u64) as usize;
            bytes[i] ^= (rng.next_u64() % 255 + 1) as u8;
        }
        let outcome = std::panic::catch_unwind(|| {
            if let Ok(graph) = kestrel_onnx::import_bytes(&bytes, None) {
                if let Ok(session) = Session::new(graph) {
                    let shapes: Vec<Vec<usize>> = session
                        .graph()
                        .inputs
                        .iter()
                        .map(|&i| session.graph().value(i).shape.clone())
                        .collect();
                    let small = shapes.iter().all(|s| s.iter().product::<usize>() < 1 << 20);
                    if small {
                        let inputs = shapes.iter().map(|s| random_tensor(s, 1)).collect();
                        let _ = session.run(inputs);
                    }
                }
            }
        });
        assert!(outcome.is_ok(), "trial {trial} panicked");
    }
}

// --- Graphs that are not valid ONNX, or ask for more than an edge device has -----------------

#[test]
fn two_producers_of_one_tensor_are_refused() {
    let bytes = ModelBuilder::new(13)
        .input_fixed("x", &[1, 4])
        .output("y")
        .node("Relu", "first", &["x"], &["y"], vec![])
        .node("Sigmoid", "second", &["x"], &["y"], vec![])
        .bytes();
    let msg = import_error(&bytes);
    assert!(msg.contains("second") && msg.contains("'y'"), "{msg}");
}

#[test]
fn dropout_in_training_mode_is_refused() {
    let bytes = ModelBuilder::new(13)
        .input_fixed("x", &[1, 4])
        .weights("ratio", &[], vec![0.5])
        .bool_scalar("train", true)
        .output("y")
        .node("Dropout", "drop", &["x", "ratio", "train"], &["y"], vec![])
        .bytes();
    let msg = import_error(&bytes);
    assert!(
        msg.contains("drop") && msg.contains("training_mode"),
        "{msg}"
    );
}

/// Sum, Max and Min take any number of inputs; three and four must work, with broadcasting.
#[test]
fn variadic_sum_max_min() {
    for op in ["Sum", "Max", "Min"] {
        let bytes = ModelBuilder::new(13)
            .input_fixed("a", &[2, 3])
            .input_fixed("b", &[1, 3])
            .input_fixed("c", &[2, 1])
            .input_fixed("d", &[2, 3])
            .output("y")
            .node(op, "reduce", &["a", "b", "c", "d"], &["y"], vec![])
            .bytes();
        let inputs = vec![
            random_tensor(&[2, 3], 1),
            random_tensor(&[1, 3], 2),
            random_tensor(&[2, 1], 3),
            random_tensor(&[2, 3], 4),
        ];
        let want: Vec<f32> = (0..6)
            .map(|i| {
                let (r, c) = (i / 3, i % 3);
                let v = [
                    inputs[0].data()[i],
                    inputs[1].data()[c],
                    inputs[2].data()[r],
                    inputs[3].data()[i],
                ];
                match op {
                    "Sum" => v.iter().sum(),
                    "Max" => v.iter().copied().fold(f32::MIN, f32::max),
                    _ => v.iter().copied().fold(f32::MAX, f32::min),
                }
            })
            .collect();
        let want = Tensor::new(vec![2, 3], want).unwrap();
        check_all(op, &bytes, inputs, &[want]);
    }
}

/// A tiny model whose Pad asks for a multi-gigabyte tensor is refused before anything is
/// allocated, naming the node.
#[test]
fn huge_intermediate_tensor_is_refused_naming_the_node() {
    let bytes = ModelBuilder::new(13)
        .input_fixed("x", &[1, 3, 8, 8])
        .ints("pads", &[0, 0, 26000, 26000, 0, 0, 26000, 26000])
        .output("y")
        .node("Pad", "inflate", &["x", "pads"], &["p"], vec![])
        .node("GlobalAveragePool", "gap", &["p"], &["y"], vec![])
        .bytes();
    let graph = kestrel_onnx::import_bytes(&bytes, None).expect("the graph itself is valid");
    let err = Session::new(graph)
        .and_then(|s| s.run(vec![Tensor::zeros(vec![1, 3, 8, 8])]))
        .expect_err("a 2-billion-element tensor must be refused");
    let msg = err.to_string();
    assert!(msg.contains("inflate") && msg.contains("limit"), "{msg}");
}

#[test]
fn concat_without_inputs_says_how_many_it_needs() {
    let bytes = ModelBuilder::new(13)
        .input_fixed("x", &[2])
        .output("y")
        .node("Concat", "cat", &[], &["y"], vec![attr_int("axis", 0)])
        .bytes();
    let msg = import_error(&bytes);
    assert!(!msg.contains(&usize::MAX.to_string()), "{msg}");
}
