mod common;

use common::{assert_close, random};
use kestrel_kernels::{pad_constant_f32, reference, transpose_f32};
use proptest::prelude::*;

fn transpose(input: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f32> {
    let (mut fast, mut naive) = (vec![f32::NAN; input.len()], vec![0.0; input.len()]);
    transpose_f32(input, shape, perm, &mut fast);
    reference::transpose_f32(input, shape, perm, &mut naive);
    assert_close(&fast, &naive, &format!("transpose {shape:?} {perm:?}"));
    fast
}

fn pad(input: &[f32], shape: &[usize], pads: &[usize], value: f32) -> Vec<f32> {
    let rank = shape.len();
    let len = (0..rank)
        .map(|i| shape[i] + pads[i] + pads[rank + i])
        .product();
    let (mut fast, mut naive) = (vec![f32::NAN; len], vec![0.0; len]);
    pad_constant_f32(input, shape, pads, value, &mut fast);
    reference::pad_constant_f32(input, shape, pads, value, &mut naive);
    assert_close(&fast, &naive, &format!("pad {shape:?} {pads:?}"));
    fast
}

fn shape_and_perm() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec(1..=5usize, 1..=5).prop_flat_map(|shape| {
        let perm: Vec<usize> = (0..shape.len()).collect();
        (Just(shape), Just(perm).prop_shuffle())
    })
}

fn shape_and_pads() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec(0..=5usize, 0..=4).prop_flat_map(|shape| {
        let rank = shape.len();
        (Just(shape), prop::collection::vec(0..=2usize, 2 * rank))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn transpose_f32_matches_reference((shape, perm) in shape_and_perm(), seed: u64) {
        let input = random(seed, shape.iter().product(), -1.0, 1.0);
        transpose(&input, &shape, &perm);
    }

    #[test]
    fn pad_constant_f32_matches_reference((shape, pads) in shape_and_pads(), seed: u64) {
        let input = random(seed, shape.iter().product(), -1.0, 1.0);
        pad(&input, &shape, &pads, -7.5);
    }
}

#[test]
fn transpose_f32_nchw_nhwc_round_trip() {
    let shape = [2, 3, 5, 7];
    let x = random(1, 2 * 3 * 5 * 7, -1.0, 1.0);
    let nhwc = transpose(&x, &shape, &[0, 2, 3, 1]);
    // Element (n, c, h, w) lands at (n, h, w, c).
    let (n, c, h, w) = (1, 2, 4, 6);
    assert_eq!(
        nhwc[((n * 5 + h) * 7 + w) * 3 + c],
        x[((n * 3 + c) * 5 + h) * 7 + w]
    );
    let back = transpose(&nhwc, &[2, 5, 7, 3], &[0, 3, 1, 2]);
    assert_eq!(back, x);
}

#[test]
fn transpose_f32_rank_5() {
    let shape = [2, 3, 4, 1, 5];
    let x: Vec<f32> = (0..120).map(|v| v as f32).collect();
    let y = transpose(&x, &shape, &[4, 2, 0, 3, 1]);
    // Output shape [5, 4, 2, 1, 3]: y[e, c, a, 0, b] = x[a, b, c, 0, e].
    let (a, b, c, e) = (1, 2, 3, 4);
    assert_eq!(
        y[((e * 4 + c) * 2 + a) * 3 + b],
        x[((a * 3 + b) * 4 + c) * 5 + e]
    );
}

#[test]
fn transpose_f32_identity_and_scalar() {
    let x = random(2, 24, -1.0, 1.0);
    assert_eq!(transpose(&x, &[2, 3, 4], &[0, 1, 2]), x);
    assert_eq!(transpose(&[4.0], &[], &[]), [4.0]);
    transpose_f32(&[], &[2, 0, 3], &[2, 0, 1], &mut []);
}

#[test]
fn pad_constant_f32_2d_by_hand() {
    // [[1, 2], [3, 4]] with one row above, one column left and two columns right.
    let y = pad(&[1.0, 2.0, 3.0, 4.0], &[2, 2], &[1, 1, 0, 2], 0.0);
    #[rustfmt::skip]
    let want = [
        0.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 1.0, 2.0, 0.0, 0.0,
        0.0, 3.0, 4.0, 0.0, 0.0,
    ];
    assert_eq!(y, want);
}

#[test]
fn pad_constant_f32_nchw_spatial_and_edge_cases() {
    let x = random(3, 2 * 3 * 4 * 5, -1.0, 1.0);
    pad(
        &x,
        &[2, 3, 4, 5],
        &[0, 0, 1, 2, 0, 0, 3, 0],
        f32::NEG_INFINITY,
    );
    assert_eq!(pad(&x, &[2, 3, 4, 5], &[0; 8], 1.0), x);
    assert_eq!(pad(&[], &[0, 2], &[1, 0, 0, 1], 9.0), [9.0; 3]);
    assert_eq!(pad(&[5.0], &[], &[], 0.0), [5.0]);
}
