mod common;

use common::{assert_close, random};
use kestrel_kernels::{reference, softmax_f32};
use proptest::prelude::*;

/// Softmax of one row, checked against the reference and for being a distribution.
fn softmax_row(x: &[f32]) -> Vec<f32> {
    let (mut fast, mut naive) = (vec![f32::NAN; x.len()], vec![0.0; x.len()]);
    softmax_f32(1, x.len(), x, &mut fast);
    reference::softmax_f32(1, x.len(), x, &mut naive);
    assert_close(&fast, &naive, &format!("softmax {x:?}"));
    if !x.iter().any(|v| v.is_nan()) {
        assert!(fast.iter().all(|p| p.is_finite() && *p >= 0.0), "{fast:?}");
        let sum: f64 = fast.iter().map(|&p| p as f64).sum();
        assert!((sum - 1.0).abs() < 1e-5, "sum {sum}");
    }
    fast
}

proptest! {
    #[test]
    fn softmax_f32_matches_reference(
        rows in 1..=4usize,
        cols in 1..=1000usize,
        scale in prop::sample::select(&[1.0f32, 30.0, 1e4, 1e38][..]),
        seed: u64,
    ) {
        let x = random(seed, rows * cols, -scale, scale);
        let (mut fast, mut naive) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        softmax_f32(rows, cols, &x, &mut fast);
        reference::softmax_f32(rows, cols, &x, &mut naive);
        assert_close(&fast, &naive, "softmax");
        for row in fast.chunks(cols) {
            let sum: f64 = row.iter().map(|&p| p as f64).sum();
            prop_assert!((sum - 1.0).abs() < 1e-5);
        }
    }
}

#[test]
fn softmax_f32_large_logits() {
    let p = softmax_row(&[1000.0, 0.0, -1000.0]);
    assert_eq!(p, [1.0, 0.0, 0.0]);
    softmax_row(&[1000.0, 999.0, 998.0]);
}

#[test]
fn softmax_f32_exp_overflow_edge() {
    // exp(88.7) is just below f32::MAX and exp(89) overflows; subtracting the max avoids both.
    let p = softmax_row(&[88.7, 89.0, 0.0]);
    assert!((p[1] / p[0] - 0.3f32.exp()).abs() < 1e-4);
    softmax_row(&[88.7, 88.7]);
    softmax_row(&[89.0; 3]);
}

#[test]
fn softmax_f32_extreme_finite_logits() {
    assert_eq!(softmax_row(&[-1e30, 0.0]), [0.0, 1.0]);
    assert_eq!(softmax_row(&[f32::MAX, -f32::MAX]), [1.0, 0.0]);
    assert_eq!(softmax_row(&[-f32::MAX, -f32::MAX]), [0.5, 0.5]);
    assert_eq!(softmax_row(&[-1e30]), [1.0]);
}

#[test]
fn softmax_f32_equal_values_are_uniform() {
    let p = softmax_row(&[3.5; 8]);
    assert!(p.iter().all(|&v| v == 0.125));
    softmax_row(&[0.0; 1000]);
}

#[test]
fn softmax_f32_all_neg_inf_row_is_uniform() {
    assert_eq!(softmax_row(&[f32::NEG_INFINITY; 4]), [0.25; 4]);
}

#[test]
fn softmax_f32_pos_inf_entries_share_the_mass() {
    let p = softmax_row(&[f32::INFINITY, 1.0, f32::INFINITY, f32::NEG_INFINITY]);
    assert_eq!(p, [0.5, 0.0, 0.5, 0.0]);
}

#[test]
fn softmax_f32_nan_row_is_nan_and_rows_are_independent() {
    let x = [1.0, f32::NAN, 0.0, 2.0, 2.0, 2.0];
    let mut out = [0.0; 6];
    softmax_f32(2, 3, &x, &mut out);
    assert!(out[..3].iter().all(|v| v.is_nan()));
    assert_close(&out[3..], &[1.0 / 3.0; 3], "second row");
}

#[test]
fn softmax_f32_imagenet_row() {
    softmax_row(&random(9, 1000, -15.0, 25.0));
}
