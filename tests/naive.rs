//! Hand-computed expectations: operators written straight from the ONNX definitions, in f64,
//! one output element at a time, with no code shared with Kestrel. The fault-kind tests check
//! Kestrel against these as well as against tract, because tract itself gets some of these
//! corner cases wrong.

use kestrel_graph::Tensor;

/// `(begin, end)` padding of `auto_pad` SAME_UPPER (`upper`) or SAME_LOWER along one axis:
/// the output is `ceil(in / stride)`, and an odd total puts the extra pixel at the end (upper)
/// or at the start (lower).
pub fn same_pads(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    upper: bool,
) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let span = dilation * (kernel - 1) + 1;
    let total = ((out - 1) * stride + span).saturating_sub(input);
    let small = total / 2;
    if upper {
        (small, total - small)
    } else {
        (total - small, small)
    }
}

/// Convolution geometry along both spatial axes.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub pads_begin: [usize; 2],
    pub pads_end: [usize; 2],
}

fn at(t: &Tensor, idx: [usize; 4]) -> f64 {
    let s = t.shape();
    t.data()[((idx[0] * s[1] + idx[1]) * s[2] + idx[2]) * s[3] + idx[3]] as f64
}

/// ONNX Conv: `x [n, c, h, w]`, `w [m, c / group, kh, kw]`, optional bias `[m]`.
pub fn conv(x: &Tensor, w: &Tensor, bias: Option<&[f32]>, win: &Window, group: usize) -> Tensor {
    let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let m = w.shape()[0];
    let cg = c / group;
    let mg = m / group;
    let out_size = |i: usize| {
        let span = win.dilations[i] * (win.kernel[i] - 1) + 1;
        let padded = [h, wd][i] + win.pads_begin[i] + win.pads_end[i];
        (padded - span) / win.strides[i] + 1
    };
    let (oh, ow) = (out_size(0), out_size(1));
    let mut out = Vec::with_capacity(n * m * oh * ow);
    for b in 0..n {
        for oc in 0..m {
            let g = oc / mg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(0.0, |b| b[oc] as f64);
                    for icg in 0..cg {
                        for ky in 0..win.kernel[0] {
                            for kx in 0..win.kernel[1] {
                                let iy = (oy * win.strides[0] + ky * win.dilations[0]) as isize
                                    - win.pads_begin[0] as isize;
                                let ix = (ox * win.strides[1] + kx * win.dilations[1]) as isize
                                    - win.pads_begin[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv = at(x, [b, g * cg + icg, iy as usize, ix as usize]);
                                acc += xv * at(w, [oc, icg, ky, kx]);
                            }
                        }
                    }
                    out.push(acc as f32);
                }
            }
        }
    }
    Tensor::new(vec![n, m, oh, ow], out).expect("conv output")
}

/// Pool output size along one axis. With `ceil_mode` the division rounds up, and a last window
/// that would start inside the end padding is dropped.
pub fn pool_out(
    input: usize,
    kernel: usize,
    stride: usize,
    begin: usize,
    end: usize,
    ceil: bool,
) -> usize {
    let steps = input + begin + end - kernel;
    let mut out = if ceil {
        steps.div_ceil(stride)
    } else {
        steps / stride
    } + 1;
    if ceil && (out - 1) * stride >= input + begin {
        out -= 1;
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pool {
    Max,
    /// Average; `true` divides by the window's taps inside the padded input, `false` by those
    /// inside the real input.
    Average(bool),
}

/// ONNX MaxPool / AveragePool (no dilation). Padding never wins a max (it acts as -inf); taps
/// of a ceil-mode window that run past the padded input count for nothing.
pub fn pool(x: &Tensor, kind: Pool, win: &Window, ceil: bool) -> Tensor {
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let oh = pool_out(
        h,
        win.kernel[0],
        win.strides[0],
        win.pads_begin[0],
        win.pads_end[0],
        ceil,
    );
    let ow = pool_out(
        w,
        win.kernel[1],
        win.strides[1],
        win.pads_begin[1],
        win.pads_end[1],
        ceil,
    );
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut max = f64::NEG_INFINITY;
                    let (mut sum, mut inside, mut padded) = (0.0, 0usize, 0usize);
                    for ky in 0..win.kernel[0] {
                        for kx in 0..win.kernel[1] {
                            let iy =
                                (oy * win.strides[0] + ky) as isize - win.pads_begin[0] as isize;
                            let ix =
                                (ox * win.strides[1] + kx) as isize - win.pads_begin[1] as isize;
                            let in_pad_y = iy >= -(win.pads_begin[0] as isize)
                                && iy < (h + win.pads_end[0]) as isize;
                            let in_pad_x = ix >= -(win.pads_begin[1] as isize)
                                && ix < (w + win.pads_end[1]) as isize;
                            if in_pad_y && in_pad_x {
                                padded += 1;
                            }
                            if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize {
                                let v = at(x, [b, ch, iy as usize, ix as usize]);
                                max = max.max(v);
                                sum += v;
                                inside += 1;
                            }
                        }
                    }
                    out.push(match kind {
                        Pool::Max => max as f32,
                        Pool::Average(true) => (sum / padded as f64) as f32,
                        Pool::Average(false) => (sum / inside as f64) as f32,
                    });
                }
            }
        }
    }
    Tensor::new(vec![n, c, oh, ow], out).expect("pool output")
}

/// ONNX LRN: `y = x / (bias + alpha / size * sum of x^2 over channels
/// [c - floor((size - 1) / 2), c + ceil((size - 1) / 2)] inside [0, C))^beta`.
pub fn lrn(x: &Tensor, size: usize, alpha: f32, beta: f32, bias: f32) -> Tensor {
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let before = (size - 1) / 2;
    let after = (size - 1).div_ceil(2);
    let mut out = Vec::with_capacity(x.len());
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    let lo = ch.saturating_sub(before);
                    let hi = (ch + after).min(c - 1);
                    let sq: f64 = (lo..=hi).map(|cc| at(x, [b, cc, y, xx]).powi(2)).sum();
                    let denom = (bias as f64 + alpha as f64 / size as f64 * sq).powf(beta as f64);
                    out.push((at(x, [b, ch, y, xx]) / denom) as f32);
                }
            }
        }
    }
    Tensor::new(x.shape().to_vec(), out).expect("lrn output")
}

/// Softmax of each row of `[rows, cols]`, in f64.
pub fn softmax_rows(x: &[f32], cols: usize) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.into_iter().map(move |v| (v / sum) as f32)
        })
        .collect()
}
