//! Max, average and global average pooling over one NCHW image.

use super::{max_nan_f32, tap_range};
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dGeometry {
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub pad_bottom: usize,
    pub pad_right: usize,
}

impl Pool2dGeometry {
    fn assert_valid(&self, input: &[f32], output: &[f32]) {
        assert!(
            self.stride_h > 0 && self.stride_w > 0,
            "pool2d: strides must be > 0"
        );
        assert!(
            self.dilation_h > 0 && self.dilation_w > 0,
            "pool2d: dilations must be > 0"
        );
        assert_eq!(
            input.len(),
            self.channels * self.in_h * self.in_w,
            "pool2d: input length"
        );
        assert_eq!(
            output.len(),
            self.channels * self.out_h * self.out_w,
            "pool2d: output length"
        );
    }

    fn row_offset(&self, ky: usize) -> isize {
        (ky * self.dilation_h) as isize - self.pad_top as isize
    }

    fn col_offset(&self, kx: usize) -> isize {
        (kx * self.dilation_w) as isize - self.pad_left as isize
    }
}

/// Max over the taps of each window that lie inside the input (padding acts as -inf).
/// A window with no tap inside the input yields f32::NEG_INFINITY (callers size outputs so
/// this never happens for ONNX-valid ceil_mode shapes). NaN inputs propagate.
pub fn max_pool2d_f32(g: &Pool2dGeometry, input: &[f32], output: &mut [f32]) {
    max_pool2d_f32_by(g, input, output, |out, row, stride| {
        fold_segment(out, row, stride, max_nan_f32)
    });
}

/// [`max_pool2d_f32`] with the per-row work done by `segment` (see [`pool2d_f32_rows`]), which
/// must fold with [`max_nan_f32`].
pub(crate) fn max_pool2d_f32_by(
    g: &Pool2dGeometry,
    input: &[f32],
    output: &mut [f32],
    segment: impl Fn(&mut [f32], &[f32], usize),
) {
    g.assert_valid(input, output);
    pool2d_f32_rows(g, input, output, f32::NEG_INFINITY, segment);
}

/// Average pool. count_include_pad=false: divide by the number of taps inside the input.
/// count_include_pad=true: divide by the number of taps inside the *padded* input, i.e. rows in
/// [-pad_top, in_h + pad_bottom) and columns in [-pad_left, in_w + pad_right); taps of a ceil_mode
/// window that run past the padded edge are not counted (this is ONNX Runtime's and the ONNX
/// reference's behaviour). Accumulate in f32 is fine here.
///
/// A window with no counted tap yields 0 (callers size outputs so this never happens for
/// ONNX-valid shapes).
pub fn avg_pool2d_f32(
    g: &Pool2dGeometry,
    count_include_pad: bool,
    input: &[f32],
    output: &mut [f32],
) {
    avg_pool2d_f32_by(g, count_include_pad, input, output, |out, row, stride| {
        fold_segment(out, row, stride, |acc, v| acc + v)
    });
}

/// [`avg_pool2d_f32`] with the window sums done by `segment` (see [`pool2d_f32_rows`]), which
/// must fold with addition.
pub(crate) fn avg_pool2d_f32_by(
    g: &Pool2dGeometry,
    count_include_pad: bool,
    input: &[f32],
    output: &mut [f32],
    segment: impl Fn(&mut [f32], &[f32], usize),
) {
    g.assert_valid(input, output);
    pool2d_f32_rows(g, input, output, 0.0, segment);
    if g.out_h == 0 || g.out_w == 0 {
        return;
    }

    // Divisor of window (oy, ox) is row_count[oy] * col_count[ox].
    let (row_lo, row_hi, col_lo, col_hi) = if count_include_pad {
        (
            -(g.pad_top as isize),
            (g.in_h + g.pad_bottom) as isize,
            -(g.pad_left as isize),
            (g.in_w + g.pad_right) as isize,
        )
    } else {
        (0, g.in_h as isize, 0, g.in_w as isize)
    };
    let row_count: Vec<usize> = (0..g.out_h)
        .map(|oy| {
            count_taps(
                oy * g.stride_h,
                g.pad_top,
                g.kernel_h,
                g.dilation_h,
                row_lo..row_hi,
            )
        })
        .collect();
    let col_count: Vec<usize> = (0..g.out_w)
        .map(|ox| {
            count_taps(
                ox * g.stride_w,
                g.pad_left,
                g.kernel_w,
                g.dilation_w,
                col_lo..col_hi,
            )
        })
        .collect();

    for out_ch in output.chunks_exact_mut(g.out_h * g.out_w) {
        for (out_row, &rc) in out_ch.chunks_exact_mut(g.out_w).zip(&row_count) {
            for (o, &cc) in out_row.iter_mut().zip(&col_count) {
                let count = rc * cc;
                *o = if count == 0 { 0.0 } else { *o / count as f32 };
            }
        }
    }
}

/// Taps `start - pad + t * dilation` (t in 0..kernel) that fall inside `bounds`.
fn count_taps(
    start: usize,
    pad: usize,
    kernel: usize,
    dilation: usize,
    bounds: Range<isize>,
) -> usize {
    (0..kernel)
        .filter(|&t| bounds.contains(&((start + t * dilation) as isize - pad as isize)))
        .count()
}

/// `out[i] = combine(out[i], row[i * stride])` for every i in `0..out.len()`.
#[inline(always)]
pub(crate) fn fold_segment(
    out: &mut [f32],
    row: &[f32],
    stride: usize,
    combine: impl Fn(f32, f32) -> f32,
) {
    if stride == 1 {
        for (o, &v) in out.iter_mut().zip(row) {
            *o = combine(*o, v);
        }
    } else {
        for (o, &v) in out.iter_mut().zip(row.iter().step_by(stride)) {
            *o = combine(*o, v);
        }
    }
}

/// Folds every in-bounds tap of each window into the output, starting from `init`. Works a
/// whole output row per tap: `segment(out, row, stride)` must do what [`fold_segment`] does
/// with the pool's combine, where `row` starts at the first tap and holds every tap.
fn pool2d_f32_rows(
    g: &Pool2dGeometry,
    input: &[f32],
    output: &mut [f32],
    init: f32,
    segment: impl Fn(&mut [f32], &[f32], usize),
) {
    let (in_hw, out_hw) = (g.in_h * g.in_w, g.out_h * g.out_w);
    if out_hw == 0 {
        return;
    }
    output.fill(init);
    if in_hw == 0 {
        return;
    }
    let col_ranges: Vec<Range<usize>> = (0..g.kernel_w)
        .map(|kx| tap_range(g.out_w, g.in_w, g.stride_w, g.col_offset(kx)))
        .collect();

    for (in_ch, out_ch) in input
        .chunks_exact(in_hw)
        .zip(output.chunks_exact_mut(out_hw))
    {
        for (oy, out_row) in out_ch.chunks_exact_mut(g.out_w).enumerate() {
            for ky in 0..g.kernel_h {
                let iy = (oy * g.stride_h) as isize + g.row_offset(ky);
                if iy < 0 || iy >= g.in_h as isize {
                    continue;
                }
                let in_row = &in_ch[iy as usize * g.in_w..][..g.in_w];
                for (kx, cols) in col_ranges.iter().enumerate() {
                    if cols.is_empty() {
                        continue;
                    }
                    let ix0 = ((cols.start * g.stride_w) as isize + g.col_offset(kx)) as usize;
                    segment(&mut out_row[cols.clone()], &in_row[ix0..], g.stride_w);
                }
            }
        }
    }
}

/// Mean of each channel's hw values; accumulate in f64 so huge maps lose no precision.
/// `hw == 0` gives NaN (the mean of nothing).
pub fn global_avg_pool_f32(channels: usize, hw: usize, input: &[f32], output: &mut [f32]) {
    global_avg_pool_f32_by(channels, hw, input, output, sum_f64);
}

/// [`global_avg_pool_f32`] with each channel summed (in f64) by `sum`.
pub(crate) fn global_avg_pool_f32_by(
    channels: usize,
    hw: usize,
    input: &[f32],
    output: &mut [f32],
    sum: impl Fn(&[f32]) -> f64,
) {
    assert_eq!(input.len(), channels * hw, "global_avg_pool: input length");
    assert_eq!(output.len(), channels, "global_avg_pool: output length");
    if hw == 0 {
        output.fill(f32::NAN);
        return;
    }
    for (o, in_ch) in output.iter_mut().zip(input.chunks_exact(hw)) {
        *o = (sum(in_ch) / hw as f64) as f32;
    }
}

/// f64 sum with four partial sums so the adds can overlap.
fn sum_f64(x: &[f32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let chunks = x.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..4 {
            acc[l] += c[l] as f64;
        }
    }
    let tail_sum: f64 = tail.iter().map(|&v| v as f64).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail_sum
}
