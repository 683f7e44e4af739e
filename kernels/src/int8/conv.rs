//! Quantized convolution paths (pointwise GEMM, im2col GEMM, depthwise direct) and the
//! epilogue they share.

use super::driver::{self, Activation, I8MicroKernel, PackElem};
use super::{Int8Input, Int8Output, PackedConvWeightsI8, PackedData};
use crate::generic::tap_range;
use crate::quant::{dequantize, requant_scale, Requantizer};
use crate::Conv2dGeometry;

/// im2col buffer budget in elements (1 MiB of bytes); output rows are processed in blocks
/// that fit.
const IM2COL_BLOCK_ELEMS: usize = 1 << 20;
/// Fewest columns worth handing to the GEMM per block, even if the budget is exceeded.
const IM2COL_MIN_COLS: usize = 128;

/// Turns exact i32 accumulators into the requested output, one run of a channel at a time.
pub(crate) struct Epilogue<'a> {
    out: Int8Output<'a>,
    bias: Vec<i32>,
    /// Per channel: requantization (u8/i8 output) or dequantization (f32 output) scale.
    requant: Vec<Requantizer>,
    dequant: Vec<f32>,
    relu: bool,
}

impl<'a> Epilogue<'a> {
    pub(crate) fn new(
        input: &Int8Input<'_>,
        weights: &PackedConvWeightsI8,
        bias: Option<&[i32]>,
        relu: bool,
        out: Int8Output<'a>,
    ) -> Self {
        let oc = weights.out_channels;
        let y_scale = match &out {
            Int8Output::U8 { scale, .. } | Int8Output::I8 { scale, .. } => Some(*scale),
            Int8Output::F32 { .. } => None,
        };
        let (requant, dequant) = match y_scale {
            Some(y) => (
                weights
                    .weight_scales
                    .iter()
                    .map(|&ws| Requantizer::new(requant_scale(input.scale, ws, y)))
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
            out,
            bias: bias.map_or_else(|| vec![0; oc], <[i32]>::to_vec),
            requant,
            dequant,
            relu,
        }
    }

    /// Writes output elements `base..base + acc.len()` (all of channel `oc`) from raw sums
    /// `acc`, each of which is `offset` short of the true accumulator (bias included).
    fn write(&mut self, oc: usize, base: usize, acc: &[i32], offset: i32) {
        let n = acc.len();
        let relu = self.relu;
        match &mut self.out {
            Int8Output::U8 {
                data,
                zero_point,
                residual,
                ..
            } => {
                let zp = *zero_point as i32;
                let lo = if relu { zp } else { 0 };
                let rq = self.requant[oc];
                let dst = &mut data[base..][..n];
                match residual {
                    Some(res) => {
                        for ((d, &a), &r) in dst.iter_mut().zip(acc).zip(&res[base..][..n]) {
                            *d = rq.apply_saturating(a.wrapping_add(offset), r as i32, lo, 255)
                                as u8;
                        }
                    }
                    None => {
                        for (d, &a) in dst.iter_mut().zip(acc) {
                            *d = rq.apply_saturating(a.wrapping_add(offset), zp, lo, 255) as u8;
                        }
                    }
                }
            }
            Int8Output::I8 {
                data,
                zero_point,
                residual,
                ..
            } => {
                let zp = *zero_point as i32;
                let lo = if relu { zp } else { -128 };
                let rq = self.requant[oc];
                let dst = &mut data[base..][..n];
                match residual {
                    Some(res) => {
                        for ((d, &a), &r) in dst.iter_mut().zip(acc).zip(&res[base..][..n]) {
                            *d = rq.apply_saturating(a.wrapping_add(offset), r as i32, lo, 127)
                                as i8;
                        }
                    }
                    None => {
                        for (d, &a) in dst.iter_mut().zip(acc) {
                            *d = rq.apply_saturating(a.wrapping_add(offset), zp, lo, 127) as i8;
                        }
                    }
                }
            }
            Int8Output::F32 { data, residual } => {
                let scale = self.dequant[oc];
                let dst = &mut data[base..][..n];
                for (i, (d, &a)) in dst.iter_mut().zip(acc).enumerate() {
                    let mut v = dequantize(a.wrapping_add(offset), scale);
                    if let Some(res) = residual {
                        v += res[base + i];
                    }
                    *d = if relu && v < 0.0 { 0.0 } else { v };
                }
            }
        }
    }
}

/// See [`super::conv2d_i8`]; `zx` is the biased (u8-domain) input zero point.
pub(crate) fn conv2d<K: I8MicroKernel, T: Activation>(
    kern: &K,
    g: &Conv2dGeometry,
    x: &[T],
    zx: i32,
    w: &PackedConvWeightsI8,
    epi: &mut Epilogue<'_>,
) {
    let out_hw = g.out_h * g.out_w;
    if out_hw == 0 || g.out_channels == 0 {
        return;
    }
    let k = g.in_channels_per_group() * g.kernel_h * g.kernel_w;
    if k == 0 {
        let zeros = vec![0; out_hw];
        for oc in 0..g.out_channels {
            let bias = epi.bias[oc];
            epi.write(oc, oc * out_hw, &zeros, bias);
        }
        return;
    }
    if w.depthwise {
        let PackedData::I8(weights) = &w.data else {
            unreachable!("depthwise weights are kept as i8")
        };
        return depthwise(g, x, zx, weights, epi);
    }

    let offsets: Vec<i32> = (0..g.out_channels)
        .map(|oc| epi.bias[oc].wrapping_add((K::ACT_OFFSET - zx).wrapping_mul(w.weight_sums[oc])))
        .collect();
    let a_all = K::Elem::unwrap(&w.data);
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    let in_hw = g.in_h * g.in_w;
    let pointwise = g.kernel_h == 1
        && g.kernel_w == 1
        && g.stride_h == 1
        && g.stride_w == 1
        && g.pad_top == 0
        && g.pad_left == 0
        && g.out_h == g.in_h
        && g.out_w == g.in_w;

    let block_rows = if pointwise {
        g.out_h
    } else {
        (IM2COL_BLOCK_ELEMS / (k * g.out_w))
            .max(IM2COL_MIN_COLS.div_ceil(g.out_w))
            .clamp(1, g.out_h)
    };
    let mut col = if pointwise {
        Vec::new()
    } else {
        vec![T::from_biased(zx as u8); k * block_rows * g.out_w]
    };
    for grp in 0..g.groups {
        let a = &a_all[grp * w.group_stride..][..w.group_stride];
        let xg = &x[grp * cin_g * in_hw..][..cin_g * in_hw];
        for oy0 in (0..g.out_h).step_by(block_rows) {
            let oy1 = (oy0 + block_rows).min(g.out_h);
            let n = (oy1 - oy0) * g.out_w;
            let b: &[T] = if pointwise {
                xg
            } else {
                let col = &mut col[..k * n];
                im2col_rows(g, xg, T::from_biased(zx as u8), oy0..oy1, col);
                col
            };
            let oc0 = grp * cout_g;
            driver::gemm(
                kern,
                cout_g,
                k,
                a,
                n,
                b,
                n,
                &mut |r0, c0, rows, cols, tile| {
                    for r in 0..rows {
                        let oc = oc0 + r0 + r;
                        let base = oc * out_hw + oy0 * g.out_w + c0;
                        epi.write(oc, base, &tile[r * K::NR..][..cols], offsets[oc]);
                    }
                },
            );
        }
    }
}

/// One input channel per group: accumulate `w * (x - zx)` for each tap over the output
/// positions whose tap lands inside the input (padding taps add nothing), then run the
/// epilogue on the whole channel.
fn depthwise<T: Activation>(
    g: &Conv2dGeometry,
    x: &[T],
    zx: i32,
    weights: &[i8],
    epi: &mut Epilogue<'_>,
) {
    let in_hw = g.in_h * g.in_w;
    let out_hw = g.out_h * g.out_w;
    let cout_g = g.out_channels_per_group();
    let taps = g.kernel_h * g.kernel_w;
    let mut acc = vec![0i32; out_hw];
    for oc in 0..g.out_channels {
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
                        for (o, &xv) in out_row.iter_mut().zip(in_row.iter().step_by(g.stride_w)) {
                            *o += w * (xv.biased() as i32 - zx);
                        }
                    }
                }
            }
        }
        let bias = epi.bias[oc];
        epi.write(oc, oc * out_hw, &acc, bias);
    }
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
