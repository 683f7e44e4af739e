mod common;

use common::{assert_close, random};
use kestrel_kernels::{gemm_f32, reference};
use proptest::prelude::*;

#[allow(clippy::too_many_arguments)]
fn check(m: usize, n: usize, k: usize, ta: bool, tb: bool, alpha: f32, seed: u64) {
    let a = random(seed, m * k, -1.0, 1.0);
    let b = random(seed ^ 1, k * n, -1.0, 1.0);
    let out0 = random(seed ^ 2, m * n, -1.0, 1.0);
    let (mut fast, mut naive) = (out0.clone(), out0);
    gemm_f32(m, n, k, &a, ta, &b, tb, alpha, &mut fast);
    reference::gemm_f32(m, n, k, &a, ta, &b, tb, alpha, &mut naive);
    assert_close(
        &fast,
        &naive,
        &format!("gemm m={m} n={n} k={k} ta={ta} tb={tb}"),
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn gemm_f32_matches_reference(
        m in 1..=17usize,
        n in 1..=17usize,
        k in 1..=17usize,
        ta: bool,
        tb: bool,
        alpha in prop::sample::select(&[1.0f32, -0.5, 2.0][..]),
        seed: u64,
    ) {
        check(m, n, k, ta, tb, alpha, seed);
    }
}

#[test]
fn gemm_f32_all_transpose_combinations() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        for (m, n, k) in [
            (1, 1, 1),
            (4, 8, 16),
            (5, 3, 7),
            (17, 15, 11),
            (1, 1000, 64),
        ] {
            check(m, n, k, ta, tb, 1.0, (m * 100 + n * 10 + k) as u64);
        }
    }
}

#[test]
fn gemm_f32_wide_output_crosses_column_blocks() {
    // n = 600 spans three column blocks; m = 9 leaves a one-row remainder after 4-row blocks.
    check(9, 600, 5, false, false, 1.0, 1);
    check(9, 600, 5, true, false, 0.25, 2);
}

#[test]
fn gemm_f32_fully_connected_layout() {
    // One image through a 256 -> 10 classifier with weights stored [n, k].
    check(1, 10, 256, false, true, 1.0, 3);
}

#[test]
fn gemm_f32_zero_k_leaves_out_unchanged() {
    let mut out = vec![3.0; 6];
    gemm_f32(2, 3, 0, &[], false, &[], false, 1.0, &mut out);
    assert_eq!(out, vec![3.0; 6]);
    gemm_f32(0, 3, 2, &[], true, &[0.0; 6], true, 1.0, &mut []);
}

#[test]
fn gemm_f32_transposed_by_hand() {
    // A^T stored [k=2, m=2] = [[1, 3], [2, 4]] is A = [[1, 2], [3, 4]];
    // B^T stored [n=2, k=2] = [[5, 7], [6, 8]] is B = [[5, 6], [7, 8]].
    let mut out = [0.0; 4];
    gemm_f32(
        2,
        2,
        2,
        &[1.0, 3.0, 2.0, 4.0],
        true,
        &[5.0, 7.0, 6.0, 8.0],
        true,
        1.0,
        &mut out,
    );
    assert_eq!(out, [19.0, 22.0, 43.0, 50.0]);
}
