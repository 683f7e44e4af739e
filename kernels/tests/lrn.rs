mod common;

use common::{assert_close, random, SIZES};
use kestrel_kernels::{lrn_f32, reference};
use proptest::prelude::*;

#[allow(clippy::too_many_arguments)]
fn check(channels: usize, hw: usize, size: usize, alpha: f32, beta: f32, bias: f32, seed: u64) {
    let input = random(seed, channels * hw, -20.0, 20.0);
    let (mut fast, mut naive) = (vec![f32::NAN; input.len()], vec![0.0; input.len()]);
    lrn_f32(channels, hw, size, alpha, beta, bias, &input, &mut fast);
    reference::lrn_f32(channels, hw, size, alpha, beta, bias, &input, &mut naive);
    assert_close(
        &fast,
        &naive,
        &format!("lrn c={channels} hw={hw} size={size} beta={beta}"),
    );
}

proptest! {
    #[test]
    fn lrn_f32_matches_reference(
        channels in 1..=17usize,
        hw in prop::sample::select(&SIZES[..]),
        size in 1..=7usize,
        alpha in prop::sample::select(&[1e-4f32, 1e-2, 0.5][..]),
        beta in prop::sample::select(&[0.75f32, 0.5, 1.0, 0.3][..]),
        bias in prop::sample::select(&[1.0f32, 2.0, 0.5][..]),
        seed: u64,
    ) {
        check(channels, hw, size, alpha, beta, bias, seed);
    }
}

#[test]
fn lrn_f32_alexnet_size_5() {
    check(8, 17, 5, 1e-4, 0.75, 1.0, 1);
    check(8, 3, 5, 1e-4, 0.75, 1.0, 2);
}

#[test]
fn lrn_f32_size_3() {
    check(8, 11, 3, 1e-2, 0.75, 1.0, 3);
    check(2, 7, 3, 0.5, 0.5, 2.0, 4);
}

#[test]
fn lrn_f32_even_size_4_window_by_hand() {
    // size 4: channel c sums channels c-1 ..= c+2. alpha / size = 1, beta 1, bias 0.
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let mut out = [0.0; 4];
    lrn_f32(4, 1, 4, 4.0, 1.0, 0.0, &x, &mut out);
    assert_close(
        &out,
        &[1.0 / 14.0, 2.0 / 30.0, 3.0 / 29.0, 4.0 / 25.0],
        "lrn size 4",
    );
    check(8, 15, 4, 1e-4, 0.75, 1.0, 5);
}

#[test]
fn lrn_f32_size_larger_than_channels() {
    check(3, 7, 7, 1e-2, 0.75, 1.0, 6);
    check(1, 7, 5, 1e-2, 0.75, 1.0, 7);
}
