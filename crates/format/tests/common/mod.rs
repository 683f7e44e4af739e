//! Graphs shared by the format tests.

#![allow(dead_code)]

use kestrel_graph::{
    Activation, BinaryOp, ConvAttrs, Dim, Epilogue, GemmAttrs, Graph, LrnAttrs, MaxPoolStage, Op,
    Padding, PoolAttrs, PoolKind, Tensor,
};

/// Deterministic values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn tensor(shape: &[usize], seed: u64) -> Tensor {
    Tensor::new(shape.to_vec(), values(shape.iter().product(), seed)).unwrap()
}

fn conv(kernel: usize, padding: Padding, groups: usize, epilogue: Epilogue) -> Op {
    Op::Conv(ConvAttrs {
        kernel: [kernel, kernel],
        strides: [1, 1],
        dilations: [1, 1],
        padding,
        groups,
        epilogue,
    })
}

/// A graph using every operator and attribute variant, on input `x [N, 3, 8, 8]`, with three
/// outputs.
pub fn every_op() -> Graph {
    let mut g = Graph::default();
    let x = g.add_input(
        "x",
        vec![
            Dim::Free("N".into()),
            Dim::Fixed(3),
            Dim::Fixed(8),
            Dim::Fixed(8),
        ],
    );
    let node = |g: &mut Graph, op: Op, inputs: Vec<_>, name: &str| {
        g.add_node(name, op, inputs, format!("{name}.out")).unwrap()
    };
    let pad = node(
        &mut g,
        Op::Pad {
            pads: vec![0, 0, 1, 1, 0, 0, 1, 1],
            value: 0.5,
        },
        vec![x],
        "pad",
    );
    let w1 = g.add_constant("w1", tensor(&[4, 3, 3, 3], 1));
    let b1 = g.add_constant("b1", tensor(&[4], 2));
    let relu_epilogue = Epilogue {
        activation: Some(Activation::Relu),
        ..Epilogue::default()
    };
    let c1 = node(
        &mut g,
        conv(3, Padding::NONE, 1, relu_epilogue),
        vec![pad, w1, b1],
        "conv1",
    );
    let bn_params: Vec<_> = (0..4)
        .map(|i| {
            let mut t = tensor(&[4], 10 + i);
            if i == 3 {
                t.data_mut().iter_mut().for_each(|v| *v = v.abs() + 0.1);
            }
            g.add_constant(format!("bn{i}"), t)
        })
        .collect();
    let mut bn_inputs = vec![c1];
    bn_inputs.extend(bn_params);
    let bn = node(&mut g, Op::BatchNorm { epsilon: 1e-5 }, bn_inputs, "bn");
    let w2 = g.add_constant("w2", tensor(&[4, 2, 3, 3], 3));
    let b2 = g.add_constant("b2", tensor(&[4], 4));
    let fused = Epilogue {
        residual: true,
        activation: Some(Activation::Clip { min: 0.0, max: 6.0 }),
        pool: None,
    };
    let c2 = node(
        &mut g,
        conv(3, Padding::SameUpper, 2, fused),
        vec![bn, w2, b2, bn],
        "conv2",
    );
    let w3 = g.add_constant("w3", tensor(&[4, 4, 1, 1], 5));
    let c3 = node(
        &mut g,
        conv(1, Padding::SameLower, 1, Epilogue::default()),
        vec![c2, w3],
        "conv3",
    );
    let relu = node(&mut g, Op::Relu, vec![c3], "relu");
    // A conv whose epilogue max-pools, and a channel range of its output.
    let w4 = g.add_constant("w4", tensor(&[5, 3, 3, 3], 9));
    let pooled = Epilogue {
        residual: false,
        activation: Some(Activation::Relu),
        pool: Some(MaxPoolStage {
            kernel: [3, 3],
            strides: [2, 2],
            dilations: [1, 1],
            padding: Padding::Explicit {
                begin: [0, 1],
                end: [1, 0],
            },
            ceil_mode: true,
        }),
    };
    let c4 = node(
        &mut g,
        conv(3, Padding::SameUpper, 1, pooled),
        vec![x, w4],
        "conv_pool",
    );
    let out3 = node(
        &mut g,
        Op::ChannelSlice { start: 1, end: 4 },
        vec![c4],
        "channel_slice",
    );
    let clip = node(
        &mut g,
        Op::Clip {
            min: -1.0,
            max: 5.0,
        },
        vec![relu],
        "clip",
    );
    let sig = node(&mut g, Op::Sigmoid, vec![clip], "sigmoid");
    let lrn = node(
        &mut g,
        Op::Lrn(LrnAttrs {
            size: 3,
            alpha: 1e-4,
            beta: 0.75,
            bias: 1.0,
        }),
        vec![sig],
        "lrn",
    );
    let max = node(
        &mut g,
        Op::Pool(PoolAttrs {
            kind: PoolKind::Max,
            kernel: [2, 2],
            strides: [2, 2],
            dilations: [1, 1],
            padding: Padding::SameLower,
            ceil_mode: false,
        }),
        vec![lrn],
        "maxpool",
    );
    let avg = node(
        &mut g,
        Op::Pool(PoolAttrs {
            kind: PoolKind::Average {
                count_include_pad: true,
            },
            kernel: [3, 3],
            strides: [2, 2],
            dilations: [1, 1],
            padding: Padding::Explicit {
                begin: [1, 1],
                end: [0, 0],
            },
            ceil_mode: true,
        }),
        vec![lrn],
        "avgpool",
    );
    let two = g.add_constant("two", Tensor::scalar(2.0));
    let mut acc = node(&mut g, Op::Binary(BinaryOp::Add), vec![max, avg], "add");
    for (i, op) in [
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Pow,
    ]
    .into_iter()
    .enumerate()
    {
        let other = if i % 2 == 0 { two } else { avg };
        acc = node(
            &mut g,
            Op::Binary(op),
            vec![acc, other],
            &format!("binary{i}"),
        );
    }
    let cat = node(&mut g, Op::Concat { axis: 1 }, vec![acc, max], "concat");
    let mean = node(
        &mut g,
        Op::ReduceMean {
            axes: vec![2, 3],
            keep_dims: true,
        },
        vec![cat],
        "mean",
    );
    let gap = node(&mut g, Op::GlobalAveragePool, vec![cat], "gap");
    let sum = node(&mut g, Op::Binary(BinaryOp::Add), vec![mean, gap], "sum");
    let id = node(&mut g, Op::Identity, vec![sum], "identity");
    let flat = node(&mut g, Op::Flatten { axis: 1 }, vec![id], "flatten");
    let fc_w = g.add_constant("fc_w", tensor(&[10, 8], 6));
    let fc_b = g.add_constant("fc_b", tensor(&[10], 7));
    let gemm = node(
        &mut g,
        Op::Gemm(GemmAttrs {
            alpha: 0.5,
            beta: 2.0,
            trans_a: false,
            trans_b: true,
        }),
        vec![flat, fc_w, fc_b],
        "gemm",
    );
    let reshaped = node(
        &mut g,
        Op::Reshape {
            shape: vec![0, 2, -1],
            allow_zero: false,
        },
        vec![gemm],
        "reshape",
    );
    let t = node(
        &mut g,
        Op::Transpose {
            perm: vec![0, 2, 1],
        },
        vec![reshaped],
        "transpose",
    );
    let mm_w = g.add_constant("mm_w", tensor(&[2, 3], 8));
    let mm = node(&mut g, Op::MatMul, vec![t, mm_w], "matmul");
    let un = node(
        &mut g,
        Op::Unsqueeze { axes: vec![0] },
        vec![mm],
        "unsqueeze",
    );
    let sq = node(&mut g, Op::Squeeze { axes: vec![0] }, vec![un], "squeeze");
    let out1 = node(
        &mut g,
        Op::Softmax {
            axis: 2,
            coerce_2d: false,
        },
        vec![sq],
        "softmax",
    );
    let out2 = node(
        &mut g,
        Op::Softmax {
            axis: 1,
            coerce_2d: true,
        },
        vec![gemm],
        "softmax2d",
    );
    g.outputs = vec![out1, out2, out3];
    g
}

/// `x [N, 3, 8, 8] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm`: a CAM tail.
pub fn cam_net() -> Graph {
    let mut g = Graph::default();
    let x = g.add_input(
        "x",
        vec![
            Dim::Free("N".into()),
            Dim::Fixed(3),
            Dim::Fixed(8),
            Dim::Fixed(8),
        ],
    );
    let w = g.add_constant("conv.w", tensor(&[6, 3, 3, 3], 21));
    let b = g.add_constant("conv.b", tensor(&[6], 22));
    let attrs = ConvAttrs {
        kernel: [3, 3],
        strides: [1, 1],
        dilations: [1, 1],
        padding: Padding::Explicit {
            begin: [1, 1],
            end: [1, 1],
        },
        groups: 1,
        epilogue: Epilogue {
            activation: Some(Activation::Relu),
            ..Epilogue::default()
        },
    };
    let feat = g
        .add_node("conv", Op::Conv(attrs), vec![x, w, b], "feat")
        .unwrap();
    let gap = g
        .add_node("gap", Op::GlobalAveragePool, vec![feat], "pooled")
        .unwrap();
    let flat = g
        .add_node("flatten", Op::Flatten { axis: 1 }, vec![gap], "flat")
        .unwrap();
    let fw = g.add_constant("fc.w", tensor(&[4, 6], 23));
    let fb = g.add_constant("fc.b", tensor(&[4], 24));
    let gemm = GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: true,
    };
    let logits = g
        .add_node("fc", Op::Gemm(gemm), vec![flat, fw, fb], "logits")
        .unwrap();
    g.outputs = vec![logits];
    g
}
