//! Naive kernels written straight from the ONNX operator definitions, one output element at a
//! time. They are slow and only meant as the ground truth for tests of the real kernels; sums
//! of products accumulate in f64 so the reference is the more accurate side.

use super::{max_nan_f32, numel, BinaryOp, Conv2dGeometry, Pool2dGeometry};

/// Reference for [`super::conv2d_f32`].
pub fn conv2d_f32(
    g: &Conv2dGeometry,
    input: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    g.assert_valid();
    assert_eq!(input.len(), g.in_channels * g.in_h * g.in_w);
    assert_eq!(weights.len(), g.weights_len());
    assert_eq!(output.len(), g.out_channels * g.out_h * g.out_w);
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    for oc in 0..g.out_channels {
        let group = oc / cout_g;
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let mut acc = bias.map_or(0.0, |b| b[oc] as f64);
                for icg in 0..cin_g {
                    let ic = group * cin_g + icg;
                    for ky in 0..g.kernel_h {
                        for kx in 0..g.kernel_w {
                            let iy =
                                (oy * g.stride_h + ky * g.dilation_h) as isize - g.pad_top as isize;
                            let ix = (ox * g.stride_w + kx * g.dilation_w) as isize
                                - g.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= g.in_h as isize || ix >= g.in_w as isize {
                                continue;
                            }
                            let x = input[(ic * g.in_h + iy as usize) * g.in_w + ix as usize];
                            let w =
                                weights[((oc * cin_g + icg) * g.kernel_h + ky) * g.kernel_w + kx];
                            acc += x as f64 * w as f64;
                        }
                    }
                }
                output[(oc * g.out_h + oy) * g.out_w + ox] = acc as f32;
            }
        }
    }
}

/// Input values of the taps of window (c, oy, ox) that lie inside the input, plus the number of
/// taps inside the padded input.
fn pool_window(
    g: &Pool2dGeometry,
    input: &[f32],
    c: usize,
    oy: usize,
    ox: usize,
) -> (Vec<f32>, usize) {
    let mut inside = Vec::new();
    let mut padded_count = 0;
    for ky in 0..g.kernel_h {
        for kx in 0..g.kernel_w {
            let iy = (oy * g.stride_h + ky * g.dilation_h) as isize - g.pad_top as isize;
            let ix = (ox * g.stride_w + kx * g.dilation_w) as isize - g.pad_left as isize;
            let in_padded_rows =
                iy >= -(g.pad_top as isize) && iy < (g.in_h + g.pad_bottom) as isize;
            let in_padded_cols =
                ix >= -(g.pad_left as isize) && ix < (g.in_w + g.pad_right) as isize;
            if in_padded_rows && in_padded_cols {
                padded_count += 1;
            }
            if iy >= 0 && ix >= 0 && iy < g.in_h as isize && ix < g.in_w as isize {
                inside.push(input[(c * g.in_h + iy as usize) * g.in_w + ix as usize]);
            }
        }
    }
    (inside, padded_count)
}

/// Reference for [`super::max_pool2d_f32`].
pub fn max_pool2d_f32(g: &Pool2dGeometry, input: &[f32], output: &mut [f32]) {
    assert_eq!(input.len(), g.channels * g.in_h * g.in_w);
    assert_eq!(output.len(), g.channels * g.out_h * g.out_w);
    for c in 0..g.channels {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let (taps, _) = pool_window(g, input, c, oy, ox);
                output[(c * g.out_h + oy) * g.out_w + ox] =
                    taps.into_iter().fold(f32::NEG_INFINITY, max_nan_f32);
            }
        }
    }
}

/// Reference for [`super::avg_pool2d_f32`].
pub fn avg_pool2d_f32(
    g: &Pool2dGeometry,
    count_include_pad: bool,
    input: &[f32],
    output: &mut [f32],
) {
    assert_eq!(input.len(), g.channels * g.in_h * g.in_w);
    assert_eq!(output.len(), g.channels * g.out_h * g.out_w);
    for c in 0..g.channels {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let (taps, padded_count) = pool_window(g, input, c, oy, ox);
                let count = if count_include_pad {
                    padded_count
                } else {
                    taps.len()
                };
                let sum: f64 = taps.iter().map(|&v| v as f64).sum();
                output[(c * g.out_h + oy) * g.out_w + ox] = if count == 0 {
                    0.0
                } else {
                    (sum / count as f64) as f32
                };
            }
        }
    }
}

/// Reference for [`super::global_avg_pool_f32`].
pub fn global_avg_pool_f32(channels: usize, hw: usize, input: &[f32], output: &mut [f32]) {
    assert_eq!(input.len(), channels * hw);
    assert_eq!(output.len(), channels);
    for c in 0..channels {
        let sum: f64 = input[c * hw..(c + 1) * hw].iter().map(|&v| v as f64).sum();
        output[c] = (sum / hw as f64) as f32;
    }
}

/// Reference for [`super::lrn_f32`].
#[allow(clippy::too_many_arguments)]
pub fn lrn_f32(
    channels: usize,
    hw: usize,
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
    input: &[f32],
    output: &mut [f32],
) {
    assert_eq!(input.len(), channels * hw);
    assert_eq!(output.len(), channels * hw);
    let before = (size - 1) / 2;
    let after = (size - 1).div_ceil(2);
    for c in 0..channels {
        let lo = c.saturating_sub(before);
        let hi = (c + after).min(channels - 1);
        for i in 0..hw {
            let sum: f64 = (lo..=hi)
                .map(|cc| (input[cc * hw + i] as f64).powi(2))
                .sum();
            let denom = (bias as f64 + alpha as f64 / size as f64 * sum).powf(beta as f64);
            output[c * hw + i] = (input[c * hw + i] as f64 / denom) as f32;
        }
    }
}

/// Reference for [`super::gemm_f32`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_transposed: bool,
    b: &[f32],
    b_transposed: bool,
    alpha: f32,
    out: &mut [f32],
) {
    assert_eq!(a.len(), m * k);
    assert_eq!(b.len(), k * n);
    assert_eq!(out.len(), m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for p in 0..k {
                let av = if a_transposed {
                    a[p * m + i]
                } else {
                    a[i * k + p]
                };
                let bv = if b_transposed {
                    b[j * k + p]
                } else {
                    b[p * n + j]
                };
                acc += av as f64 * bv as f64;
            }
            out[i * n + j] = (out[i * n + j] as f64 + alpha as f64 * acc) as f32;
        }
    }
}

/// Reference for [`super::softmax_f32`], including its definitions for non-finite rows.
pub fn softmax_f32(rows: usize, cols: usize, input: &[f32], output: &mut [f32]) {
    assert_eq!(input.len(), rows * cols);
    assert_eq!(output.len(), rows * cols);
    for r in 0..rows {
        let x = &input[r * cols..(r + 1) * cols];
        let y = &mut output[r * cols..(r + 1) * cols];
        if x.iter().any(|v| v.is_nan()) {
            y.fill(f32::NAN);
            continue;
        }
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            y.fill(1.0 / cols as f32);
            continue;
        }
        if max == f32::INFINITY {
            let count = x.iter().filter(|&&v| v == f32::INFINITY).count();
            for (yv, &xv) in y.iter_mut().zip(x) {
                *yv = if xv == f32::INFINITY {
                    1.0 / count as f32
                } else {
                    0.0
                };
            }
            continue;
        }
        let e: Vec<f64> = x.iter().map(|&v| (v as f64 - max as f64).exp()).collect();
        let sum: f64 = e.iter().sum();
        for (yv, ev) in y.iter_mut().zip(e) {
            *yv = (ev / sum) as f32;
        }
    }
}

/// Reference for [`super::channel_affine_f32`].
pub fn channel_affine_f32(
    channels: usize,
    hw: usize,
    scale: &[f32],
    shift: &[f32],
    input: &[f32],
    output: &mut [f32],
) {
    for c in 0..channels {
        for i in 0..hw {
            output[c * hw + i] = input[c * hw + i] * scale[c] + shift[c];
        }
    }
}

/// Row-major multi-index of flat position `flat` in `shape`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        index[d] = flat % shape[d];
        flat /= shape[d];
    }
    index
}

/// Flat position of the element of `shape` that broadcasting maps output index `out_index` to.
fn broadcast_source(out_index: &[usize], shape: &[usize]) -> usize {
    let lead = out_index.len() - shape.len();
    shape.iter().enumerate().fold(0, |flat, (d, &dim)| {
        flat * dim + if dim == 1 { 0 } else { out_index[lead + d] }
    })
}

/// Reference for [`super::binary_broadcast_f32`].
pub fn binary_broadcast_f32(
    op: BinaryOp,
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out: &mut [f32],
    out_shape: &[usize],
) {
    assert_eq!(a.len(), numel(a_shape));
    assert_eq!(b.len(), numel(b_shape));
    assert_eq!(out.len(), numel(out_shape));
    for (flat, o) in out.iter_mut().enumerate() {
        let index = unravel(flat, out_shape);
        *o = op.apply(
            a[broadcast_source(&index, a_shape)],
            b[broadcast_source(&index, b_shape)],
        );
    }
}

/// Reference for [`super::transpose_f32`].
pub fn transpose_f32(input: &[f32], shape: &[usize], perm: &[usize], output: &mut [f32]) {
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    assert_eq!(output.len(), numel(&out_shape));
    for (flat, o) in output.iter_mut().enumerate() {
        let out_index = unravel(flat, &out_shape);
        let mut in_index = vec![0; shape.len()];
        for (i, &p) in perm.iter().enumerate() {
            in_index[p] = out_index[i];
        }
        let src = in_index.iter().zip(shape).fold(0, |f, (&i, &d)| f * d + i);
        *o = input[src];
    }
}

/// Reference for [`super::pad_constant_f32`].
pub fn pad_constant_f32(
    input: &[f32],
    shape: &[usize],
    pads: &[usize],
    value: f32,
    output: &mut [f32],
) {
    let rank = shape.len();
    let out_shape: Vec<usize> = (0..rank)
        .map(|i| shape[i] + pads[i] + pads[rank + i])
        .collect();
    assert_eq!(output.len(), numel(&out_shape));
    for (flat, o) in output.iter_mut().enumerate() {
        let out_index = unravel(flat, &out_shape);
        let inside =
            (0..rank).all(|d| out_index[d] >= pads[d] && out_index[d] < pads[d] + shape[d]);
        *o = if inside {
            let src = (0..rank).fold(0, |f, d| f * shape[d] + out_index[d] - pads[d]);
            input[src]
        } else {
            value
        };
    }
}
