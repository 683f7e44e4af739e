mod common;

use common::{assert_close, random, SIZES};
use kestrel_kernels::{
    avg_pool2d_f32, global_avg_pool_f32, max_pool2d_f32, reference, Pool2dGeometry,
};
use proptest::prelude::*;

/// Output length for one axis, ONNX style. In ceil mode a last window that would start in the
/// right padding is dropped only when `onnx_drop` is set, so both kinds of geometry get tested.
fn out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    (pad_begin, pad_end): (usize, usize),
    ceil: bool,
    onnx_drop: bool,
) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    let padded = input + pad_begin + pad_end;
    if padded < span {
        return None;
    }
    let mut out = if ceil {
        (padded - span).div_ceil(stride) + 1
    } else {
        (padded - span) / stride + 1
    };
    if ceil && onnx_drop && (out - 1) * stride >= input + pad_begin {
        out -= 1;
    }
    Some(out)
}

fn geometry(
    channels: usize,
    (in_h, in_w): (usize, usize),
    (kernel_h, kernel_w): (usize, usize),
    (stride_h, stride_w): (usize, usize),
    (dilation_h, dilation_w): (usize, usize),
    [pad_top, pad_left, pad_bottom, pad_right]: [usize; 4],
    (ceil, onnx_drop): (bool, bool),
) -> Option<Pool2dGeometry> {
    Some(Pool2dGeometry {
        channels,
        in_h,
        in_w,
        out_h: out_len(
            in_h,
            kernel_h,
            stride_h,
            dilation_h,
            (pad_top, pad_bottom),
            ceil,
            onnx_drop,
        )?,
        out_w: out_len(
            in_w,
            kernel_w,
            stride_w,
            dilation_w,
            (pad_left, pad_right),
            ceil,
            onnx_drop,
        )?,
        kernel_h,
        kernel_w,
        stride_h,
        stride_w,
        dilation_h,
        dilation_w,
        pad_top,
        pad_left,
        pad_bottom,
        pad_right,
    })
}

fn simple(
    in_hw: (usize, usize),
    k: usize,
    s: usize,
    pads: [usize; 4],
    ceil: bool,
) -> Pool2dGeometry {
    geometry(1, in_hw, (k, k), (s, s), (1, 1), pads, (ceil, true)).unwrap()
}

/// Runs every pooling kernel against its reference on `input`.
fn check_all(g: &Pool2dGeometry, input: &[f32]) {
    let len = g.channels * g.out_h * g.out_w;
    let (mut fast, mut naive) = (vec![f32::NAN; len], vec![0.0; len]);
    max_pool2d_f32(g, input, &mut fast);
    reference::max_pool2d_f32(g, input, &mut naive);
    assert_close(&fast, &naive, &format!("max {g:?}"));
    for include_pad in [false, true] {
        avg_pool2d_f32(g, include_pad, input, &mut fast);
        reference::avg_pool2d_f32(g, include_pad, input, &mut naive);
        assert_close(
            &fast,
            &naive,
            &format!("avg include_pad={include_pad} {g:?}"),
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn pool2d_f32_matches_reference(
        channels in 1..=17usize,
        hw in (prop::sample::select(&SIZES[..]), prop::sample::select(&SIZES[..])),
        kernel in (1..=5usize, 1..=5usize),
        stride in (1..=3usize, 1..=3usize),
        dilation in (1..=2usize, 1..=2usize),
        pads in [0..=3usize, 0..=3usize, 0..=3usize, 0..=3usize],
        ceil in (any::<bool>(), any::<bool>()),
        negative: bool,
        seed: u64,
    ) {
        let g = geometry(channels, hw, kernel, stride, dilation, pads, ceil);
        prop_assume!(g.is_some());
        let g = g.unwrap();
        // All-negative inputs expose padding wrongly read as 0.
        let (lo, hi) = if negative { (-10.0, -1.0) } else { (-1.0, 1.0) };
        check_all(&g, &random(seed, channels * g.in_h * g.in_w, lo, hi));
    }

    #[test]
    fn global_avg_pool_f32_matches_reference(
        channels in 1..=17usize,
        hw in 1..=300usize,
        seed: u64,
    ) {
        let input = random(seed, channels * hw, -5.0, 5.0);
        let (mut fast, mut naive) = (vec![0.0; channels], vec![0.0; channels]);
        global_avg_pool_f32(channels, hw, &input, &mut fast);
        reference::global_avg_pool_f32(channels, hw, &input, &mut naive);
        assert_close(&fast, &naive, "global_avg_pool");
    }
}

#[test]
fn max_pool2d_f32_all_negative_with_padding() {
    // 3x3 window, pad 1: every window holds padding, and the max must still be a real value.
    let g = simple((3, 3), 3, 1, [1; 4], false);
    let input: Vec<f32> = (1..=9).map(|v| -(v as f32)).collect();
    let mut out = vec![0.0; 9];
    max_pool2d_f32(&g, &input, &mut out);
    assert_eq!(out, [-1.0, -1.0, -2.0, -1.0, -1.0, -2.0, -4.0, -4.0, -5.0]);
}

#[test]
fn max_pool2d_f32_nan_propagates() {
    let g = simple((2, 4), 2, 2, [0; 4], false);
    let mut input = vec![1.0; 8];
    input[1] = f32::NAN;
    let mut out = vec![0.0; 2];
    max_pool2d_f32(&g, &input, &mut out);
    assert!(out[0].is_nan());
    assert_eq!(out[1], 1.0);
    // NaN in the first tap must survive larger later taps too.
    input[0] = f32::NAN;
    input[1] = 5.0;
    max_pool2d_f32(&g, &input, &mut out);
    assert!(out[0].is_nan());
}

#[test]
fn pool2d_f32_ceil_window_starting_in_right_padding() {
    // in_w 2, k 2, s 2, pad right 1, ceil mode without ONNX's drop rule: the second window
    // starts at column 2, inside the right padding, and has no tap inside the input.
    let g = geometry(
        1,
        (1, 2),
        (1, 2),
        (1, 2),
        (1, 1),
        [0, 0, 0, 1],
        (true, false),
    )
    .unwrap();
    assert_eq!(g.out_w, 2);
    let input = [-3.0, -4.0];
    let mut out = vec![0.0; 2];
    max_pool2d_f32(&g, &input, &mut out);
    assert_eq!(out, [-3.0, f32::NEG_INFINITY]);
    avg_pool2d_f32(&g, false, &input, &mut out);
    assert_eq!(out, [-3.5, 0.0]);
    // Column 2 is padding inside the padded input, column 3 is past it: one counted tap.
    avg_pool2d_f32(&g, true, &input, &mut out);
    assert_eq!(out, [-3.5, 0.0]);
    check_all(&g, &input);
}

#[test]
fn avg_pool2d_f32_count_include_pad_bottom_right_only_2x2() {
    // Input 1x1x2x2 [[1, 2], [3, 4]], k 2, s 1, pads bottom/right 1: output 2x2.
    let g = simple((2, 2), 2, 1, [0, 0, 1, 1], false);
    let input = [1.0, 2.0, 3.0, 4.0];
    let mut out = vec![0.0; 4];
    avg_pool2d_f32(&g, true, &input, &mut out);
    assert_eq!(out, [10.0 / 4.0, 6.0 / 4.0, 7.0 / 4.0, 4.0 / 4.0]);
    avg_pool2d_f32(&g, false, &input, &mut out);
    assert_eq!(out, [10.0 / 4.0, 6.0 / 2.0, 7.0 / 2.0, 4.0 / 1.0]);
    // k 2, s 2: a single window, all inside.
    let g = simple((2, 2), 2, 2, [0, 0, 1, 1], true);
    assert_eq!((g.out_h, g.out_w), (1, 1));
    let mut out = vec![0.0; 1];
    avg_pool2d_f32(&g, true, &input, &mut out);
    assert_eq!(out, [2.5]);
}

#[test]
fn avg_pool2d_f32_count_include_pad_3x3_stride_2() {
    // [[1, 2, 3], [4, 5, 6], [7, 8, 9]], k 2, s 2, pads bottom/right 1: output 2x2.
    let g = simple((3, 3), 2, 2, [0, 0, 1, 1], false);
    let input: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let mut out = vec![0.0; 4];
    avg_pool2d_f32(&g, true, &input, &mut out);
    assert_eq!(out, [3.0, 2.25, 3.75, 2.25]);
    avg_pool2d_f32(&g, false, &input, &mut out);
    assert_eq!(out, [3.0, 4.5, 7.5, 9.0]);
}

#[test]
fn avg_pool2d_f32_ceil_window_past_padded_edge() {
    // Row [1, 2, 3, 4, 5], k 3, s 2, pad right 1, ceil: windows start at 0, 2, 4; the last
    // covers column 4 (input), 5 (padding) and 6 (past the padded edge, never counted).
    let g = geometry(
        1,
        (1, 5),
        (1, 3),
        (1, 2),
        (1, 1),
        [0, 0, 0, 1],
        (true, true),
    )
    .unwrap();
    assert_eq!(g.out_w, 3);
    let input = [1.0, 2.0, 3.0, 4.0, 5.0];
    let mut out = vec![0.0; 3];
    avg_pool2d_f32(&g, true, &input, &mut out);
    assert_eq!(out, [2.0, 4.0, 2.5]);
    avg_pool2d_f32(&g, false, &input, &mut out);
    assert_eq!(out, [2.0, 4.0, 5.0]);
    max_pool2d_f32(&g, &input, &mut out);
    assert_eq!(out, [3.0, 5.0, 5.0]);
}

#[test]
fn max_pool2d_f32_googlenet_3x3_s2_ceil() {
    // GoogLeNet pools 112 -> 56 with a 3x3/2 ceil-mode window; the last window overhangs.
    let g = geometry(4, (112, 112), (3, 3), (2, 2), (1, 1), [0; 4], (true, true)).unwrap();
    assert_eq!((g.out_h, g.out_w), (56, 56));
    check_all(&g, &random(5, 4 * 112 * 112, -3.0, -1.0));
}

#[test]
fn global_avg_pool_f32_huge_map_keeps_precision() {
    // 2^24 values of 0.1: an f32 running sum stalls at 2^21 long before the end.
    let hw = 1 << 24;
    let input = vec![0.1f32; hw];
    let mut out = [0.0];
    global_avg_pool_f32(1, hw, &input, &mut out);
    assert!((out[0] - 0.1).abs() < 1e-7, "{}", out[0]);
}

#[test]
fn global_avg_pool_f32_empty_map_is_nan() {
    let mut out = [0.0; 2];
    global_avg_pool_f32(2, 0, &[], &mut out);
    assert!(out.iter().all(|v| v.is_nan()));
}
