//! Pooling, global average pooling, softmax and LRN on every available implementation
//! (`Isa::available()`: AVX2 or NEON, and generic) against the generic kernels and the naive
//! references, over awkward sizes and worst-case values.
//!
//! Tolerances:
//! - max and average pooling: bit-for-bit equal to the generic kernels. The vector versions
//!   only spread the output positions over lanes; each window's taps are folded in the same
//!   order with the same IEEE operation.
//! - global average pool: both sum in f64 (in a different order), so the f32 mean may differ
//!   by one rounding: 2^-23 of |mean| plus 1e-12 of the largest |input| for cancellation.
//! - softmax and LRN: 1e-5 of the largest |expected| (`assert_close`): the vector exp is within
//!   a few ulp of `f32::exp`, and LRN's square sums use fused multiply-adds.

mod common;

use common::{assert_close, Rng, SIZES};
use kestrel_kernels::{
    avg_pool2d_f32_with, generic, global_avg_pool_f32_with, lrn_f32_with, max_pool2d_f32_with,
    reference, softmax_f32_with, Isa, Pool2dGeometry,
};
use proptest::prelude::*;

/// Values that break careless vector code: huge, tiny, infinite, NaN, signed zeros.
const SPECIALS: [f32; 9] = [
    f32::MAX,
    -f32::MAX,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    f32::MIN_POSITIVE,
    -0.0,
    0.0,
    1e30,
];

/// `len` values in [lo, hi), with about one in `special_every` replaced by a special value
/// (none when 0), drawn only from `specials`.
fn data(
    seed: u64,
    len: usize,
    (lo, hi): (f32, f32),
    special_every: u64,
    specials: &[f32],
) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|_| {
            let v = rng.uniform(lo, hi);
            if special_every > 0 && rng.next_u64().is_multiple_of(special_every) {
                specials[(rng.next_u64() % specials.len() as u64) as usize]
            } else {
                v
            }
        })
        .collect()
}

/// Equal as bits, except that any NaN matches any NaN.
fn assert_same(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits() || (g == 0.0 && w == 0.0);
        assert!(ok, "{what}: element {i}: got {g}, expected {w}");
    }
}

fn out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    pads: (usize, usize),
    ceil: bool,
) -> Option<usize> {
    let padded = input + pads.0 + pads.1;
    let span = padded.checked_sub(kernel)?;
    let mut out = if ceil {
        span.div_ceil(stride)
    } else {
        span / stride
    } + 1;
    // ONNX drops a ceil-mode window that would start in the right padding.
    if ceil && (out - 1) * stride >= input + pads.0 {
        out -= 1;
    }
    Some(out)
}

#[allow(clippy::too_many_arguments)]
fn pool_geometry(
    channels: usize,
    (in_h, in_w): (usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    dilation: usize,
    [pad_top, pad_left, pad_bottom, pad_right]: [usize; 4],
    ceil: bool,
) -> Option<Pool2dGeometry> {
    let span = |k: usize| dilation * (k - 1) + 1;
    Some(Pool2dGeometry {
        channels,
        in_h,
        in_w,
        out_h: out_len(in_h, span(kernel.0), stride.0, (pad_top, pad_bottom), ceil)?,
        out_w: out_len(in_w, span(kernel.1), stride.1, (pad_left, pad_right), ceil)?,
        kernel_h: kernel.0,
        kernel_w: kernel.1,
        stride_h: stride.0,
        stride_w: stride.1,
        dilation_h: dilation,
        dilation_w: dilation,
        pad_top,
        pad_left,
        pad_bottom,
        pad_right,
    })
}

/// Every pooling kernel on every ISA against the generic kernels, and the generic ones
/// against the references where the input is finite.
fn check_pools(g: &Pool2dGeometry, input: &[f32]) {
    let len = g.channels * g.out_h * g.out_w;
    let mut want = vec![0.0; len];
    generic::max_pool2d_f32(g, input, &mut want);
    if input.iter().all(|v| v.is_finite()) {
        let mut naive = vec![0.0; len];
        reference::max_pool2d_f32(g, input, &mut naive);
        assert_close(&want, &naive, "generic max");
    }
    for isa in Isa::available() {
        let mut got = vec![f32::NAN; len];
        max_pool2d_f32_with(isa, g, input, &mut got);
        assert_same(&got, &want, &format!("{isa} max {g:?}"));
    }
    for include_pad in [false, true] {
        generic::avg_pool2d_f32(g, include_pad, input, &mut want);
        for isa in Isa::available() {
            let mut got = vec![f32::NAN; len];
            avg_pool2d_f32_with(isa, g, include_pad, input, &mut got);
            assert_same(&got, &want, &format!("{isa} avg pad={include_pad} {g:?}"));
        }
    }
}

fn check_global_avg_pool(channels: usize, hw: usize, input: &[f32]) {
    let mut want = vec![0.0; channels];
    reference::global_avg_pool_f32(channels, hw, input, &mut want);
    let big = input.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for isa in Isa::available() {
        let mut got = vec![f32::NAN; channels];
        global_avg_pool_f32_with(isa, channels, hw, input, &mut got);
        for (c, (&g, &w)) in got.iter().zip(&want).enumerate() {
            let tol = w.abs() * f32::EPSILON / 2.0 + 1e-12 * big;
            assert!(
                (g - w).abs() <= tol || (g.is_nan() && w.is_nan()) || g == w,
                "{isa} global_avg_pool c={channels} hw={hw}: channel {c}: got {g}, expected {w}"
            );
        }
    }
}

fn check_softmax(rows: usize, cols: usize, input: &[f32]) {
    let mut want = vec![0.0; rows * cols];
    reference::softmax_f32(rows, cols, input, &mut want);
    for isa in Isa::available() {
        let mut got = vec![f32::NAN; rows * cols];
        softmax_f32_with(isa, rows, cols, input, &mut got);
        for (r, (g, w)) in got.chunks(cols).zip(want.chunks(cols)).enumerate() {
            let what = format!("{isa} softmax {rows}x{cols} row {r}");
            assert_close(g, w, &what);
            if !w.iter().any(|v| v.is_nan()) {
                assert!(
                    g.iter().all(|p| p.is_finite() && *p >= 0.0),
                    "{what}: {g:?}"
                );
                let sum: f64 = g.iter().map(|&p| p as f64).sum();
                assert!((sum - 1.0).abs() < 1e-5, "{what}: sum {sum}");
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_lrn(
    channels: usize,
    hw: usize,
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
    input: &[f32],
) {
    let mut want = vec![0.0; input.len()];
    reference::lrn_f32(channels, hw, size, alpha, beta, bias, input, &mut want);
    for isa in Isa::available() {
        let mut got = vec![f32::NAN; input.len()];
        lrn_f32_with(isa, channels, hw, size, alpha, beta, bias, input, &mut got);
        let what = format!("{isa} lrn c={channels} hw={hw} size={size} beta={beta}");
        assert_close(&got, &want, &what);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn pools_match_generic_on_every_isa(
        channels in 1..=5usize,
        hw in (prop::sample::select(&SIZES[..]), 1..=40usize),
        kernel in (1..=5usize, 1..=5usize),
        stride in (1..=3usize, 1..=3usize),
        dilation in 1..=2usize,
        pads in [0..=2usize, 0..=2usize, 0..=2usize, 0..=2usize],
        ceil: bool,
        range in prop::sample::select(&[(-1.0f32, 1.0), (-10.0, -1.0), (-1e38, 1e38)][..]),
        special_every in prop::sample::select(&[0u64, 3, 17][..]),
        seed: u64,
    ) {
        if let Some(g) = pool_geometry(channels, hw, kernel, stride, dilation, pads, ceil) {
            let input = data(seed, channels * g.in_h * g.in_w, range, special_every, &SPECIALS);
            check_pools(&g, &input);
        }
    }

    #[test]
    fn global_avg_pool_matches_reference_on_every_isa(
        channels in 1..=17usize,
        hw in prop::sample::select(&[1usize, 3, 7, 11, 15, 17, 49, 196, 1001][..]),
        range in prop::sample::select(&[(-5.0f32, 5.0), (1e6, 1e7), (-1e30, 1e30)][..]),
        seed: u64,
    ) {
        let input = data(seed, channels * hw, range, 0, &[]);
        check_global_avg_pool(channels, hw, &input);
    }

    #[test]
    fn softmax_matches_reference_on_every_isa(
        rows in 1..=3usize,
        cols in prop_oneof![prop::sample::select(&SIZES[..]), 1..=1100usize],
        scale in prop::sample::select(&[1.0f32, 30.0, 1000.0, 1e38][..]),
        special_every in prop::sample::select(&[0u64, 5, 50][..]),
        seed: u64,
    ) {
        // -inf and -f32::MAX are the worst finite-row specials; NaN and +inf rows are
        // delegated to the generic definition and checked by the named tests below.
        let input = data(seed, rows * cols, (-scale, scale), special_every,
            &[f32::NEG_INFINITY, -f32::MAX, f32::MAX, 88.7, -88.7, 0.0]);
        check_softmax(rows, cols, &input);
    }

    #[test]
    fn lrn_matches_reference_on_every_isa(
        channels in 1..=17usize,
        hw in prop::sample::select(&SIZES[..]),
        size in 1..=7usize,
        alpha in prop::sample::select(&[1e-4f32, 2e-5, 1e-2][..]),
        beta in prop::sample::select(&[0.75f32, 0.5][..]),
        bias in prop::sample::select(&[1.0f32, 2.0][..]),
        scale in prop::sample::select(&[1.0f32, 20.0, 1e4][..]),
        seed: u64,
    ) {
        let input = data(seed, channels * hw, (-scale, scale), 0, &[]);
        check_lrn(channels, hw, size, alpha, beta, bias, &input);
    }
}

#[test]
fn pools_all_negative_infinity_and_nan() {
    // Padding must act as -inf for max (not 0) and NaN must win from any lane position.
    for w in [1usize, 8, 9, 16, 17, 33] {
        for stride in 1..=3 {
            let g = pool_geometry(2, (3, w), (3, 3), (stride, stride), 1, [1; 4], true).unwrap();
            let n = 2 * 3 * w;
            check_pools(&g, &vec![f32::NEG_INFINITY; n]);
            check_pools(&g, &vec![-f32::MAX; n]);
            for nan_at in [0, w / 2, n - 1] {
                let mut input = vec![-1.0; n];
                input[nan_at] = f32::NAN;
                check_pools(&g, &input);
            }
        }
    }
}

#[test]
fn pools_googlenet_and_resnet_layers() {
    // GoogLeNet: 3x3/2 ceil pools at 112 and 56, 3x3/1 pad 1 in the inception blocks, the
    // 5x5/3 auxiliary average pool; ResNet: 3x3/2 pad 1 after the stem.
    let layers = [
        (8, (112, 112), 3, 2, [0; 4], true),
        (8, (56, 56), 3, 2, [0; 4], true),
        (9, (28, 28), 3, 1, [1; 4], false),
        (3, (14, 14), 5, 3, [0; 4], false),
        (5, (112, 112), 3, 2, [1; 4], false),
    ];
    for (i, (c, hw, k, s, pads, ceil)) in layers.into_iter().enumerate() {
        let g = pool_geometry(c, hw, (k, k), (s, s), 1, pads, ceil).unwrap();
        check_pools(&g, &data(i as u64, c * hw.0 * hw.1, (-3.0, 3.0), 0, &[]));
    }
}

#[test]
fn global_avg_pool_huge_map_keeps_precision() {
    // 2^24 values of 0.1: an f32 running sum would stall at 2^21.
    let hw = 1 << 24;
    let input = vec![0.1f32; hw];
    for isa in Isa::available() {
        let mut out = [0.0];
        global_avg_pool_f32_with(isa, 1, hw, &input, &mut out);
        assert!((out[0] - 0.1).abs() < 1e-7, "{isa}: {}", out[0]);
    }
    check_global_avg_pool(3, 0, &[]);
}

#[test]
fn softmax_large_logits_and_exp_overflow_edge() {
    let rows: [&[f32]; 8] = [
        &[1000.0, 999.0, 998.0, -1000.0, 0.0],
        &[88.72, 88.73, 89.0, 88.0, 87.0, -87.0, -88.0, -104.0, -200.0],
        &[f32::MAX, -f32::MAX, 0.0, f32::MAX, 3.0, 4.0, 5.0, 6.0, 7.0],
        &[
            f32::NEG_INFINITY,
            1.0,
            f32::NEG_INFINITY,
            2.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
        ],
        &[f32::NEG_INFINITY; 11],
        &[
            f32::INFINITY,
            1.0,
            f32::INFINITY,
            5.0,
            1.0,
            2.0,
            3.0,
            4.0,
            5.0,
        ],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, f32::NAN, 9.0],
        &[
            -87.3, -87.4, -86.0, 0.0, -103.0, -103.9, -104.0, -20.0, -30.0,
        ],
    ];
    for x in rows {
        check_softmax(1, x.len(), x);
    }
}

#[test]
fn lrn_googlenet_layers() {
    // GoogLeNet's two LRNs: size 5, alpha 1e-4, beta 0.75, bias 1, after conv1 and conv2.
    check_lrn(
        64,
        56 * 56,
        5,
        1e-4,
        0.75,
        1.0,
        &data(1, 64 * 56 * 56, (-50.0, 50.0), 0, &[]),
    );
    check_lrn(
        19,
        15,
        5,
        1e-4,
        0.75,
        1.0,
        &data(2, 19 * 15, (-1e3, 1e3), 0, &[]),
    );
}
