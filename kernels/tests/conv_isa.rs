//! Convolution on every available implementation against the f64 reference: the SIMD paths
//! reuse the generic im2col / pointwise drivers but run their products on the packed GEMM.
//!
//! Tolerance: 1e-5 of the largest sum |x||w| + |b| of an output (inputs and weights in
//! [-1, 1), so errors stay ~k eps of it even where a sum cancels to near zero).

mod common;

use common::{assert_close_to_bound, geometry, random, SIZES};
use kestrel_kernels::{conv2d_f32_with, reference, Conv2dGeometry, Isa};
use proptest::prelude::*;

fn check(g: &Conv2dGeometry, seed: u64) {
    let input = random(seed, g.in_channels * g.in_h * g.in_w, -1.0, 1.0);
    let weights = random(seed ^ 1, g.weights_len(), -1.0, 1.0);
    let bias = random(seed ^ 2, g.out_channels, -1.0, 1.0);
    let len = g.out_channels * g.out_h * g.out_w;
    let mut want = vec![0.0; len];
    reference::conv2d_f32(g, &input, &weights, Some(&bias), &mut want);
    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
    let mut bound = vec![0.0; len];
    reference::conv2d_f32(
        g,
        &abs(&input),
        &abs(&weights),
        Some(&abs(&bias)),
        &mut bound,
    );
    for isa in Isa::available() {
        // Garbage in: the conv must overwrite, not accumulate.
        let mut got = vec![f32::NAN; len];
        conv2d_f32_with(isa, g, &input, &weights, Some(&bias), &mut got);
        assert_close_to_bound(&got, &want, &bound, &format!("{isa} {g:?}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn conv_matches_reference_on_every_isa(
        cin in 1..=20usize,
        cout in 1..=20usize,
        groups in 1..=2usize,
        h in prop::sample::select(&SIZES[..]),
        w in prop::sample::select(&SIZES[..]),
        kernel in 1..=3usize,
        stride in 1..=2usize,
        pad in 0..=1usize,
        seed: u64,
    ) {
        if let Some(g) = geometry(cin, cout, groups, (h, w), kernel, stride, pad) {
            check(&g, seed);
        }
    }
}

#[test]
fn pointwise_layer_size() {
    // 1x1 stride 1 skips im2col: the [cin, hw] input is the B operand directly.
    check(&geometry(64, 70, 1, (30, 31), 1, 1, 0).unwrap(), 1);
}

#[test]
fn im2col_deeper_than_one_kc_block() {
    // k = 40 * 9 = 360 spans two KC blocks; several im2col row blocks.
    check(&geometry(40, 33, 1, (28, 28), 3, 1, 1).unwrap(), 2);
    check(&geometry(16, 24, 2, (17, 15), 3, 2, 1).unwrap(), 3);
}

#[test]
fn single_output_that_cancels() {
    // A shrunk proptest case: one output whose 144 terms cancel to about 1e-3, so the error
    // must be judged against the terms' size, not the result's.
    check(&geometry(16, 1, 1, (3, 3), 3, 2, 0).unwrap(), 0);
    check(&geometry(16, 1, 2, (3, 3), 3, 2, 0).unwrap(), 0);
}
