//! Quantized convolution paths (pointwise GEMM, im2col GEMM, depthwise direct) and the
//! epilogue they share.
//!
//! Output channels are split across the current rayon pool's threads with
//! [`for_channel_blocks`]. Activations are packed once per block of output columns, before the
//! split, and every thread reads the same packed block, so packing is never repeated per
//! thread. Each output value is computed by the same integer operations whatever the split,
//! so results are bitwise identical at any thread count.

use super::driver::{
    gemm_packed, pack_b, packed_b_len, Activation, ChannelRequant, I8MicroKernel, PackElem,
    QuantByte, Scratch,
};
use super::{Int8Input, Int8Output, PackedConvWeightsI8, PackedData};
use crate::generic::tap_range;
use crate::parallel::for_channel_blocks;
use crate::quant::{dequantize, requant_scale};
use crate::Conv2dGeometry;

/// Budget of one packed activation block, in elements (2 MiB of i16): a few L2-sized panels,
/// so the fork-join per block is amortised over plenty of work.
const PACK_BLOCK_ELEMS: usize = 1 << 20;
/// Fewest columns worth a block, even if the budget is exceeded.
const MIN_BLOCK_COLS: usize = 128;

/// Per-channel constants that turn exact i32 accumulators into the requested output; shared
/// read-only by every thread.
pub(crate) struct Epilogue {
    bias: Vec<i32>,
    /// Per channel, for u8/i8 output.
    requant: Vec<ChannelRequant>,
    /// Per channel, for f32 output.
    dequant: Vec<f32>,
    /// Output zero point (u8/i8 output).
    zero_point: i32,
    relu: bool,
}

impl Epilogue {
    pub(crate) fn new(
        input: &Int8Input<'_>,
        weights: &PackedConvWeightsI8,
        bias: Option<&[i32]>,
        relu: bool,
        out: &Int8Output<'_>,
    ) -> Self {
        let oc = weights.out_channels;
        let (y_scale, zero_point) = match out {
            Int8Output::U8 {
                scale, zero_point, ..
            } => (Some(*scale), *zero_point as i32),
            Int8Output::I8 {
                scale, zero_point, ..
            } => (Some(*scale), *zero_point as i32),
            Int8Output::F32 { .. } => (None, 0),
        };
        let (requant, dequant) = match y_scale {
            Some(y) => (
                weights
                    .weight_scales
                    .iter()
                    .map(|&ws| ChannelRequant::new(requant_scale(input.scale, ws, y)))
                    .collect(),
                Vec::new(),
            ),
            None => (
                Vec::new(),
                weights
                    .weight_scales
                    .iter()
                    .map(|&ws| input.scale * ws)
                    .collect(),
            ),
        };
        Epilogue {
            bias: bias.map_or_else(|| vec![0; oc], <[i32]>::to_vec),
            requant,
            dequant,
            zero_point,
            relu,
        }
    }
}

/// An output element type: how a run of raw sums of one channel becomes output.
pub(crate) trait OutElem: Copy + Send + Sync + 'static {
    /// Writes `dst` (a run of channel `oc`) from raw sums `acc`, each `offset` short of the
    /// true accumulator (bias included); `residual` is the same run of the residual.
    fn write_row<K: I8MicroKernel>(
        kern: &K,
        epi: &Epilogue,
        oc: usize,
        acc: &[i32],
        offset: i32,
        residual: Option<&[Self]>,
        dst: &mut [Self],
    );
}

fn write_quantized<K: I8MicroKernel, T: QuantByte>(
    kern: &K,
    epi: &Epilogue,
    oc: usize,
    acc: &[i32],
    offset: i32,
    residual: Option<&[T]>,
    dst: &mut [T],
) {
    let (lo, hi) = if T::SIGNED { (-128, 127) } else { (0, 255) };
    // ReLU clamps at the output zero point (real zero), after the residual.
    let lo = if epi.relu { epi.zero_point } else { lo };
    kern.requantize(
        &epi.requant[oc],
        acc,
        offset,
        residual,
        epi.zero_point,
        lo,
        hi,
        dst,
    );
}

impl OutElem for u8 {
    fn write_row<K: I8MicroKernel>(
        kern: &K,
        epi: &Epilogue,
        oc: usize,
        acc: &[i32],
        offset: i32,
        residual: Option<&[u8]>,
        dst: &mut [u8],
    ) {
        write_quantized(kern, epi, oc, acc, offset, residual, dst);
    }
}

impl OutElem for i8 {
    fn write_row<K: I8MicroKernel>(
        kern: &K,
        epi: &Epilogue,
        oc: usize,
        acc: &[i32],
        offset: i32,
        residual: Option<&[i8]>,
        dst: &mut [i8],
    ) {
        write_quantized(kern, epi, oc, acc, offset, residual, dst);
    }
}

impl OutElem for f32 {
    fn write_row<K: I8MicroKernel>(
        _kern: &K,
        epi: &Epilogue,
        oc: usize,
        acc: &[i32],
        offset: i32,
        residual: Option<&[f32]>,
        dst: &mut [f32],
    ) {
        let scale = epi.dequant[oc];
        for (i, (d, &a)) in dst.iter_mut().zip(acc).enumerate() {
            let mut v = dequantize(a.wrapping_add(offset), scale);
            if let Some(res) = residual {
                v += res[i];
            }
            *d = if epi.relu && v < 0.0 { 0.0 } else { v };
        }
    }
}

/// The run `at..at + len` of a residual, if there is one.
fn residual_run<O>(residual: Option<&[O]>, at: usize, len: usize) -> Option<&[O]> {
    residual.map(|r| &r[at..][..len])
}

/// See [`super::conv2d_i8`]; `zx` is the biased (u8-domain) input zero point, `out` the
/// output tensor and `residual` the tensor added to it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d<K: I8MicroKernel, T: Activation, O: OutElem>(
    kern: &K,
    g: &Conv2dGeometry,
    x: &[T],
    zx: i32,
    w: &PackedConvWeightsI8,
    epi: &Epilogue,
    out: &mut [O],
    residual: Option<&[O]>,
) {
    let out_hw = g.out_h * g.out_w;
    if out_hw == 0 || g.out_channels == 0 {
        return;
    }
    let k = g.in_channels_per_group() * g.kernel_h * g.kernel_w;
    if k == 0 {
        let zeros = vec![0; out_hw];
        for (oc, dst) in out.chunks_exact_mut(out_hw).enumerate() {
            let res = residual_run(residual, oc * out_hw, out_hw);
            O::write_row(kern, epi, oc, &zeros, epi.bias[oc], res, dst);
        }
        return;
    }
    if w.depthwise {
        let PackedData::I8(weights) = &w.data else {
            unreachable!("depthwise weights are kept as i8")
        };
        return depthwise(kern, g, x, zx, weights, epi, out, residual);
    }

    // The raw sums miss the zero-point correction and any activation offset of the kernel;
    // fold both, with the bias, into one per-channel addend.
    let offsets: Vec<i32> = (0..g.out_channels)
        .map(|oc| epi.bias[oc].wrapping_add((K::ACT_OFFSET - zx).wrapping_mul(w.weight_sums[oc])))
        .collect();
    let pointwise = g.kernel_h == 1
        && g.kernel_w == 1
        && g.stride_h == 1
        && g.stride_w == 1
        && g.pad_top == 0
        && g.pad_left == 0
        && g.out_h == g.in_h
        && g.out_w == g.in_w;

    // Pointwise blocks are runs of columns (a whole number of slivers); im2col blocks are
    // whole output rows.
    let (block_rows, block_cols) = if pointwise {
        let cols = (PACK_BLOCK_ELEMS / k)
            .max(MIN_BLOCK_COLS)
            .next_multiple_of(K::NR)
            .min(out_hw);
        (0, cols)
    } else {
        let rows = (PACK_BLOCK_ELEMS / (k * g.out_w))
            .max(MIN_BLOCK_COLS.div_ceil(g.out_w))
            .clamp(1, g.out_h);
        (rows, rows * g.out_w)
    };
    let pad = T::from_biased(zx as u8);
    let col_len = if pointwise { 0 } else { k * block_cols };
    T::with_scratch(col_len, |col| {
        K::Elem::with_scratch(packed_b_len::<K>(k, block_cols), |bpack| {
            let blocks = Blocks {
                pointwise,
                block_rows,
                block_cols,
                pad,
            };
            gemm_blocks(
                kern, g, x, w, epi, out, residual, &offsets, &blocks, col, bpack,
            );
        })
    });
}

/// How a convolution's output columns are cut into packed blocks.
#[derive(Clone, Copy)]
struct Blocks<T> {
    pointwise: bool,
    /// Output rows per im2col block.
    block_rows: usize,
    /// Columns per block (the buffers' size).
    block_cols: usize,
    /// The input zero point, which padding taps read.
    pad: T,
}

/// The GEMM paths of [`conv2d`], given the scratch buffers `col` (im2col) and `bpack`.
#[allow(clippy::too_many_arguments)]
fn gemm_blocks<K: I8MicroKernel, T: Activation, O: OutElem>(
    kern: &K,
    g: &Conv2dGeometry,
    x: &[T],
    w: &PackedConvWeightsI8,
    epi: &Epilogue,
    out: &mut [O],
    residual: Option<&[O]>,
    offsets: &[i32],
    blocks: &Blocks<T>,
    col: &mut [T],
    bpack: &mut [K::Elem],
) {
    let Blocks {
        pointwise,
        block_rows,
        block_cols,
        pad,
    } = *blocks;
    let out_hw = g.out_h * g.out_w;
    let in_hw = g.in_h * g.in_w;
    let k = g.in_channels_per_group() * g.kernel_h * g.kernel_w;
    let a_all = K::Elem::unwrap(&w.data);
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    for grp in 0..g.groups {
        let a = &a_all[grp * w.group_stride..][..w.group_stride];
        let xg = &x[grp * cin_g * in_hw..][..cin_g * in_hw];
        let out_g = &mut out[grp * cout_g * out_hw..][..cout_g * out_hw];
        let mut c0 = 0;
        while c0 < out_hw {
            let n = if pointwise {
                block_cols.min(out_hw - c0)
            } else {
                let oy0 = c0 / g.out_w;
                let oy1 = (oy0 + block_rows).min(g.out_h);
                (oy1 - oy0) * g.out_w
            };
            let bp = &mut bpack[..packed_b_len::<K>(k, n)];
            if pointwise {
                pack_b(kern, bp, &xg[c0..], in_hw, k, n);
            } else {
                let oy0 = c0 / g.out_w;
                let col = &mut col[..k * n];
                im2col_rows(g, xg, pad, oy0..oy0 + n / g.out_w, col);
                pack_b(kern, bp, col, n, k, n);
            }
            let bp = &*bp;
            for_channel_blocks(out_g, cout_g, out_hw, 8, &|first, count, block| {
                gemm_packed(
                    kern,
                    a,
                    first..first + count,
                    k,
                    bp,
                    n,
                    &mut |r0, cc, rows, cols, sums, ld| {
                        let at = c0 + cc;
                        for r in 0..rows {
                            let oc = grp * cout_g + r0 + r;
                            let dst = &mut block[(r0 + r - first) * out_hw + at..][..cols];
                            let res = residual_run(residual, oc * out_hw + at, cols);
                            let acc = &sums[r * ld..][..cols];
                            O::write_row(kern, epi, oc, acc, offsets[oc], res, dst);
                        }
                    },
                );
            });
            c0 += n;
        }
    }
}

/// One input channel per group: accumulate `w * (x - zx)` for each tap over the output
/// positions whose tap lands inside the input (padding taps add nothing), then run the
/// epilogue on the whole channel. Channels are split across threads.
#[allow(clippy::too_many_arguments)]
fn depthwise<K: I8MicroKernel, T: Activation, O: OutElem>(
    kern: &K,
    g: &Conv2dGeometry,
    x: &[T],
    zx: i32,
    weights: &[i8],
    epi: &Epilogue,
    out: &mut [O],
    residual: Option<&[O]>,
) {
    let in_hw = g.in_h * g.in_w;
    let out_hw = g.out_h * g.out_w;
    let cout_g = g.out_channels_per_group();
    let taps = g.kernel_h * g.kernel_w;
    for_channel_blocks(out, g.out_channels, out_hw, 8, &|first, count, block| {
        let mut acc = vec![0i32; out_hw];
        for (oc, dst) in (first..first + count).zip(block.chunks_exact_mut(out_hw)) {
            let in_ch = &x[(oc / cout_g) * in_hw..][..in_hw];
            let w_ch = &weights[oc * taps..][..taps];
            acc.fill(0);
            for ky in 0..g.kernel_h {
                let dy = (ky * g.dilation_h) as isize - g.pad_top as isize;
                let rows = tap_range(g.out_h, g.in_h, g.stride_h, dy);
                for kx in 0..g.kernel_w {
                    let dx = (kx * g.dilation_w) as isize - g.pad_left as isize;
                    let cols = tap_range(g.out_w, g.in_w, g.stride_w, dx);
                    if cols.is_empty() {
                        continue;
                    }
                    let w = w_ch[ky * g.kernel_w + kx] as i32;
                    let ix0 = ((cols.start * g.stride_w) as isize + dx) as usize;
                    for oy in rows.clone() {
                        let iy = ((oy * g.stride_h) as isize + dy) as usize;
                        let in_row = &in_ch[iy * g.in_w + ix0..(iy + 1) * g.in_w];
                        let out_row = &mut acc[oy * g.out_w + cols.start..oy * g.out_w + cols.end];
                        if g.stride_w == 1 {
                            for (o, &xv) in out_row.iter_mut().zip(in_row) {
                                *o += w * (xv.biased() as i32 - zx);
                            }
                        } else {
                            for (o, &xv) in
                                out_row.iter_mut().zip(in_row.iter().step_by(g.stride_w))
                            {
                                *o += w * (xv.biased() as i32 - zx);
                            }
                        }
                    }
                }
            }
            let res = residual_run(residual, oc * out_hw, out_hw);
            O::write_row(kern, epi, oc, &acc, epi.bias[oc], res, dst);
        }
    });
}

/// Fills col[(ic * kernel_h + ky) * kernel_w + kx, (oy - rows.start) * out_w + ox] with the
/// input value that tap reads, or `pad` (the input zero point) in the padding. `x` holds one
/// group's input channels.
fn im2col_rows<T: Activation>(
    g: &Conv2dGeometry,
    x: &[T],
    pad: T,
    rows: std::ops::Range<usize>,
    col: &mut [T],
) {
    let in_hw = g.in_h * g.in_w;
    let n = rows.len() * g.out_w;
    let mut col_rows = col.chunks_exact_mut(n);
    for in_ch in x.chunks_exact(in_hw) {
        for ky in 0..g.kernel_h {
            let dy = (ky * g.dilation_h) as isize - g.pad_top as isize;
            let valid_rows = tap_range(g.out_h, g.in_h, g.stride_h, dy);
            for kx in 0..g.kernel_w {
                let dx = (kx * g.dilation_w) as isize - g.pad_left as isize;
                let cols = tap_range(g.out_w, g.in_w, g.stride_w, dx);
                let dst = col_rows.next().expect("col has k rows");
                if g.stride_h == 1 && g.stride_w == 1 && g.in_w == g.out_w && !cols.is_empty() {
                    shifted_plane_rows(
                        g,
                        in_ch,
                        pad,
                        rows.clone(),
                        &valid_rows,
                        &cols,
                        dy,
                        dx,
                        dst,
                    );
                    continue;
                }
                for (oy, d) in rows.clone().zip(dst.chunks_exact_mut(g.out_w)) {
                    if !valid_rows.contains(&oy) || cols.is_empty() {
                        d.fill(pad);
                        continue;
                    }
                    let iy = ((oy * g.stride_h) as isize + dy) as usize;
                    let ix0 = ((cols.start * g.stride_w) as isize + dx) as usize;
                    let in_row = &in_ch[iy * g.in_w + ix0..(iy + 1) * g.in_w];
                    d[..cols.start].fill(pad);
                    d[cols.end..].fill(pad);
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

/// One im2col row of a stride-1 tap when input and output rows have the same width: the tap
/// reads the input plane shifted by `dy` rows and `dx` columns, so the valid output rows are
/// one contiguous copy of the input (a few small copies per output row would cost more than
/// the products on small feature maps), after which the columns that fall in the left or
/// right padding, which the copy filled from the neighbouring input row, are reset to `pad`.
#[allow(clippy::too_many_arguments)]
fn shifted_plane_rows<T: Activation>(
    g: &Conv2dGeometry,
    in_ch: &[T],
    pad: T,
    rows: std::ops::Range<usize>,
    valid_rows: &std::ops::Range<usize>,
    cols: &std::ops::Range<usize>,
    dy: isize,
    dx: isize,
    dst: &mut [T],
) {
    let w = g.out_w;
    let first = rows.start.max(valid_rows.start).min(rows.end);
    let last = rows.end.min(valid_rows.end).max(first);
    dst[..(first - rows.start) * w].fill(pad);
    dst[(last - rows.start) * w..].fill(pad);
    if first == last {
        return;
    }
    let body = &mut dst[(first - rows.start) * w..(last - rows.start) * w];
    // Input index of body[0]; the run may start one row's shift before the plane or end after
    // it, and those elements are padding columns anyway.
    let start = (first as isize + dy) * g.in_w as isize + dx;
    let lo = (-start).max(0) as usize;
    let hi = body
        .len()
        .min((in_ch.len() as isize - start).max(0) as usize);
    if lo < hi {
        body[lo..hi].copy_from_slice(&in_ch[(start + lo as isize) as usize..][..hi - lo]);
    }
    if cols.start > 0 || cols.end < w {
        for row in body.chunks_exact_mut(w) {
            row[..cols.start].fill(pad);
            row[cols.end..].fill(pad);
        }
    }
}
