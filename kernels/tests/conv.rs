mod common;

use common::{assert_close_to_bound, random, SIZES};
use kestrel_kernels::{conv2d_f32, reference, Conv2dGeometry};
use proptest::prelude::*;

/// Output size for one spatial axis, or None if the dilated kernel does not fit the padded input.
fn out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pads: usize,
) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    (input + pads >= span).then(|| (input + pads - span) / stride + 1)
}

#[allow(clippy::too_many_arguments)]
fn geometry(
    (in_channels, out_channels, groups): (usize, usize, usize),
    (in_h, in_w): (usize, usize),
    (kernel_h, kernel_w): (usize, usize),
    (stride_h, stride_w): (usize, usize),
    (dilation_h, dilation_w): (usize, usize),
    [pad_top, pad_left, pad_bottom, pad_right]: [usize; 4],
) -> Option<Conv2dGeometry> {
    Some(Conv2dGeometry {
        in_channels,
        in_h,
        in_w,
        out_channels,
        out_h: out_len(in_h, kernel_h, stride_h, dilation_h, pad_top + pad_bottom)?,
        out_w: out_len(in_w, kernel_w, stride_w, dilation_w, pad_left + pad_right)?,
        kernel_h,
        kernel_w,
        stride_h,
        stride_w,
        dilation_h,
        dilation_w,
        pad_top,
        pad_left,
        groups,
    })
}

/// Runs the kernel and the reference on seeded data and compares; returns the output.
fn check(g: &Conv2dGeometry, seed: u64, with_bias: bool) -> Vec<f32> {
    let input = random(seed, g.in_channels * g.in_h * g.in_w, -1.0, 1.0);
    let weights = random(seed ^ 1, g.weights_len(), -1.0, 1.0);
    let bias = random(seed ^ 2, g.out_channels, -1.0, 1.0);
    let bias = with_bias.then_some(bias.as_slice());
    let out_len = g.out_channels * g.out_h * g.out_w;
    // Start from garbage: the kernel must overwrite, not accumulate.
    let mut fast = vec![f32::NAN; out_len];
    let mut naive = vec![0.0; out_len];
    conv2d_f32(g, &input, &weights, bias, &mut fast);
    reference::conv2d_f32(g, &input, &weights, bias, &mut naive);
    // Rounding error scales with each output's sum of |terms|, not with the output itself.
    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
    let abs_bias = bias.map(abs);
    let mut bound = vec![0.0; out_len];
    reference::conv2d_f32(
        g,
        &abs(&input),
        &abs(&weights),
        abs_bias.as_deref(),
        &mut bound,
    );
    assert_close_to_bound(&fast, &naive, &bound, &format!("{g:?}"));
    fast
}

fn spatial() -> impl Strategy<Value = (usize, usize)> {
    (
        prop::sample::select(&SIZES[..]),
        prop::sample::select(&SIZES[..]),
    )
}

fn pads() -> impl Strategy<Value = [usize; 4]> {
    [0..=3usize, 0..=3usize, 0..=3usize, 0..=3usize]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn conv2d_f32_dense_matches_reference(
        cin in 1..=17usize,
        cout in 1..=17usize,
        hw in spatial(),
        kernel in (1..=5usize, 1..=5usize),
        stride in (1..=3usize, 1..=3usize),
        dilation in (1..=2usize, 1..=2usize),
        pads in pads(),
        with_bias: bool,
        seed: u64,
    ) {
        let g = geometry((cin, cout, 1), hw, kernel, stride, dilation, pads);
        prop_assume!(g.is_some());
        check(&g.unwrap(), seed, with_bias);
    }

    #[test]
    fn conv2d_f32_grouped_matches_reference(
        groups in 1..=4usize,
        cin_g in 1..=4usize,
        cout_g in 1..=4usize,
        hw in spatial(),
        kernel in (1..=5usize, 1..=5usize),
        stride in (1..=3usize, 1..=3usize),
        dilation in (1..=2usize, 1..=2usize),
        pads in pads(),
        seed: u64,
    ) {
        let channels = (groups * cin_g, groups * cout_g, groups);
        let g = geometry(channels, hw, kernel, stride, dilation, pads);
        prop_assume!(g.is_some());
        check(&g.unwrap(), seed, true);
    }

    #[test]
    fn conv2d_f32_depthwise_matches_reference(
        channels in 1..=17usize,
        multiplier in 1..=2usize,
        hw in spatial(),
        kernel in (1..=5usize, 1..=5usize),
        stride in (1..=3usize, 1..=3usize),
        dilation in (1..=2usize, 1..=2usize),
        pads in pads(),
        seed: u64,
    ) {
        let ch = (channels, channels * multiplier, channels);
        let g = geometry(ch, hw, kernel, stride, dilation, pads);
        prop_assume!(g.is_some());
        check(&g.unwrap(), seed, true);
    }

    #[test]
    fn conv2d_f32_pointwise_matches_reference(
        cin in 1..=17usize,
        cout in 1..=17usize,
        groups in 1..=2usize,
        hw in spatial(),
        seed: u64,
    ) {
        let g = geometry((cin * groups, cout * groups, groups), hw, (1, 1), (1, 1), (1, 1), [0; 4]);
        check(&g.unwrap(), seed, true);
    }
}

#[test]
fn conv2d_f32_2x2_ones_by_hand() {
    let g = geometry((1, 1, 1), (3, 3), (2, 2), (1, 1), (1, 1), [0; 4]).unwrap();
    let input: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let mut out = vec![0.0; 4];
    conv2d_f32(&g, &input, &[1.0; 4], Some(&[0.5]), &mut out);
    assert_eq!(out, [12.5, 16.5, 24.5, 28.5]);
}

#[test]
fn conv2d_f32_depthwise_multiplier_2_by_hand() {
    // Two input channels, two filters each: output channel oc reads input channel oc / 2.
    let g = geometry((2, 4, 2), (1, 2), (1, 2), (1, 1), (1, 1), [0; 4]).unwrap();
    let input = [1.0, 2.0, 10.0, 20.0];
    let weights = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, -1.0];
    let mut out = vec![0.0; 4];
    conv2d_f32(&g, &input, &weights, None, &mut out);
    assert_eq!(out, [1.0, 2.0, 30.0, -10.0]);
    check(&g, 7, true);
}

#[test]
fn conv2d_f32_kernel_larger_than_input() {
    // 1x1 input under a 3x3 kernel with pad 1: only the centre tap is real.
    let g = geometry((2, 3, 1), (1, 1), (3, 3), (1, 1), (1, 1), [1; 4]).unwrap();
    assert_eq!((g.out_h, g.out_w), (1, 1));
    check(&g, 11, true);
    // 3x3 input under a 7x7 kernel, pad 3, stride 2.
    let g = geometry((3, 4, 1), (3, 3), (7, 7), (2, 2), (1, 1), [3; 4]).unwrap();
    check(&g, 12, true);
    // Dilated 3x3 (span 5) over a 3x3 input padded by 1.
    let g = geometry((3, 2, 1), (3, 3), (3, 3), (1, 1), (2, 2), [1; 4]).unwrap();
    check(&g, 13, false);
}

#[test]
fn conv2d_f32_asymmetric_pads() {
    // Only bottom/right padding, as SAME_UPPER produces for stride 2.
    let g = geometry((3, 5, 1), (7, 7), (3, 3), (2, 2), (1, 1), [0, 0, 1, 1]).unwrap();
    check(&g, 21, true);
    // Only top/left padding.
    let g = geometry((3, 5, 1), (7, 11), (3, 2), (1, 2), (1, 1), [2, 1, 0, 0]).unwrap();
    check(&g, 22, true);
    // Padding that also covers whole output rows and columns.
    let g = geometry((2, 2, 1), (3, 3), (1, 1), (1, 1), (1, 1), [2, 0, 1, 3]).unwrap();
    let out = check(&g, 23, false);
    assert_eq!(&out[..g.out_w * 2], vec![0.0; g.out_w * 2].as_slice());
}

#[test]
fn conv2d_f32_one_by_one_strided_and_padded() {
    let g = geometry((5, 6, 1), (7, 7), (1, 1), (2, 2), (1, 1), [0; 4]).unwrap();
    check(&g, 31, true);
    let g = geometry((5, 6, 1), (7, 7), (1, 1), (1, 1), (1, 1), [1, 1, 1, 1]).unwrap();
    check(&g, 32, true);
}

#[test]
fn conv2d_f32_many_im2col_blocks() {
    // k = 64 * 9 = 576 and out_w = 56 exceed the im2col budget, so rows go in several blocks.
    let g = geometry((64, 8, 1), (56, 56), (3, 3), (1, 1), (1, 1), [1; 4]).unwrap();
    check(&g, 41, true);
    // GoogLeNet's stem: 7x7 stride 2 over 3 channels.
    let g = geometry((3, 8, 1), (112, 112), (7, 7), (2, 2), (1, 1), [3; 4]).unwrap();
    check(&g, 42, true);
}

#[test]
fn conv2d_f32_empty_output_and_zero_k() {
    let mut g = geometry((2, 3, 1), (3, 3), (3, 3), (1, 1), (1, 1), [0; 4]).unwrap();
    g.out_h = 0;
    conv2d_f32(&g, &[0.0; 18], &[0.0; 54], None, &mut []);
    // No input channels: output is the bias alone.
    let g = Conv2dGeometry {
        in_channels: 0,
        ..geometry((2, 3, 1), (3, 3), (1, 1), (1, 1), (1, 1), [0; 4]).unwrap()
    };
    let mut out = vec![f32::NAN; 27];
    conv2d_f32(&g, &[], &[], Some(&[1.0, 2.0, 3.0]), &mut out);
    assert!(out
        .chunks(9)
        .enumerate()
        .all(|(c, ch)| ch.iter().all(|&v| v == (c + 1) as f32)));
}

#[test]
fn conv2d_geometry_macs() {
    // ResNet-50 first layer: 64 * 112 * 112 * 3 * 7 * 7.
    let g = geometry((3, 64, 1), (224, 224), (7, 7), (2, 2), (1, 1), [3; 4]).unwrap();
    assert_eq!((g.out_h, g.out_w), (112, 112));
    assert_eq!(g.macs(), 118_013_952);
    let dw = geometry((32, 32, 32), (112, 112), (3, 3), (1, 1), (1, 1), [1; 4]).unwrap();
    assert_eq!(dw.macs(), 32 * 112 * 112 * 9);
    assert_eq!(Conv2dGeometry { groups: 0, ..dw }.macs(), 0);
}
