//! Each pass on small graphs: where the pattern must match, the rewritten graph computes the
//! same outputs as the original (fp32, within 1e-5 of the largest output); where it must not,
//! the graph is left as it was.

use kestrel_graph::{
    Activation, BinaryOp, ConvAttrs, Dim, Epilogue, Graph, Op, Padding, PoolAttrs, PoolKind,
    Tensor, ValueId,
};
use kestrel_optimizer::optimize;
use kestrel_runtime::Session;

/// Deterministic values in [-1, 1), different for each seed.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn tensor(shape: &[usize], seed: u64) -> Tensor {
    Tensor::new(shape.to_vec(), values(shape.iter().product(), seed)).unwrap()
}

fn conv3x3() -> Op {
    Op::Conv(ConvAttrs {
        kernel: [3, 3],
        strides: [1, 1],
        dilations: [1, 1],
        padding: Padding::Explicit {
            begin: [1, 1],
            end: [1, 1],
        },
        groups: 1,
        epilogue: Epilogue::default(),
    })
}

/// A graph with input `x` [N, 4, 6, 5].
fn input_graph() -> (Graph, ValueId) {
    input_graph_sized(6, 5)
}

/// A graph with input `x` [N, 4, h, w].
fn input_graph_sized(h: usize, w: usize) -> (Graph, ValueId) {
    let mut g = Graph::default();
    let dims = vec![
        Dim::Free("N".into()),
        Dim::Fixed(4),
        Dim::Fixed(h),
        Dim::Fixed(w),
    ];
    let x = g.add_input("x", dims);
    (g, x)
}

/// Appends a 3x3 conv 4 -> 4 channels (with a bias when `bias`) reading `x`.
fn add_conv(g: &mut Graph, name: &str, x: ValueId, bias: bool, seed: u64) -> ValueId {
    let w = g.add_constant(format!("{name}.w"), tensor(&[4, 4, 3, 3], seed));
    let mut inputs = vec![x, w];
    if bias {
        inputs.push(g.add_constant(format!("{name}.b"), tensor(&[4], seed + 1)));
    }
    g.add_node(name, conv3x3(), inputs, format!("{name}_out"))
        .unwrap()
}

fn add_batch_norm(
    g: &mut Graph,
    name: &str,
    x: ValueId,
    epsilon: f32,
    variance: f32,
    seed: u64,
) -> ValueId {
    let gamma = g.add_constant(format!("{name}.gamma"), tensor(&[4], seed));
    let beta = g.add_constant(format!("{name}.beta"), tensor(&[4], seed + 1));
    let mean = g.add_constant(format!("{name}.mean"), tensor(&[4], seed + 2));
    let var_data = values(4, seed + 3)
        .iter()
        .map(|v| variance * (1.5 + v))
        .collect();
    let var = g.add_constant(
        format!("{name}.var"),
        Tensor::new(vec![4], var_data).unwrap(),
    );
    g.add_node(
        name,
        Op::BatchNorm { epsilon },
        vec![x, gamma, beta, mean, var],
        format!("{name}_out"),
    )
    .unwrap()
}

fn count_ops(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.nodes.iter().filter(|n| pred(&n.op)).count()
}

/// Optimizes `g`, checks the outputs keep their names and values on a batch of 2, and returns
/// the optimized graph and its report.
fn optimize_and_compare(g: &Graph) -> (Graph, kestrel_optimizer::Report) {
    let (opt, report) = optimize(g).expect("optimize");
    let names = |g: &Graph| {
        g.outputs
            .iter()
            .map(|&o| g.value(o).name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&opt), names(g));
    let mut shape = g.value(g.inputs[0]).shape.clone();
    shape[0] = 2;
    let input = tensor(&shape, 99);
    let want = Session::new(g.clone())
        .unwrap()
        .run(vec![input.clone()])
        .unwrap();
    let got = Session::new(opt.clone()).unwrap().run(vec![input]).unwrap();
    for (w, o) in want.iter().zip(&got) {
        assert_eq!(w.shape(), o.shape());
        let scale = w
            .data()
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()))
            .max(1e-30);
        let err = w
            .data()
            .iter()
            .zip(o.data())
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 1e-5 * scale,
            "max error {err} against largest output {scale}"
        );
    }
    (opt, report)
}

#[test]
fn batch_norm_folds_into_conv_with_and_without_bias() {
    for (bias, epsilon, variance) in [
        (true, 1e-5, 1.0),
        (false, 1e-5, 1.0),
        (true, 1e-3, 1e-6),
        (false, 1e-3, 1e-7),
    ] {
        let (mut g, x) = input_graph();
        let c = add_conv(&mut g, "conv", x, bias, 1);
        let y = add_batch_norm(&mut g, "bn", c, epsilon, variance, 10);
        g.outputs.push(y);
        let (opt, report) = optimize_and_compare(&g);
        assert_eq!(report.count("fold-batch-norm"), 1);
        assert_eq!(
            opt.nodes.len(),
            1,
            "bias {bias}, epsilon {epsilon}, variance {variance}"
        );
    }
}

#[test]
fn batch_norm_after_a_conv_read_elsewhere_stays() {
    let (mut g, x) = input_graph();
    let c = add_conv(&mut g, "conv", x, true, 1);
    let y = add_batch_norm(&mut g, "bn", c, 1e-5, 1.0, 10);
    let sum = g
        .add_node("add", Op::Binary(BinaryOp::Add), vec![y, c], "sum")
        .unwrap();
    g.outputs.push(sum);
    let (opt, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fold-batch-norm"), 0);
    assert_eq!(count_ops(&opt, |op| matches!(op, Op::BatchNorm { .. })), 1);
}

#[test]
fn relu_and_relu6_fuse_into_the_conv() {
    for act in [Op::Relu, Op::Clip { min: 0.0, max: 6.0 }] {
        let (mut g, x) = input_graph();
        let c = add_conv(&mut g, "conv", x, true, 1);
        let y = g.add_node("act", act.clone(), vec![c], "y").unwrap();
        g.outputs.push(y);
        let (opt, report) = optimize_and_compare(&g);
        assert_eq!(report.count("fuse-activation"), 1);
        assert_eq!(opt.nodes.len(), 1);
        let Op::Conv(attrs) = &opt.nodes[0].op else {
            panic!("not a conv")
        };
        let want = match act {
            Op::Relu => Activation::Relu,
            _ => Activation::Clip { min: 0.0, max: 6.0 },
        };
        assert_eq!(attrs.epilogue.activation, Some(want));
        assert_eq!(opt.value(opt.outputs[0]).name, "y");
    }
}

/// The conv's pre-activation output is read twice (by the ReLU and by an Add), or is itself a
/// graph output: fusing would lose it.
#[test]
fn relu_does_not_fuse_when_the_conv_output_is_needed() {
    let (mut g, x) = input_graph();
    let c = add_conv(&mut g, "conv", x, true, 1);
    let r = g.add_node("relu", Op::Relu, vec![c], "r").unwrap();
    let sum = g
        .add_node("add", Op::Binary(BinaryOp::Add), vec![r, c], "sum")
        .unwrap();
    g.outputs.push(sum);
    let (_, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fuse-activation"), 0);

    let (mut g, x) = input_graph();
    let c = add_conv(&mut g, "conv", x, true, 1);
    let r = g.add_node("relu", Op::Relu, vec![c], "r").unwrap();
    g.outputs.extend([c, r]);
    let (opt, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fuse-activation"), 0);
    assert_eq!(opt.nodes.len(), 2);
}

/// A ReLU output read twice is fine to fuse: it is the conv's output that must have one reader.
#[test]
fn relu_read_twice_still_fuses() {
    let (mut g, x) = input_graph();
    let c = add_conv(&mut g, "conv", x, true, 1);
    let r = g.add_node("relu", Op::Relu, vec![c], "r").unwrap();
    let sum = g
        .add_node("add", Op::Binary(BinaryOp::Add), vec![r, r], "sum")
        .unwrap();
    g.outputs.push(sum);
    let (opt, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fuse-activation"), 1);
    assert_eq!(opt.nodes.len(), 2);
}

/// ResNet's basic block with an identity shortcut: conv-bn-relu, conv-bn, add x, relu becomes
/// two convolutions, the second adding the shortcut and applying the ReLU.
#[test]
fn identity_residual_block_becomes_two_convs() {
    let (mut g, x) = input_graph();
    let c1 = add_conv(&mut g, "conv1", x, false, 1);
    let b1 = add_batch_norm(&mut g, "bn1", c1, 1e-5, 1.0, 10);
    let r1 = g.add_node("relu1", Op::Relu, vec![b1], "r1").unwrap();
    let c2 = add_conv(&mut g, "conv2", r1, false, 20);
    let b2 = add_batch_norm(&mut g, "bn2", c2, 1e-5, 1.0, 30);
    let sum = g
        .add_node("add", Op::Binary(BinaryOp::Add), vec![b2, x], "sum")
        .unwrap();
    let out = g.add_node("relu2", Op::Relu, vec![sum], "out").unwrap();
    g.outputs.push(out);
    let (opt, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fold-batch-norm"), 2);
    assert_eq!(report.count("fold-residual-add"), 1);
    assert_eq!(report.count("fuse-activation"), 2);
    assert_eq!(opt.nodes.len(), 2);
    let Op::Conv(attrs) = &opt.nodes[1].op else {
        panic!("not a conv")
    };
    assert!(attrs.epilogue.residual);
    assert_eq!(attrs.epilogue.activation, Some(Activation::Relu));
}

/// A projection block whose shortcut conv comes after the main branch in node order: the fused
/// node sits at the Add, where both are defined.
#[test]
fn projection_shortcut_defined_after_the_branch() {
    let (mut g, x) = input_graph();
    let main = add_conv(&mut g, "main", x, true, 1);
    let projection = add_conv(&mut g, "projection", x, true, 5);
    let sum = g
        .add_node(
            "add",
            Op::Binary(BinaryOp::Add),
            vec![main, projection],
            "sum",
        )
        .unwrap();
    let out = g.add_node("relu", Op::Relu, vec![sum], "out").unwrap();
    g.outputs.push(out);
    let (opt, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fold-residual-add"), 1);
    assert_eq!(opt.nodes.len(), 2);
}

/// An Add that broadcasts (a per-channel shift computed from the input) is not a shortcut.
#[test]
fn broadcasting_add_is_not_a_residual() {
    let (mut g, x) = input_graph();
    let c = add_conv(&mut g, "conv", x, true, 1);
    let shift = g
        .add_node("mean", Op::GlobalAveragePool, vec![x], "shift")
        .unwrap();
    let sum = g
        .add_node("add", Op::Binary(BinaryOp::Add), vec![c, shift], "sum")
        .unwrap();
    g.outputs.push(sum);
    let (opt, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fold-residual-add"), 0);
    assert_eq!(opt.nodes.len(), 3);
}

#[test]
fn identities_drop_unless_they_name_an_output() {
    let (mut g, x) = input_graph();
    let i1 = g.add_node("dropout", Op::Identity, vec![x], "d").unwrap();
    let c = add_conv(&mut g, "conv", i1, true, 1);
    let out = g
        .add_node("identity", Op::Identity, vec![c], "out")
        .unwrap();
    g.outputs.push(out);
    let (opt, report) = optimize_and_compare(&g);
    assert_eq!(report.count("drop-identity"), 1);
    assert_eq!(opt.nodes.len(), 2);
    assert_eq!(opt.nodes[0].inputs[0], opt.inputs[0]);
}

/// A NaN entering a fused ReLU comes out as NaN, as it does from the unfused one.
#[test]
fn fused_relu_passes_nan_like_the_unfused_one() {
    assert!(Activation::Relu.apply(f32::NAN).is_nan());
    assert!(Activation::Clip { min: 0.0, max: 6.0 }
        .apply(f32::NAN)
        .is_nan());
    assert_eq!(Activation::Relu.apply(-0.5), 0.0);
    assert_eq!(Activation::Clip { min: 0.0, max: 6.0 }.apply(7.0), 6.0);
}

/// A Clip whose min exceeds its max gives max everywhere, fused or not (ONNX: min(max(x, lo), hi)).
#[test]
fn clip_with_min_above_max_fuses_to_the_same_result() {
    let (mut g, x) = input_graph();
    let c = add_conv(&mut g, "conv", x, true, 1);
    let clip = Op::Clip { min: 0.5, max: 0.1 };
    let y = g.add_node("clip", clip, vec![c], "y").unwrap();
    g.outputs.push(y);
    let (_, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fuse-activation"), 1);
    assert_eq!(Activation::Clip { min: 0.5, max: 0.1 }.apply(0.3), 0.1);
}

/// Appends `op` of `x` and a constant of `shape`, the constant first when `constant_first`.
fn add_binary_constant(
    g: &mut Graph,
    name: &str,
    op: BinaryOp,
    x: ValueId,
    shape: &[usize],
    constant_first: bool,
) -> ValueId {
    let c = g.add_constant(format!("{name}.c"), tensor(shape, 40 + shape.len() as u64));
    let inputs = if constant_first {
        vec![c, x]
    } else {
        vec![x, c]
    };
    g.add_node(name, Op::Binary(op), inputs, format!("{name}_out"))
        .unwrap()
}

/// Conv, then Mul and Add by per-channel (or scalar) constants, fold into one conv, with or
/// without a bias, whichever operand order.
#[test]
fn constant_mul_and_add_fold_into_the_conv() {
    for (bias, scale_shape, shift_shape) in [
        (true, vec![1, 4, 1, 1], vec![4, 1, 1]),
        (false, vec![4, 1, 1], vec![1, 4, 1, 1]),
        (true, vec![], vec![1]),
        (false, vec![1, 1, 1, 1], vec![1, 4, 1, 1]),
    ] {
        let (mut g, x) = input_graph();
        let c = add_conv(&mut g, "conv", x, bias, 1);
        let m = add_binary_constant(&mut g, "mul", BinaryOp::Mul, c, &scale_shape, bias);
        let a = add_binary_constant(&mut g, "add", BinaryOp::Add, m, &shift_shape, !bias);
        let y = g.add_node("relu", Op::Relu, vec![a], "y").unwrap();
        g.outputs.push(y);
        let (opt, report) = optimize_and_compare(&g);
        assert_eq!(
            report.count("fold-mul-add"),
            2,
            "{scale_shape:?} {shift_shape:?}"
        );
        assert_eq!(report.count("fuse-activation"), 1);
        assert_eq!(opt.nodes.len(), 1, "{report}");
    }
}

/// A batch norm with a tiny variance and a large epsilon (or the usual ones), followed by a
/// scale and a shift, all folds into the conv.
#[test]
fn batch_norm_then_scale_and_shift_fold_into_the_conv() {
    for (epsilon, variance) in [(1e-5, 1.0), (1e-3, 1e-6), (1e-3, 1e-7), (1e-5, 1e-7)] {
        let (mut g, x) = input_graph();
        let c = add_conv(&mut g, "conv", x, false, 1);
        let b = add_batch_norm(&mut g, "bn", c, epsilon, variance, 10);
        let m = add_binary_constant(&mut g, "mul", BinaryOp::Mul, b, &[1, 4, 1, 1], false);
        let a = add_binary_constant(&mut g, "add", BinaryOp::Add, m, &[1, 4, 1, 1], true);
        g.outputs.push(a);
        let (opt, report) = optimize_and_compare(&g);
        assert_eq!(report.count("fold-batch-norm"), 1);
        assert_eq!(report.count("fold-mul-add"), 2);
        assert_eq!(opt.nodes.len(), 1, "epsilon {epsilon}, variance {variance}");
    }
}

/// What must stay: a constant that varies over space or batch ([5] lines up with the width), a
/// non-constant operand, a conv output read twice, a Sub (not folded), and a Mul after a ReLU.
#[test]
fn mul_and_add_that_are_not_per_channel_constants_stay() {
    for shape in [
        vec![1, 1, 6, 5],
        vec![1, 4, 6, 1],
        vec![5],
        vec![2, 4, 1, 1],
    ] {
        let (mut g, x) = input_graph();
        let c = add_conv(&mut g, "conv", x, true, 1);
        let m = add_binary_constant(&mut g, "mul", BinaryOp::Mul, c, &shape, false);
        g.outputs.push(m);
        let (opt, report) = optimize_and_compare(&g);
        assert_eq!(report.count("fold-mul-add"), 0, "{shape:?}");
        assert_eq!(opt.nodes.len(), 2);
    }

    let (mut g, x) = input_graph();
    let c = add_conv(&mut g, "conv", x, true, 1);
    let scale = g
        .add_node("mean", Op::GlobalAveragePool, vec![x], "scale")
        .unwrap();
    let m = g
        .add_node("mul", Op::Binary(BinaryOp::Mul), vec![c, scale], "m")
        .unwrap();
    g.outputs.push(m);
    let (_, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fold-mul-add"), 0);

    let (mut g, x) = input_graph();
    let c = add_conv(&mut g, "conv", x, true, 1);
    let m = add_binary_constant(&mut g, "mul", BinaryOp::Mul, c, &[1, 4, 1, 1], false);
    let sum = g
        .add_node("add", Op::Binary(BinaryOp::Add), vec![m, c], "sum")
        .unwrap();
    g.outputs.push(sum);
    let (_, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fold-mul-add"), 0);

    for op in [BinaryOp::Sub, BinaryOp::Mul] {
        let (mut g, x) = input_graph();
        let mut c = add_conv(&mut g, "conv", x, true, 1);
        if op == BinaryOp::Mul {
            c = g.add_node("relu", Op::Relu, vec![c], "r").unwrap();
        }
        let y = add_binary_constant(&mut g, "op", op, c, &[1, 4, 1, 1], false);
        g.outputs.push(y);
        let (opt, report) = optimize_and_compare(&g);
        assert_eq!(report.count("fold-mul-add"), 0);
        assert_eq!(opt.nodes.len(), 2);
    }
}

fn max_pool(kernel: usize, stride: usize, padding: Padding, ceil_mode: bool) -> PoolAttrs {
    PoolAttrs {
        kind: PoolKind::Max,
        kernel: [kernel, kernel],
        strides: [stride, stride],
        dilations: [1, 1],
        padding,
        ceil_mode,
    }
}

fn pads(begin: [usize; 2], end: [usize; 2]) -> Padding {
    Padding::Explicit { begin, end }
}

/// Conv + ReLU + MaxPool becomes one conv pooling in its epilogue, for every kind of max pool:
/// overlapping, ceil mode, padded, SAME, dilated; and on a map tall and wide enough that the
/// runtime computes it in several bands.
#[test]
fn conv_relu_max_pool_fuse_for_every_max_pool() {
    let mut dilated = max_pool(2, 1, pads([1, 0], [0, 1]), false);
    dilated.dilations = [2, 3];
    let pools = [
        max_pool(3, 2, Padding::NONE, true),
        max_pool(2, 2, Padding::NONE, false),
        max_pool(3, 2, pads([1, 1], [1, 1]), false),
        max_pool(3, 2, pads([0, 1], [1, 0]), true),
        max_pool(3, 1, pads([1, 1], [1, 1]), false),
        max_pool(3, 2, Padding::SameUpper, false),
        max_pool(2, 3, Padding::SameLower, true),
        dilated,
    ];
    for (h, w) in [(6, 5), (7, 9), (150, 1100)] {
        for pool in &pools {
            let (mut g, x) = input_graph_sized(h, w);
            let c = add_conv(&mut g, "conv", x, true, 1);
            let r = g.add_node("relu", Op::Relu, vec![c], "r").unwrap();
            let y = g
                .add_node("pool", Op::Pool(pool.clone()), vec![r], "y")
                .unwrap();
            g.outputs.push(y);
            let (opt, report) = optimize_and_compare(&g);
            assert_eq!(report.count("fuse-max-pool"), 1, "{pool:?}");
            assert_eq!(opt.nodes.len(), 1);
            let Op::Conv(attrs) = &opt.nodes[0].op else {
                panic!("not a conv")
            };
            assert_eq!(attrs.epilogue.activation, Some(Activation::Relu));
            assert_eq!(attrs.epilogue.pool.map(|p| p.attrs()).as_ref(), Some(pool));
            assert_eq!(opt.value(opt.outputs[0]).name, "y");
        }
    }
}

/// A conv straight into a max pool (no activation) fuses as well.
#[test]
fn conv_max_pool_without_activation_fuses() {
    let (mut g, x) = input_graph_sized(9, 8);
    let c = add_conv(&mut g, "conv", x, false, 1);
    let pool = max_pool(3, 2, Padding::NONE, true);
    let y = g.add_node("pool", Op::Pool(pool), vec![c], "y").unwrap();
    g.outputs.push(y);
    let (opt, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fuse-max-pool"), 1);
    assert_eq!(opt.nodes.len(), 1);
}

/// What must stay a separate pool: an average pool; a pool of a ReLU output that something
/// else reads too; a pool of a conv output that is also a graph output; a pool after a conv
/// that adds a residual.
#[test]
fn max_pool_does_not_fuse_when_it_must_not() {
    let average = PoolAttrs {
        kind: PoolKind::Average {
            count_include_pad: false,
        },
        ..max_pool(3, 2, Padding::NONE, true)
    };
    let (mut g, x) = input_graph_sized(9, 8);
    let c = add_conv(&mut g, "conv", x, true, 1);
    let r = g.add_node("relu", Op::Relu, vec![c], "r").unwrap();
    let y = g.add_node("pool", Op::Pool(average), vec![r], "y").unwrap();
    g.outputs.push(y);
    let (opt, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fuse-max-pool"), 0);
    assert_eq!(opt.nodes.len(), 2);

    let (mut g, x) = input_graph_sized(9, 8);
    let c = add_conv(&mut g, "conv", x, true, 1);
    let r = g.add_node("relu", Op::Relu, vec![c], "r").unwrap();
    let pool = max_pool(2, 2, Padding::NONE, false);
    let y = g
        .add_node("pool", Op::Pool(pool.clone()), vec![r], "y")
        .unwrap();
    let other = add_conv(&mut g, "second_reader", r, true, 3);
    g.outputs.extend([y, other]);
    let (opt, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fuse-max-pool"), 0);
    assert_eq!(count_ops(&opt, |op| matches!(op, Op::Pool(_))), 1);

    let (mut g, x) = input_graph_sized(9, 8);
    let c = add_conv(&mut g, "conv", x, true, 1);
    let y = g
        .add_node("pool", Op::Pool(pool.clone()), vec![c], "y")
        .unwrap();
    g.outputs.extend([c, y]);
    let (_, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fuse-max-pool"), 0);

    let (mut g, x) = input_graph_sized(9, 8);
    let c = add_conv(&mut g, "conv", x, true, 1);
    let sum = g
        .add_node("add", Op::Binary(BinaryOp::Add), vec![c, x], "sum")
        .unwrap();
    let r = g.add_node("relu", Op::Relu, vec![sum], "r").unwrap();
    let y = g.add_node("pool", Op::Pool(pool), vec![r], "y").unwrap();
    g.outputs.push(y);
    let (opt, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fold-residual-add"), 1);
    assert_eq!(report.count("fuse-max-pool"), 0);
    assert_eq!(opt.nodes.len(), 2);
}

/// Appends a `kernel`x`kernel` conv 4 -> `out` channels reading `x`, with a ReLU when `relu`.
#[allow(clippy::too_many_arguments)]
fn add_branch(
    g: &mut Graph,
    name: &str,
    x: ValueId,
    out: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
    bias: bool,
    relu: bool,
) -> ValueId {
    let w = g.add_constant(
        format!("{name}.w"),
        tensor(&[out, 4, kernel, kernel], name.len() as u64),
    );
    let mut inputs = vec![x, w];
    if bias {
        inputs.push(g.add_constant(format!("{name}.b"), tensor(&[out], 7 + out as u64)));
    }
    let conv = Op::Conv(ConvAttrs {
        kernel: [kernel, kernel],
        strides: [stride, stride],
        dilations: [1, 1],
        padding,
        groups: 1,
        epilogue: Epilogue::default(),
    });
    let c = g
        .add_node(name, conv, inputs, format!("{name}_out"))
        .unwrap();
    if !relu {
        return c;
    }
    g.add_node(
        format!("{name}_relu"),
        Op::Relu,
        vec![c],
        format!("{name}_act"),
    )
    .unwrap()
}

/// An inception module's front: a 1x1 branch and two 1x1 reduces (one without a bias) on the
/// same input merge into one conv, each read through its channel slice.
#[test]
fn parallel_1x1_convs_merge_into_one() {
    let (mut g, x) = input_graph();
    let same = Padding::NONE;
    let a = add_branch(&mut g, "b1x1", x, 3, 1, 1, same, true, true);
    let r3 = add_branch(&mut g, "reduce3", x, 2, 1, 1, same, false, true);
    let r5 = add_branch(
        &mut g,
        "reduce5",
        x,
        5,
        1,
        1,
        Padding::SameUpper,
        true,
        true,
    );
    let c3 = add_conv_reading(&mut g, "conv3", r3, 2);
    let c5 = add_conv_reading(&mut g, "conv5", r5, 5);
    let cat = g
        .add_node("concat", Op::Concat { axis: 1 }, vec![a, c3, c5], "cat")
        .unwrap();
    g.outputs.push(cat);
    let (opt, report) = optimize_and_compare(&g);
    assert_eq!(report.count("merge-parallel-1x1"), 1, "{report}");
    let slices: Vec<_> = opt
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::ChannelSlice { start, end } => Some((n.name.as_str(), start, end)),
            _ => None,
        })
        .collect();
    assert_eq!(
        slices,
        [("b1x1", 0, 3), ("reduce3", 3, 5), ("reduce5", 5, 10)]
    );
    let merged = opt.node(kestrel_graph::NodeId(0));
    assert_eq!(opt.value(merged.output).shape, [1, 10, 6, 5]);
    assert_eq!(count_ops(&opt, |op| matches!(op, Op::Conv(_))), 3);
}

/// A 3x3 conv `in_channels` -> 4 reading `x`.
fn add_conv_reading(g: &mut Graph, name: &str, x: ValueId, in_channels: usize) -> ValueId {
    let w = g.add_constant(format!("{name}.w"), tensor(&[4, in_channels, 3, 3], 3));
    g.add_node(name, conv3x3(), vec![x, w], format!("{name}_out"))
        .unwrap()
}

/// What must not merge: 1x1 convs with different activations, a strided or padded 1x1, a 3x3
/// next to a 1x1, 1x1s on different inputs. Convs that agree merge even when others reading
/// the same input do not.
#[test]
fn only_alike_pointwise_convs_on_one_input_merge() {
    let none = Padding::NONE;
    let padded = pads([1, 1], [1, 1]);
    // Each branch: (kernel, stride, padding, relu); then how many merges.
    type Branches<'a> = &'a [(usize, usize, Padding, bool)];
    let cases: [(Branches, usize); 5] = [
        (&[(1, 1, none, true), (1, 1, none, false)], 0),
        (&[(1, 1, none, true), (1, 2, none, true)], 0),
        (&[(1, 1, none, true), (1, 1, padded, true)], 0),
        (&[(1, 1, none, true), (3, 1, padded, true)], 0),
        (
            &[
                (1, 1, none, true),
                (1, 1, none, false),
                (1, 1, none, true),
                (3, 1, padded, true),
            ],
            1,
        ),
    ];
    for (branches, merges) in cases {
        let (mut g, x) = input_graph();
        for (i, &(kernel, stride, padding, relu)) in branches.iter().enumerate() {
            let name = format!("branch{i}");
            let y = add_branch(&mut g, &name, x, 3, kernel, stride, padding, true, relu);
            g.outputs.push(y);
        }
        let (_, report) = optimize_and_compare(&g);
        assert_eq!(report.count("merge-parallel-1x1"), merges, "{branches:?}");
    }

    let (mut g, x) = input_graph();
    let first = add_branch(&mut g, "first", x, 4, 1, 1, none, true, true);
    let second = add_branch(&mut g, "second", first, 3, 1, 1, none, true, true);
    g.outputs.extend([first, second]);
    let (_, report) = optimize_and_compare(&g);
    assert_eq!(report.count("merge-parallel-1x1"), 0);
}
