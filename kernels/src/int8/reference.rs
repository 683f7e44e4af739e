//! Naive int8 kernels written straight from the ONNX QLinearConv / MatMulInteger definitions,
//! one output element at a time in the activations' own domain (no biasing of i8 values, no
//! weight-sum correction, padding taps reading the zero point). Slow; the ground truth for
//! tests of the packed kernels.

use super::{Int8Input, Int8Output, QuantizedData};
use crate::quant::{dequantize, requant_scale, requantize_reference};
use crate::Conv2dGeometry;

fn value(data: QuantizedData<'_>, i: usize) -> i32 {
    match data {
        QuantizedData::U8(d) => d[i] as i32,
        QuantizedData::I8(d) => d[i] as i32,
    }
}

/// out[i, j] = sum_p a[i, p] * (b[p, j] - b_zero_point); a is [m, k], b [k, n], out [m, n].
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_i32(
    m: usize,
    n: usize,
    k: usize,
    a: &[i8],
    b: QuantizedData<'_>,
    b_zero_point: i32,
    out: &mut [i32],
) {
    assert_eq!(a.len(), m * k);
    assert_eq!(b.len(), k * n);
    assert_eq!(out.len(), m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0i64;
            for p in 0..k {
                acc += a[i * k + p] as i64 * (value(b, p * n + j) - b_zero_point) as i64;
            }
            out[i * n + j] = i32::try_from(acc).expect("reference gemm: sum outside i32");
        }
    }
}

/// The exact accumulators of a quantized convolution:
/// `bias[oc] + sum w[oc, icg, ky, kx] * (x[ic, iy, ix] - zero_point)`, with x = zero_point
/// outside the input. Layouts as [`super::conv2d_i8`]; returns [out_channels, out_h, out_w].
pub fn conv2d_i32(
    g: &Conv2dGeometry,
    input: QuantizedData<'_>,
    zero_point: i32,
    weights: &[i8],
    bias: Option<&[i32]>,
) -> Vec<i32> {
    g.assert_valid();
    assert_eq!(input.len(), g.in_channels * g.in_h * g.in_w);
    assert_eq!(weights.len(), g.weights_len());
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    let mut out = vec![0i32; g.out_channels * g.out_h * g.out_w];
    for oc in 0..g.out_channels {
        let group = oc / cout_g;
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let mut acc = bias.map_or(0, |b| b[oc] as i64);
                for icg in 0..cin_g {
                    let ic = group * cin_g + icg;
                    for ky in 0..g.kernel_h {
                        for kx in 0..g.kernel_w {
                            let iy =
                                (oy * g.stride_h + ky * g.dilation_h) as isize - g.pad_top as isize;
                            let ix = (ox * g.stride_w + kx * g.dilation_w) as isize
                                - g.pad_left as isize;
                            let inside =
                                iy >= 0 && ix >= 0 && iy < g.in_h as isize && ix < g.in_w as isize;
                            let x = if inside {
                                value(input, (ic * g.in_h + iy as usize) * g.in_w + ix as usize)
                            } else {
                                zero_point
                            };
                            let w =
                                weights[((oc * cin_g + icg) * g.kernel_h + ky) * g.kernel_w + kx];
                            acc += w as i64 * (x - zero_point) as i64;
                        }
                    }
                }
                out[(oc * g.out_h + oy) * g.out_w + ox] =
                    i32::try_from(acc).expect("reference conv: sum outside i32");
            }
        }
    }
    out
}

/// Reference for [`super::conv2d_i8`] on unpacked weights, requantizing with the f64
/// multiplier form ([`requantize_reference`]).
pub fn conv2d_i8(
    g: &Conv2dGeometry,
    input: Int8Input<'_>,
    weights: &[i8],
    weight_scales: &[f32],
    bias: Option<&[i32]>,
    relu: bool,
    output: Int8Output<'_>,
) {
    assert_eq!(weight_scales.len(), g.out_channels);
    let acc = conv2d_i32(g, input.data, input.zero_point, weights, bias);
    let out_hw = g.out_h * g.out_w;
    let channel = |i: usize| i / out_hw;
    match output {
        Int8Output::U8 {
            data,
            scale,
            zero_point,
            residual,
        } => {
            assert_eq!(data.len(), acc.len());
            let zp = zero_point as i32;
            for (i, (d, &a)) in data.iter_mut().zip(&acc).enumerate() {
                let s = requant_scale(input.scale, weight_scales[channel(i)], scale);
                // A residual in the output's domain adds (r - zp) to the requantized value.
                let offset = residual.map_or(zp, |r| r[i] as i32);
                let lo = if relu { zp } else { 0 };
                let v = requantize_reference(a, s, 0, i32::MIN, i32::MAX) as i64 + offset as i64;
                *d = v.clamp(lo as i64, 255) as u8;
            }
        }
        Int8Output::I8 {
            data,
            scale,
            zero_point,
            residual,
        } => {
            assert_eq!(data.len(), acc.len());
            let zp = zero_point as i32;
            for (i, (d, &a)) in data.iter_mut().zip(&acc).enumerate() {
                let s = requant_scale(input.scale, weight_scales[channel(i)], scale);
                let offset = residual.map_or(zp, |r| r[i] as i32);
                let lo = if relu { zp } else { -128 };
                let v = requantize_reference(a, s, 0, i32::MIN, i32::MAX) as i64 + offset as i64;
                *d = v.clamp(lo as i64, 127) as i8;
            }
        }
        Int8Output::F32 { data, residual } => {
            assert_eq!(data.len(), acc.len());
            for (i, (d, &a)) in data.iter_mut().zip(&acc).enumerate() {
                let mut v = dequantize(a, input.scale * weight_scales[channel(i)]);
                if let Some(r) = residual {
                    v += r[i];
                }
                *d = if relu && v < 0.0 { 0.0 } else { v };
            }
        }
    }
}
