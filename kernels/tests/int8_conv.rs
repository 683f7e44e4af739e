//! Quantized convolution on every available int8 micro-kernel against the scalar reference
//! (`int8::reference::conv2d_i8`, which requantizes with the f64 multiplier). Outputs must be
//! identical: u8 and i8 bit for bit, f32 to the bit as well (both dequantize the same exact
//! accumulator with the same single rounding).

mod common;

use common::{Rng, SIZES};
use kestrel_kernels::int8::reference;
use kestrel_kernels::{
    conv2d_i8, pack_conv_weights_i8_with, Conv2dGeometry, Int8Input, Int8Kernel, Int8Output,
    QuantizedData,
};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutKind {
    U8,
    I8,
    F32,
}

#[derive(Clone, Debug)]
struct Case {
    g: Conv2dGeometry,
    signed_input: bool,
    input: Vec<u8>,
    zx: i32,
    x_scale: f32,
    weights: Vec<i8>,
    w_scales: Vec<f32>,
    bias: Option<Vec<i32>>,
    out: OutKind,
    y_scale: f32,
    zy: i32,
    relu: bool,
    residual: Option<Vec<u8>>,
}

impl Case {
    /// Random data for `g`; the output scale puts typical outputs across the whole range so
    /// both saturation ends are hit.
    fn random(g: Conv2dGeometry, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut next = || rng.next_u64();
        let signed_input = next() % 2 == 0;
        let zx = if signed_input {
            [-128, 0, 127, (next() % 256) as i32 - 128][(next() % 4) as usize]
        } else {
            [0, 128, 255, (next() % 256) as i32][(next() % 4) as usize]
        };
        let out = [OutKind::U8, OutKind::I8, OutKind::F32][(next() % 3) as usize];
        let zy = match out {
            OutKind::U8 => [0, 128, 255, (next() % 256) as i32][(next() % 4) as usize],
            _ => [-128, 0, 127, (next() % 256) as i32 - 128][(next() % 4) as usize],
        };
        let k = (g.in_channels_per_group() * g.kernel_h * g.kernel_w).max(1);
        let w_scales = (0..g.out_channels)
            .map(|_| 0.001 + (next() % 1000) as f32 * 1e-5)
            .collect();
        let x_scale = 0.01 + (next() % 100) as f32 * 1e-4;
        // |acc| is around 128 * 74 * sqrt(k); aim that at ~100 output steps.
        let y_scale = x_scale * 0.006 * 128.0 * 74.0 * (k as f32).sqrt() / 100.0;
        let n_out = g.out_channels * g.out_h * g.out_w;
        Case {
            g,
            signed_input,
            input: (0..g.in_channels * g.in_h * g.in_w)
                .map(|_| next() as u8)
                .collect(),
            zx,
            x_scale,
            weights: (0..g.weights_len()).map(|_| next() as i8).collect(),
            w_scales,
            bias: (next() % 2 == 0).then(|| {
                (0..g.out_channels)
                    .map(|_| (next() % 200_001) as i32 - 100_000)
                    .collect()
            }),
            out,
            y_scale,
            zy,
            relu: next() % 2 == 0,
            residual: (next() % 3 == 0).then(|| (0..n_out).map(|_| next() as u8).collect()),
        }
    }

    fn input(&self) -> Int8Input<'_> {
        let data = if self.signed_input {
            // Same bytes read as i8.
            QuantizedData::I8(bytes_as_i8(&self.input))
        } else {
            QuantizedData::U8(&self.input)
        };
        Int8Input {
            data,
            scale: self.x_scale,
            zero_point: self.zx,
        }
    }

    /// Runs `conv` with an output of the case's kind and returns its bit patterns.
    fn run(&self, conv: impl FnOnce(Int8Output<'_>)) -> Vec<u32> {
        let len = self.g.out_channels * self.g.out_h * self.g.out_w;
        let res_u8 = self.residual.as_deref();
        let res_f32: Option<Vec<f32>> = self
            .residual
            .as_ref()
            .map(|r| r.iter().map(|&v| (v as f32 - 100.0) * 0.37).collect());
        match self.out {
            OutKind::U8 => {
                let mut data = vec![0xa5u8; len];
                conv(Int8Output::U8 {
                    data: &mut data,
                    scale: self.y_scale,
                    zero_point: self.zy as u8,
                    residual: res_u8,
                });
                data.iter().map(|&v| v as u32).collect()
            }
            OutKind::I8 => {
                let mut data = vec![0x5ai8; len];
                conv(Int8Output::I8 {
                    data: &mut data,
                    scale: self.y_scale,
                    zero_point: self.zy as i8,
                    residual: res_u8.map(bytes_as_i8),
                });
                data.iter().map(|&v| v as u8 as u32).collect()
            }
            OutKind::F32 => {
                let mut data = vec![f32::NAN; len];
                conv(Int8Output::F32 {
                    data: &mut data,
                    residual: res_f32.as_deref(),
                });
                data.iter().map(|v| v.to_bits()).collect()
            }
        }
    }

    fn check(&self) {
        let want = self.run(|out| {
            reference::conv2d_i8(
                &self.g,
                self.input(),
                &self.weights,
                &self.w_scales,
                self.bias.as_deref(),
                self.relu,
                out,
            )
        });
        for kernel in Int8Kernel::available() {
            let packed = pack_conv_weights_i8_with(kernel, &self.g, &self.weights, &self.w_scales);
            assert_eq!(packed.kernel(), kernel);
            let got = self.run(|out| {
                conv2d_i8(
                    &self.g,
                    self.input(),
                    &packed,
                    self.bias.as_deref(),
                    self.relu,
                    out,
                )
            });
            if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
                panic!(
                    "{kernel}: output {i} got {:#x} want {:#x}\n{:?}",
                    got[i],
                    want[i],
                    self.describe()
                );
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "{:?} signed_input={} zx={} out={:?} zy={} relu={} bias={} residual={}",
            self.g,
            self.signed_input,
            self.zx,
            self.out,
            self.zy,
            self.relu,
            self.bias.is_some(),
            self.residual.is_some()
        )
    }
}

fn bytes_as_i8(v: &[u8]) -> &[i8] {
    // SAFETY: u8 and i8 have the same size and alignment and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len()) }
}

#[allow(clippy::too_many_arguments)]
fn geometry(
    cin_g: usize,
    cout_g: usize,
    groups: usize,
    hw: (usize, usize),
    kernel: (usize, usize),
    stride: usize,
    pad: usize,
    dilation: usize,
) -> Option<Conv2dGeometry> {
    let out = |i: usize, k: usize| {
        (i + 2 * pad)
            .checked_sub(dilation * (k - 1) + 1)
            .map(|s| s / stride + 1)
    };
    Some(Conv2dGeometry {
        in_channels: cin_g * groups,
        in_h: hw.0,
        in_w: hw.1,
        out_channels: cout_g * groups,
        out_h: out(hw.0, kernel.0)?,
        out_w: out(hw.1, kernel.1)?,
        kernel_h: kernel.0,
        kernel_w: kernel.1,
        stride_h: stride,
        stride_w: stride,
        dilation_h: dilation,
        dilation_w: dilation,
        pad_top: pad,
        pad_left: pad,
        groups,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn conv_matches_reference_on_every_kernel(
        cin_g in 1..=20usize,
        cout_g in 1..=20usize,
        groups in 1..=3usize,
        h in prop::sample::select(&SIZES[..]),
        w in prop::sample::select(&SIZES[..]),
        kernel in prop::sample::select(&[(1usize, 1usize), (3, 3), (1, 3), (5, 5), (2, 1)][..]),
        stride in 1..=2usize,
        pad in 0..=2usize,
        dilation in 1..=2usize,
        seed: u64,
    ) {
        if let Some(g) = geometry(cin_g, cout_g, groups, (h, w), kernel, stride, pad, dilation) {
            Case::random(g, seed).check();
        }
    }

    #[test]
    fn depthwise_matches_reference_on_every_kernel(
        channels in 1..=20usize,
        multiplier in 1..=2usize,
        h in prop::sample::select(&SIZES[..]),
        w in prop::sample::select(&SIZES[..]),
        kernel in prop::sample::select(&[(1usize, 1usize), (3, 3), (5, 5)][..]),
        stride in 1..=2usize,
        pad in 0..=2usize,
        dilation in 1..=2usize,
        seed: u64,
    ) {
        if let Some(g) = geometry(1, multiplier, channels, (h, w), kernel, stride, pad, dilation) {
            Case::random(g, seed).check();
        }
    }

    /// Depths k = cin * 9 below, at and above a multiple of every kernel's depth group and
    /// across several column panels.
    #[test]
    fn deep_3x3_matches_reference(
        cin in prop::sample::select(&[27usize, 28, 29, 57, 64, 113, 128][..]),
        cout in prop::sample::select(&[5usize, 8, 17, 33][..]),
        hw in prop::sample::select(&[7usize, 11, 15][..]),
        seed: u64,
    ) {
        let g = geometry(cin, cout, 1, (hw, hw), (3, 3), 1, 1, 1).unwrap();
        Case::random(g, seed).check();
    }
}

/// Extreme inputs everywhere: every element 0 / 255 (or -128 / 127), weights all 127 or all
/// -128, every extreme zero point, with and without padding, into each output type.
#[test]
fn worst_case_values() {
    let shapes = [
        geometry(3, 5, 1, (7, 7), (3, 3), 1, 1, 1).unwrap(),
        geometry(17, 9, 1, (3, 3), (1, 1), 1, 0, 1).unwrap(),
        geometry(1, 2, 6, (11, 11), (3, 3), 2, 2, 1).unwrap(),
        geometry(40, 6, 1, (5, 5), (3, 3), 1, 1, 1).unwrap(),
    ];
    for g in shapes {
        for (x, signed_input) in [(0u8, false), (255, false), (0x80, true), (0x7f, true)] {
            for w in [127i8, -128] {
                let zxs: &[i32] = if signed_input {
                    &[-128, 0, 127]
                } else {
                    &[0, 128, 255]
                };
                for &zx in zxs {
                    for out in [OutKind::U8, OutKind::I8, OutKind::F32] {
                        let mut c = Case::random(g, (x as u64) << 8 | zx as u8 as u64);
                        c.input.fill(x);
                        c.signed_input = signed_input;
                        c.zx = zx;
                        c.weights.fill(w);
                        c.out = out;
                        c.zy = if out == OutKind::U8 { 128 } else { 0 };
                        c.check();
                    }
                }
            }
        }
    }
}

/// Requantization multiplier exactly 0.5 (x_scale 1, w_scale 0.5, y_scale 1): every odd
/// accumulator is a tie and must round to even, in every kernel.
#[test]
fn ties_round_to_even_through_the_conv() {
    let g = geometry(3, 4, 1, (7, 7), (3, 3), 1, 1, 1).unwrap();
    for out in [OutKind::U8, OutKind::I8] {
        let mut c = Case::random(g, 99);
        c.x_scale = 1.0;
        c.w_scales.fill(0.5);
        c.y_scale = 1.0;
        c.out = out;
        c.input.iter_mut().for_each(|v| *v %= 7);
        c.weights.iter_mut().for_each(|v| *v %= 5);
        c.zx = if c.signed_input { 1 } else { 2 };
        c.zy = 3;
        c.residual = None;
        c.check();
    }
}

/// ReLU clamps at the output zero point; a residual in the output domain adds before it.
#[test]
fn relu_and_residual_by_hand() {
    // 1x1 conv, one channel, weight 1: acc = x - zx. x_scale = y_scale, w_scale = 1.
    let g = geometry(1, 1, 1, (1, 4), (1, 1), 1, 0, 1).unwrap();
    let x = [10u8, 20, 30, 40];
    for kernel in Int8Kernel::available() {
        let packed = pack_conv_weights_i8_with(kernel, &g, &[1], &[1.0]);
        let input = Int8Input {
            data: QuantizedData::U8(&x),
            scale: 0.5,
            zero_point: 25,
        };
        let mut y = [0u8; 4];
        conv2d_i8(
            &g,
            input,
            &packed,
            None,
            true,
            Int8Output::U8 {
                data: &mut y,
                scale: 0.5,
                zero_point: 100,
                residual: None,
            },
        );
        // acc = -15, -5, 5, 15; + zp 100, relu at 100.
        assert_eq!(y, [100, 100, 105, 115], "{kernel}");
        let residual = [90u8, 120, 100, 255];
        conv2d_i8(
            &g,
            input,
            &packed,
            Some(&[3]),
            true,
            Int8Output::U8 {
                data: &mut y,
                scale: 0.5,
                zero_point: 100,
                residual: Some(&residual),
            },
        );
        // acc = -12, -2, 8, 18; + residual (its zp cancels the output's); relu at 100.
        assert_eq!(y, [100, 118, 108, 255], "{kernel}");
        let mut f = [0.0f32; 4];
        conv2d_i8(
            &g,
            input,
            &packed,
            None,
            false,
            Int8Output::F32 {
                data: &mut f,
                residual: Some(&[1.0, 1.0, 1.0, 1.0]),
            },
        );
        assert_eq!(f, [-6.5, -1.5, 3.5, 8.5], "{kernel}");
    }
}

/// Output channels are split across the pool's threads; every thread count must give the
/// same bits (and the reference's), for pointwise, im2col, grouped and depthwise paths, with
/// channel counts that leave a partial register tile in some thread's share.
#[test]
fn thread_count_does_not_change_a_bit() {
    let shapes = [
        geometry(64, 70, 1, (15, 17), (1, 1), 1, 0, 1).unwrap(),
        geometry(40, 53, 1, (11, 9), (3, 3), 1, 1, 1).unwrap(),
        geometry(16, 48, 2, (7, 7), (3, 3), 2, 1, 1).unwrap(),
        geometry(1, 1, 50, (13, 11), (3, 3), 1, 1, 1).unwrap(),
        geometry(300, 64, 1, (7, 7), (3, 3), 1, 1, 1).unwrap(),
    ];
    for (i, g) in shapes.into_iter().enumerate() {
        for out in [OutKind::U8, OutKind::I8, OutKind::F32] {
            let mut case = Case::random(g, 100 + i as u64);
            case.out = out;
            case.residual = Some(
                (0..g.out_channels * g.out_h * g.out_w)
                    .map(|j| (j * 37 % 251) as u8)
                    .collect(),
            );
            case.check();
            for kernel in Int8Kernel::available() {
                let packed =
                    pack_conv_weights_i8_with(kernel, &case.g, &case.weights, &case.w_scales);
                let run_on = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    pool.install(|| {
                        case.run(|o| {
                            conv2d_i8(
                                &case.g,
                                case.input(),
                                &packed,
                                case.bias.as_deref(),
                                case.relu,
                                o,
                            )
                        })
                    })
                };
                let one = run_on(1);
                for threads in [2, 3] {
                    assert!(
                        run_on(threads) == one,
                        "{kernel}: {threads} threads differ from 1 on {}",
                        case.describe()
                    );
                }
            }
        }
    }
}

#[test]
fn layer_like_shapes() {
    // Pointwise (input is the B operand), a strided 1x1 through im2col, a ResNet-like 3x3 and
    // a grouped 3x3 over several im2col row blocks.
    for (g, seed) in [
        (geometry(64, 70, 1, (15, 17), (1, 1), 1, 0, 1).unwrap(), 1),
        (geometry(64, 33, 1, (17, 17), (1, 1), 2, 0, 1).unwrap(), 2),
        (geometry(64, 64, 1, (28, 28), (3, 3), 1, 1, 1).unwrap(), 3),
        (geometry(24, 16, 2, (33, 31), (3, 3), 1, 1, 1).unwrap(), 4),
        (geometry(3, 16, 1, (31, 33), (7, 7), 2, 3, 1).unwrap(), 5),
    ] {
        for out in [OutKind::U8, OutKind::I8, OutKind::F32] {
            let mut c = Case::random(g, seed);
            c.out = out;
            c.check();
        }
    }
}

#[test]
#[should_panic(expected = "different weight shape")]
fn packed_weights_for_another_shape_are_refused() {
    let g = geometry(3, 4, 1, (7, 7), (3, 3), 1, 1, 1).unwrap();
    let other = geometry(3, 5, 1, (7, 7), (3, 3), 1, 1, 1).unwrap();
    let c = Case::random(other, 1);
    let packed = pack_conv_weights_i8_with(Int8Kernel::Generic, &other, &c.weights, &c.w_scales);
    let mut y = vec![0u8; 4 * 49];
    conv2d_i8(
        &g,
        c.input(),
        &packed,
        None,
        false,
        Int8Output::U8 {
            data: &mut y,
            scale: 1.0,
            zero_point: 0,
            residual: None,
        },
    );
}
