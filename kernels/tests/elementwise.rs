mod common;

use common::{assert_close, random, Rng, SIZES};
use kestrel_kernels::{
    binary_broadcast_f32, channel_affine_f32, clip_f32, reference, relu_f32, BinaryOp,
};
use proptest::prelude::*;

const OPS: [BinaryOp; 7] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Max,
    BinaryOp::Min,
    BinaryOp::Pow,
];

fn broadcast_shape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() < rank {
            1
        } else {
            s[i + s.len() - rank]
        }
    };
    (0..rank).map(|i| dim(a, i).max(dim(b, i))).collect()
}

/// Runs `op` through the kernel and the reference; returns the kernel's output.
fn check(op: BinaryOp, a_shape: &[usize], b_shape: &[usize], seed: u64) -> Vec<f32> {
    let out_shape = broadcast_shape(a_shape, b_shape);
    // Positive bases keep Pow real; mixed signs elsewhere.
    let lo = if op == BinaryOp::Pow { 0.1 } else { -2.0 };
    let a = random(seed, a_shape.iter().product(), lo, 2.0);
    let b = random(seed ^ 1, b_shape.iter().product(), lo, 2.0);
    let len = out_shape.iter().product();
    let (mut fast, mut naive) = (vec![f32::NAN; len], vec![0.0; len]);
    binary_broadcast_f32(op, &a, a_shape, &b, b_shape, &mut fast, &out_shape);
    reference::binary_broadcast_f32(op, &a, a_shape, &b, b_shape, &mut naive, &out_shape);
    assert_close(&fast, &naive, &format!("{op:?} {a_shape:?} {b_shape:?}"));
    fast
}

/// An output shape of rank 0..=4 and two operand shapes that broadcast to it: each is a suffix
/// of it with some dimensions set to 1.
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    (prop::collection::vec(1..=5usize, 0..=4), any::<u64>()).prop_map(|(out, seed)| {
        let mut rng = Rng::new(seed);
        let mut operand = || {
            let rank = (rng.next_u64() % (out.len() as u64 + 1)) as usize;
            out[out.len() - rank..]
                .iter()
                .map(|&d| if rng.uniform(0.0, 3.0) < 1.0 { 1 } else { d })
                .collect::<Vec<_>>()
        };
        (operand(), operand())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn binary_broadcast_f32_matches_reference(
        op in prop::sample::select(&OPS[..]),
        (a_shape, b_shape) in broadcast_pair(),
        seed: u64,
    ) {
        check(op, &a_shape, &b_shape, seed);
    }

    #[test]
    fn channel_affine_f32_matches_reference(
        channels in 1..=17usize,
        hw in prop::sample::select(&SIZES[..]),
        seed: u64,
    ) {
        let x = random(seed, channels * hw, -5.0, 5.0);
        let scale = random(seed ^ 1, channels, -2.0, 2.0);
        let shift = random(seed ^ 2, channels, -2.0, 2.0);
        let (mut fast, mut naive) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        channel_affine_f32(channels, hw, &scale, &shift, &x, &mut fast);
        reference::channel_affine_f32(channels, hw, &scale, &shift, &x, &mut naive);
        assert_close(&fast, &naive, "channel_affine");
    }
}

#[test]
fn binary_broadcast_f32_equal_shapes() {
    for op in OPS {
        check(op, &[2, 3, 7, 11], &[2, 3, 7, 11], 1);
    }
}

#[test]
fn binary_broadcast_f32_per_channel_nchw() {
    for op in OPS {
        check(op, &[2, 17, 7, 11], &[17, 1, 1], 2);
        check(op, &[17, 1, 1], &[1, 17, 7, 11], 3);
    }
    let a: Vec<f32> = (0..8).map(|v| v as f32).collect();
    let mut out = vec![0.0; 8];
    binary_broadcast_f32(
        BinaryOp::Add,
        &a,
        &[1, 2, 2, 2],
        &[10.0, 20.0],
        &[2, 1, 1],
        &mut out,
        &[1, 2, 2, 2],
    );
    assert_eq!(out, [10.0, 11.0, 12.0, 13.0, 24.0, 25.0, 26.0, 27.0]);
}

#[test]
fn binary_broadcast_f32_scalar_operands() {
    for op in OPS {
        check(op, &[3, 5, 7], &[], 4);
        check(op, &[3, 5, 7], &[1], 5);
        check(op, &[], &[3, 5, 7], 6);
        check(op, &[], &[], 7);
    }
    let mut out = vec![0.0; 3];
    binary_broadcast_f32(
        BinaryOp::Sub,
        &[1.0, 2.0, 3.0],
        &[3],
        &[1.5],
        &[],
        &mut out,
        &[3],
    );
    assert_eq!(out, [-0.5, 0.5, 1.5]);
}

#[test]
fn binary_broadcast_f32_rank_mismatch() {
    check(BinaryOp::Mul, &[2, 3, 4], &[4], 8);
    check(BinaryOp::Mul, &[4], &[2, 3, 4], 9);
    check(BinaryOp::Div, &[2, 1, 4], &[3, 1], 10);
    let mut out = vec![0.0; 6];
    let a = [1.0, 2.0, 3.0];
    binary_broadcast_f32(
        BinaryOp::Mul,
        &a,
        &[3],
        &[1.0, 10.0],
        &[2, 1],
        &mut out,
        &[2, 3],
    );
    assert_eq!(out, [1.0, 2.0, 3.0, 10.0, 20.0, 30.0]);
}

#[test]
fn binary_broadcast_f32_max_min_propagate_nan_and_pow() {
    let a = [f32::NAN, 1.0, 2.0];
    let b = [0.0, f32::NAN, 3.0];
    let mut out = [0.0; 3];
    binary_broadcast_f32(BinaryOp::Max, &a, &[3], &b, &[3], &mut out, &[3]);
    assert!(out[0].is_nan() && out[1].is_nan() && out[2] == 3.0);
    binary_broadcast_f32(BinaryOp::Min, &a, &[3], &b, &[3], &mut out, &[3]);
    assert!(out[0].is_nan() && out[1].is_nan() && out[2] == 2.0);
    binary_broadcast_f32(
        BinaryOp::Pow,
        &[2.0, 9.0, 4.0],
        &[3],
        &[0.5],
        &[1],
        &mut out,
        &[3],
    );
    assert_close(&out, &[2f32.sqrt(), 3.0, 2.0], "pow");
}

#[test]
fn binary_broadcast_f32_empty_output() {
    binary_broadcast_f32(BinaryOp::Add, &[], &[2, 0], &[1.0], &[1], &mut [], &[2, 0]);
}

#[test]
fn relu_f32_clamps_negatives_keeps_nan() {
    let mut x = [-1.0, 0.0, 2.5, f32::NAN, f32::NEG_INFINITY, f32::INFINITY];
    relu_f32(&mut x);
    assert_eq!(x[..3], [0.0, 0.0, 2.5]);
    assert!(x[3].is_nan());
    assert_eq!(x[4..], [0.0, f32::INFINITY]);
}

#[test]
fn clip_f32_clamps_keeps_nan() {
    let mut x = [-10.0, 0.5, 10.0, f32::NAN, f32::INFINITY];
    clip_f32(&mut x, 0.0, 6.0);
    assert_eq!(x[..3], [0.0, 0.5, 6.0]);
    assert!(x[3].is_nan());
    assert_eq!(x[4], 6.0);
    // min > max: everything becomes max.
    let mut x = [-1.0, 5.0];
    clip_f32(&mut x, 3.0, 2.0);
    assert_eq!(x, [2.0, 2.0]);
}

#[test]
fn channel_affine_f32_by_hand() {
    let mut out = [0.0; 4];
    channel_affine_f32(
        2,
        2,
        &[2.0, -1.0],
        &[1.0, 0.5],
        &[1.0, 2.0, 3.0, 4.0],
        &mut out,
    );
    assert_eq!(out, [3.0, 5.0, -2.5, -3.5]);
}
