//! 2-D convolution over one NCHW image.

use std::cell::RefCell;

use super::gemm::gemm_acc_f32_4xnc;
use super::tap_range;
use crate::parallel::for_channel_blocks;

/// im2col buffer budget in floats (1 MiB); output rows are processed in blocks that fit.
const IM2COL_BLOCK_FLOATS: usize = 1 << 18;
/// Fewest columns worth handing to the gemm per block, even if the budget is exceeded.
const IM2COL_MIN_COLS: usize = 128;

/// Geometry of a 2-D convolution over one NCHW image. Output size is given by the
/// caller; the bottom/right padding is whatever out_h/out_w imply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub in_channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_channels: usize,
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
    pub groups: usize,
}

impl Conv2dGeometry {
    /// Multiply-accumulates for one image (0 if `groups` is 0).
    pub fn macs(&self) -> u64 {
        let in_per_group = self.in_channels.checked_div(self.groups).unwrap_or(0);
        [
            self.out_channels,
            self.out_h,
            self.out_w,
            in_per_group,
            self.kernel_h,
            self.kernel_w,
        ]
        .iter()
        .map(|&d| d as u64)
        .product()
    }

    /// Input channels seen by each output channel.
    pub fn in_channels_per_group(&self) -> usize {
        self.in_channels / self.groups
    }

    /// Output channels produced by each group.
    pub fn out_channels_per_group(&self) -> usize {
        self.out_channels / self.groups
    }

    /// Number of weights: `out_channels * in_channels / groups * kernel_h * kernel_w`.
    pub fn weights_len(&self) -> usize {
        self.out_channels * self.in_channels_per_group() * self.kernel_h * self.kernel_w
    }

    /// Panics unless strides, dilations and groups are non-zero and groups divide both channel
    /// counts.
    pub(crate) fn assert_valid(&self) {
        assert!(self.groups > 0, "conv2d: groups must be > 0");
        assert_eq!(
            self.in_channels % self.groups,
            0,
            "conv2d: groups must divide in_channels"
        );
        assert_eq!(
            self.out_channels % self.groups,
            0,
            "conv2d: groups must divide out_channels"
        );
        assert!(
            self.stride_h > 0 && self.stride_w > 0,
            "conv2d: strides must be > 0"
        );
        assert!(
            self.dilation_h > 0 && self.dilation_w > 0,
            "conv2d: dilations must be > 0"
        );
    }

    /// Offset of kernel row `ky` from `oy * stride_h` in input rows.
    fn row_offset(&self, ky: usize) -> isize {
        (ky * self.dilation_h) as isize - self.pad_top as isize
    }

    /// Offset of kernel column `kx` from `ox * stride_w` in input columns.
    fn col_offset(&self, kx: usize) -> isize {
        (kx * self.dilation_w) as isize - self.pad_left as isize
    }
}

/// weights: [out_channels, in_channels/groups, kernel_h, kernel_w]; bias: [out_channels].
/// input: [in_channels, in_h, in_w]; output: [out_channels, out_h, out_w] (overwritten).
/// Taps that fall in the padding contribute zero.
///
/// Pointwise convolutions run as one gemm per group, depthwise ones (one input channel per
/// group) as direct row accumulation, and everything else as im2col over blocks of output rows
/// followed by a gemm.
pub fn conv2d_f32(
    g: &Conv2dGeometry,
    input: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    conv2d_f32_with_gemm(
        g,
        input,
        weights,
        bias,
        output,
        &|m, n, k, a, lda, b, ldb, c, ldc| {
            gemm_acc_f32_4xnc(m, n, k, 1.0, a, lda, 1, b, ldb, c, ldc)
        },
    );
}

/// C[m x n] += A[m x k] * B[k x n], all row-major with the given row strides:
/// `(m, n, k, a, lda, b, ldb, c, ldc)`. Lets the ISA-specific modules run this convolution
/// driver on their own gemm.
pub(crate) type GemmAcc<'a> =
    &'a (dyn Fn(usize, usize, usize, &[f32], usize, &[f32], usize, &mut [f32], usize) + Sync);

/// [`conv2d_f32`] with the dense products done by `gemm`.
pub(crate) fn conv2d_f32_with_gemm(
    g: &Conv2dGeometry,
    input: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
    gemm: GemmAcc<'_>,
) {
    g.assert_valid();
    assert_eq!(
        input.len(),
        g.in_channels * g.in_h * g.in_w,
        "conv2d: input length"
    );
    assert_eq!(weights.len(), g.weights_len(), "conv2d: weights length");
    if let Some(bias) = bias {
        assert_eq!(bias.len(), g.out_channels, "conv2d: bias length");
    }
    assert_eq!(
        output.len(),
        g.out_channels * g.out_h * g.out_w,
        "conv2d: output length"
    );

    // Bias first; every path below accumulates onto it.
    let out_hw = g.out_h * g.out_w;
    if out_hw == 0 {
        return;
    }
    for (oc, out_ch) in output.chunks_exact_mut(out_hw).enumerate() {
        out_ch.fill(bias.map_or(0.0, |b| b[oc]));
    }

    let k = g.in_channels_per_group() * g.kernel_h * g.kernel_w;
    if k == 0 {
        return;
    }
    let pointwise = g.kernel_h == 1
        && g.kernel_w == 1
        && g.stride_h == 1
        && g.stride_w == 1
        && g.pad_top == 0
        && g.pad_left == 0
        && g.out_h == g.in_h
        && g.out_w == g.in_w;
    if pointwise {
        conv2d_f32_pointwise_gemm(g, input, weights, output, gemm);
    } else if g.in_channels_per_group() == 1 {
        conv2d_f32_depthwise_direct(g, input, weights, output);
    } else {
        conv2d_f32_im2col_gemm(g, input, weights, output, gemm);
    }
}

/// 1x1, stride 1, no padding: the input of each group already is the [cin_g, hw] gemm operand.
fn conv2d_f32_pointwise_gemm(
    g: &Conv2dGeometry,
    input: &[f32],
    weights: &[f32],
    output: &mut [f32],
    gemm: GemmAcc<'_>,
) {
    let hw = g.in_h * g.in_w;
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    for grp in 0..g.groups {
        let w = &weights[grp * cout_g * cin_g..(grp + 1) * cout_g * cin_g];
        let x = &input[grp * cin_g * hw..(grp + 1) * cin_g * hw];
        let y = &mut output[grp * cout_g * hw..(grp + 1) * cout_g * hw];
        for_channel_blocks(y, cout_g, hw, &|first, rows, y| {
            gemm(rows, hw, cin_g, &w[first * cin_g..], cin_g, x, hw, y, hw);
        });
    }
}

/// One input channel per group: for each kernel tap, add `weight * shifted input row` onto each
/// output row over the columns whose tap lands inside the input.
fn conv2d_f32_depthwise_direct(
    g: &Conv2dGeometry,
    input: &[f32],
    weights: &[f32],
    output: &mut [f32],
) {
    let out_hw = g.out_h * g.out_w;
    for_channel_blocks(output, g.out_channels, out_hw, &|first, _, block| {
        depthwise_channels(g, input, weights, first, block);
    });
}

/// [`conv2d_f32_depthwise_direct`] for the output channels `first..` that `output` holds.
fn depthwise_channels(
    g: &Conv2dGeometry,
    input: &[f32],
    weights: &[f32],
    first: usize,
    output: &mut [f32],
) {
    let in_hw = g.in_h * g.in_w;
    let out_hw = g.out_h * g.out_w;
    let cout_g = g.out_channels_per_group();
    let taps = g.kernel_h * g.kernel_w;

    for (oc, out_ch) in (first..).zip(output.chunks_exact_mut(out_hw)) {
        let in_ch = &input[(oc / cout_g) * in_hw..][..in_hw];
        let w_ch = &weights[oc * taps..][..taps];
        for ky in 0..g.kernel_h {
            let dy = g.row_offset(ky);
            let rows = tap_range(g.out_h, g.in_h, g.stride_h, dy);
            for kx in 0..g.kernel_w {
                let dx = g.col_offset(kx);
                let cols = tap_range(g.out_w, g.in_w, g.stride_w, dx);
                if cols.is_empty() {
                    continue;
                }
                let w = w_ch[ky * g.kernel_w + kx];
                let ix0 = ((cols.start * g.stride_w) as isize + dx) as usize;
                for oy in rows.clone() {
                    let iy = ((oy * g.stride_h) as isize + dy) as usize;
                    let in_row = &in_ch[iy * g.in_w + ix0..(iy + 1) * g.in_w];
                    let out_row = &mut out_ch[oy * g.out_w + cols.start..oy * g.out_w + cols.end];
                    axpy_strided_f32(w, in_row, g.stride_w, out_row);
                }
            }
        }
    }
}

/// y[j] += a * x[j * stride]; the unit-stride case is split out so it vectorises.
fn axpy_strided_f32(a: f32, x: &[f32], stride: usize, y: &mut [f32]) {
    if stride == 1 {
        for (yv, &xv) in y.iter_mut().zip(x) {
            *yv += a * xv;
        }
    } else {
        for (yv, &xv) in y.iter_mut().zip(x.iter().step_by(stride)) {
            *yv += a * xv;
        }
    }
}

/// im2col over blocks of whole output rows, then per group
/// out[cout_g, rows * out_w] += W[cout_g, k] * col[k, rows * out_w].
fn conv2d_f32_im2col_gemm(
    g: &Conv2dGeometry,
    input: &[f32],
    weights: &[f32],
    output: &mut [f32],
    gemm: GemmAcc<'_>,
) {
    let k = g.in_channels_per_group() * g.kernel_h * g.kernel_w;
    let block_rows = (IM2COL_BLOCK_FLOATS / (k * g.out_w))
        .max(IM2COL_MIN_COLS.div_ceil(g.out_w))
        .clamp(1, g.out_h);
    COL_BUFFER.with(|cell| {
        let mut fresh = Vec::new();
        let mut cached = cell.try_borrow_mut();
        let col = match cached.as_deref_mut() {
            Ok(buffer) => buffer,
            Err(_) => &mut fresh,
        };
        if col.len() < k * block_rows * g.out_w {
            col.resize(k * block_rows * g.out_w, 0.0);
        }
        im2col_blocks(g, input, weights, output, gemm, block_rows, col);
    });
}

thread_local! {
    /// The im2col buffer, kept between calls so that a run allocates it once per thread.
    static COL_BUFFER: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The body of [`conv2d_f32_im2col_gemm`], with `col` holding at least `block_rows` output
/// rows of columns.
fn im2col_blocks(
    g: &Conv2dGeometry,
    input: &[f32],
    weights: &[f32],
    output: &mut [f32],
    gemm: GemmAcc<'_>,
    block_rows: usize,
    col: &mut [f32],
) {
    let in_hw = g.in_h * g.in_w;
    let out_hw = g.out_h * g.out_w;
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    let k = cin_g * g.kernel_h * g.kernel_w;
    for grp in 0..g.groups {
        let x = &input[grp * cin_g * in_hw..(grp + 1) * cin_g * in_hw];
        let w = &weights[grp * cout_g * k..(grp + 1) * cout_g * k];
        for oy0 in (0..g.out_h).step_by(block_rows) {
            let oy1 = (oy0 + block_rows).min(g.out_h);
            let n = (oy1 - oy0) * g.out_w;
            let col = &mut col[..k * n];
            im2col_f32_rows(g, x, oy0..oy1, col);

            let col = &*col;
            let y = &mut output[grp * cout_g * out_hw..(grp + 1) * cout_g * out_hw];
            for_channel_blocks(y, cout_g, out_hw, &|first, rows, y| {
                let y = &mut y[oy0 * g.out_w..];
                gemm(rows, n, k, &w[first * k..], k, col, n, y, out_hw);
            });
        }
    }
}

/// Fills col[(ic * kernel_h + ky) * kernel_w + kx, (oy - rows.start) * out_w + ox] with the input
/// value that tap reads, or 0 in the padding. `x` holds one group's input channels.
fn im2col_f32_rows(g: &Conv2dGeometry, x: &[f32], rows: std::ops::Range<usize>, col: &mut [f32]) {
    let in_hw = g.in_h * g.in_w;
    let n = rows.len() * g.out_w;
    let mut col_rows = col.chunks_exact_mut(n);
    for in_ch in x.chunks_exact(in_hw) {
        for ky in 0..g.kernel_h {
            let dy = g.row_offset(ky);
            let valid_rows = tap_range(g.out_h, g.in_h, g.stride_h, dy);
            for kx in 0..g.kernel_w {
                let dx = g.col_offset(kx);
                let cols = tap_range(g.out_w, g.in_w, g.stride_w, dx);
                let dst = col_rows.next().expect("col has k rows");
                for (oy, d) in rows.clone().zip(dst.chunks_exact_mut(g.out_w)) {
                    if !valid_rows.contains(&oy) || cols.is_empty() {
                        d.fill(0.0);
                        continue;
                    }
                    let iy = ((oy * g.stride_h) as isize + dy) as usize;
                    let ix0 = ((cols.start * g.stride_w) as isize + dx) as usize;
                    let in_row = &in_ch[iy * g.in_w + ix0..(iy + 1) * g.in_w];
                    d[..cols.start].fill(0.0);
                    d[cols.end..].fill(0.0);
                    let body = &mut d[cols.clone()];
                    if g.stride_w == 1 {
                        body.copy_from_slice(&in_row[..body.len()]);
                    } else {
                        for (dv, &xv) in body.iter_mut().zip(in_row.iter().step_by(g.stride_w)) {
                            *dv = xv;
                        }
                    }
                }
            }
        }
    }
}
