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
        if let Some(problem) = self.problem() {
            panic!("conv2d: {problem}");
        }
    }

    /// What makes the geometry unusable, if anything: a zero stride, dilation or group count,
    /// or groups that do not divide both channel counts.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if self.groups == 0 {
            Some("groups must be > 0")
        } else if !self.in_channels.is_multiple_of(self.groups) {
            Some("groups must divide in_channels")
        } else if !self.out_channels.is_multiple_of(self.groups) {
            Some("groups must divide out_channels")
        } else if self.stride_h == 0 || self.stride_w == 0 {
            Some("strides must be > 0")
        } else if self.dilation_h == 0 || self.dilation_w == 0 {
            Some("dilations must be > 0")
        } else {
            None
        }
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
    g.assert_valid();
    assert_eq!(weights.len(), g.weights_len(), "conv2d: weights length");
    let k = g.in_channels_per_group() * g.kernel_h * g.kernel_w;
    let cout_g = g.out_channels_per_group();
    let products = ConvProducts {
        raw_weights: Some(weights),
        channel_align: 8,
        gemm: &|grp, first, rows, n, b, ldb, c, ldc| {
            let w = &weights[(grp * cout_g + first) * k..];
            gemm_acc_f32_4xnc(rows, n, k, 1.0, w, k, 1, b, ldb, c, ldc)
        },
    };
    conv2d_f32_with_products(g, input, bias, output, &products);
}

/// How a convolution driver gets its dense products done, so the ISA-specific modules can run
/// it on their own gemm and weight layout.
pub(crate) struct ConvProducts<'a> {
    /// The weights as given, [out_channels, in_channels/groups, kernel_h, kernel_w], when the
    /// caller has them: depthwise convolutions then run directly on them, otherwise through
    /// im2col and `gemm`.
    pub raw_weights: Option<&'a [f32]>,
    /// Threads split output channels into blocks that start at multiples of this.
    pub channel_align: usize,
    /// `(group, first, rows, n, b, ldb, c, ldc)`: C[rows x n] += W[rows x k] * B[k x n], W being
    /// output channels `first..first + rows` of `group` (channel indices within the group,
    /// `first` a multiple of `channel_align`) and k = in_channels/groups * kernel_h * kernel_w;
    /// B and C are row-major with row strides `ldb` and `ldc`.
    pub gemm: GemmAcc<'a>,
}

/// See [`ConvProducts::gemm`].
pub(crate) type GemmAcc<'a> =
    &'a (dyn Fn(usize, usize, usize, usize, &[f32], usize, &mut [f32], usize) + Sync);

/// Whether the convolution is a 1x1, stride 1, unpadded one whose input already is the gemm's
/// [in_channels, h * w] operand.
pub(crate) fn is_pointwise(g: &Conv2dGeometry) -> bool {
    g.kernel_h == 1
        && g.kernel_w == 1
        && g.stride_h == 1
        && g.stride_w == 1
        && g.pad_top == 0
        && g.pad_left == 0
        && g.out_h == g.in_h
        && g.out_w == g.in_w
}

/// Whether [`conv2d_f32_with_products`] runs the convolution directly on raw weights (one
/// input channel per group and not pointwise) when it has them.
pub(crate) fn runs_direct(g: &Conv2dGeometry) -> bool {
    g.in_channels_per_group() == 1 && !is_pointwise(g)
}

/// Output columns of each gemm the convolution issues: every position for a pointwise one,
/// a block of whole output rows for im2col.
pub(crate) fn gemm_columns(g: &Conv2dGeometry) -> usize {
    if is_pointwise(g) {
        g.out_h * g.out_w
    } else {
        im2col_block_rows(g) * g.out_w
    }
}

/// Output rows per im2col block: as many as fit the buffer budget, at least enough for
/// `IM2COL_MIN_COLS` columns.
fn im2col_block_rows(g: &Conv2dGeometry) -> usize {
    let k = g.in_channels_per_group() * g.kernel_h * g.kernel_w;
    (IM2COL_BLOCK_FLOATS / (k * g.out_w).max(1))
        .max(IM2COL_MIN_COLS.div_ceil(g.out_w.max(1)))
        .clamp(1, g.out_h.max(1))
}

/// [`conv2d_f32`] with the dense products done by `products`.
pub(crate) fn conv2d_f32_with_products(
    g: &Conv2dGeometry,
    input: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
    products: &ConvProducts<'_>,
) {
    g.assert_valid();
    assert_eq!(
        input.len(),
        g.in_channels * g.in_h * g.in_w,
        "conv2d: input length"
    );
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
    match products.raw_weights {
        _ if is_pointwise(g) => conv2d_f32_pointwise_gemm(g, input, output, products),
        Some(weights) if runs_direct(g) => conv2d_f32_depthwise_direct(g, input, weights, output),
        _ => conv2d_f32_im2col_gemm(g, input, output, products),
    }
}

/// 1x1, stride 1, no padding: the input of each group already is the [cin_g, hw] gemm operand.
fn conv2d_f32_pointwise_gemm(
    g: &Conv2dGeometry,
    input: &[f32],
    output: &mut [f32],
    products: &ConvProducts<'_>,
) {
    let hw = g.in_h * g.in_w;
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    for grp in 0..g.groups {
        let x = &input[grp * cin_g * hw..(grp + 1) * cin_g * hw];
        let y = &mut output[grp * cout_g * hw..(grp + 1) * cout_g * hw];
        let align = products.channel_align;
        for_channel_blocks(y, cout_g, hw, align, &|first, rows, y| {
            (products.gemm)(grp, first, rows, hw, x, hw, y, hw);
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
    for_channel_blocks(output, g.out_channels, out_hw, 8, &|first, _, block| {
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
    output: &mut [f32],
    products: &ConvProducts<'_>,
) {
    let k = g.in_channels_per_group() * g.kernel_h * g.kernel_w;
    let block_rows = im2col_block_rows(g);
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
        im2col_blocks(g, input, output, products, block_rows, col);
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
    output: &mut [f32],
    products: &ConvProducts<'_>,
    block_rows: usize,
    col: &mut [f32],
) {
    let in_hw = g.in_h * g.in_w;
    let out_hw = g.out_h * g.out_w;
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    let k = cin_g * g.kernel_h * g.kernel_w;
    for grp in 0..g.groups {
        let x = &input[grp * cin_g * in_hw..(grp + 1) * cin_g * in_hw];
        for oy0 in (0..g.out_h).step_by(block_rows) {
            let oy1 = (oy0 + block_rows).min(g.out_h);
            let n = (oy1 - oy0) * g.out_w;
            let col = &mut col[..k * n];
            im2col_f32_rows(g, x, oy0..oy1, col);

            let col = &*col;
            let y = &mut output[grp * cout_g * out_hw..(grp + 1) * cout_g * out_hw];
            let align = products.channel_align;
            for_channel_blocks(y, cout_g, out_hw, align, &|first, rows, y| {
                let y = &mut y[oy0 * g.out_w..];
                (products.gemm)(grp, first, rows, n, col, n, y, out_hw);
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
