//! Each pass on small graphs: where the pattern must match, the rewritten graph computes the
//! same outputs as the original (fp32, within 1e-5 of the largest output); where it must not,
//! the graph is left as it was.

use kestrel_graph::{
    Activation, BinaryOp, ConvAttrs, Dim, Epilogue, Graph, Op, Padding, Tensor, ValueId,
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
    let mut g = Graph::default();
    let dims = vec![
        Dim::Free("N".into()),
        Dim::Fixed(4),
        Dim::Fixed(6),
        Dim::Fixed(5),
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
    let input = tensor(&[2, 4, 6, 5], 99);
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

/// An Add that broadcasts (a per-channel bias) is not a shortcut.
#[test]
fn broadcasting_add_is_not_a_residual() {
    let (mut g, x) = input_graph();
    let c = add_conv(&mut g, "conv", x, true, 1);
    let shift = g.add_constant("shift", tensor(&[1, 4, 1, 1], 7));
    let sum = g
        .add_node("add", Op::Binary(BinaryOp::Add), vec![c, shift], "sum")
        .unwrap();
    g.outputs.push(sum);
    let (opt, report) = optimize_and_compare(&g);
    assert_eq!(report.count("fold-residual-add"), 0);
    assert_eq!(opt.nodes.len(), 2);
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
