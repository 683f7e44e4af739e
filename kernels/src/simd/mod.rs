//! Vector versions of the memory-bound kernels: max and average pooling, global average
//! pooling, softmax and LRN, for AVX2 (x86_64) and NEON (aarch64).
//!
//! Each kernel is written once here against [`F32Vec`], a small set of lane-wise operations
//! that the ISA tokens implement, and plugged into the generic drivers (which keep every rule
//! about padding, ceil mode, empty windows and non-finite rows) through their `*_by` hooks.
//! The ISA modules wrap these bodies in functions compiled with the ISA's target features.
//! 32-bit ARM runs the generic versions: its NEON intrinsics are not stable.

use crate::dispatch::Isa;
use crate::generic::{self, fold_segment, max_nan_f32, Pool2dGeometry};
#[cfg(target_arch = "aarch64")]
use crate::neon::Neon;
#[cfg(target_arch = "x86_64")]
use crate::x86::avx2::Avx2Fma;

/// Lane-wise f32 operations of one ISA. Implemented by the ISA's proof token, so the methods
/// are safe: a token exists only where the instructions run.
///
/// Loads and stores take slices and panic if they hold fewer floats than they touch.
pub(crate) trait F32Vec: Copy {
    type V: Copy;
    const LANES: usize;

    fn splat(self, x: f32) -> Self::V;
    /// The first `LANES` floats of `s`.
    fn load(self, s: &[f32]) -> Self::V;
    /// Writes `v` to the first `LANES` floats of `s`.
    fn store(self, v: Self::V, s: &mut [f32]);
    /// `s[0], s[2], .., s[2 * LANES - 2]`; `s` must hold `2 * LANES` floats.
    fn load_even(self, s: &[f32]) -> Self::V;
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c`, fused.
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Lane-wise maximum; a NaN in either operand gives NaN (as [`max_nan_f32`]).
    fn max_nan(self, a: Self::V, b: Self::V) -> Self::V;
    fn sqrt(self, a: Self::V) -> Self::V;
    /// Round to nearest integer, ties to even.
    fn round(self, a: Self::V) -> Self::V;
    /// 2^n for lanes holding integers n in -126..=127.
    fn pow2i(self, n: Self::V) -> Self::V;
    /// `v` where `x >= limit`, 0 where `x < limit`.
    fn zero_below(self, x: Self::V, limit: Self::V, v: Self::V) -> Self::V;
    /// The largest lane, NaN if any lane is NaN.
    fn reduce_max_nan(self, v: Self::V) -> f32;
    /// Sum of every float of `s`, accumulated in f64.
    fn sum_f64(self, s: &[f32]) -> f64;
}

/// Below this, e^x is under the smallest normal f32 and is flushed to 0 (an error below
/// 1.2e-38, far under any tolerance of a probability).
const EXP_MIN_ARG: f32 = -87.336_54;

/// e^x lane-wise for x <= 0 (including -inf), within about 2 ulp of `f32::exp`.
///
/// x = n ln2 + r with n an integer and |r| <= ln2 / 2; e^r comes from its degree-7 Taylor
/// polynomial (truncation error r^8 / 8! < 6e-9, under half an ulp) and 2^n is built in the
/// exponent bits. ln2 is split into a 9-bit head, exact when multiplied by n, and a tail.
#[inline(always)]
pub(crate) fn exp_nonpositive<S: F32Vec>(s: S, x: S::V) -> S::V {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let limit = s.splat(EXP_MIN_ARG);
    let xc = s.max_nan(x, limit);
    let n = s.round(s.mul(xc, s.splat(std::f32::consts::LOG2_E)));
    let r = s.mul_add(n, s.splat(-LN2_HI), xc);
    let r = s.mul_add(n, s.splat(-LN2_LO), r);
    let mut p = s.splat(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = s.mul_add(p, r, s.splat(c));
    }
    s.zero_below(x, limit, s.mul(p, s.pow2i(n)))
}

/// `out[i] = op(out[i], row[i * stride])`, vectorised for strides 1 and 2 (the strides of
/// every common pooling layer); `vop` and `sop` must be the same operation.
#[inline(always)]
pub(crate) fn fold_segment_vec<S: F32Vec>(
    s: S,
    out: &mut [f32],
    row: &[f32],
    stride: usize,
    vop: impl Fn(S::V, S::V) -> S::V,
    sop: impl Fn(f32, f32) -> f32,
) {
    let l = S::LANES;
    let mut i = 0;
    match stride {
        1 => {
            while i + l <= out.len() {
                let v = vop(s.load(&out[i..]), s.load(&row[i..]));
                s.store(v, &mut out[i..]);
                i += l;
            }
        }
        // Only while a whole 2 * LANES floats of the row remain: the last tap of a segment
        // may be the row's last float.
        2 => {
            while i + l <= out.len() && 2 * (i + l) <= row.len() {
                let v = vop(s.load(&out[i..]), s.load_even(&row[2 * i..]));
                s.store(v, &mut out[i..]);
                i += l;
            }
        }
        _ => {}
    }
    if i < out.len() {
        fold_segment(&mut out[i..], &row[i * stride..], stride, sop);
    }
}

#[inline(always)]
pub(crate) fn max_segment<S: F32Vec>(s: S, out: &mut [f32], row: &[f32], stride: usize) {
    fold_segment_vec(s, out, row, stride, |a, b| s.max_nan(a, b), max_nan_f32);
}

#[inline(always)]
pub(crate) fn add_segment<S: F32Vec>(s: S, out: &mut [f32], row: &[f32], stride: usize) {
    fold_segment_vec(s, out, row, stride, |a, b| s.add(a, b), |a, b| a + b);
}

/// One softmax row; rows whose max is not finite go to the generic definition.
#[inline(always)]
pub(crate) fn softmax_row<S: F32Vec>(s: S, x: &[f32], y: &mut [f32]) {
    let l = S::LANES;
    let body = x.len() - x.len() % l;
    let mut max = f32::NEG_INFINITY;
    if body > 0 {
        let mut m = s.load(x);
        for i in (l..body).step_by(l) {
            m = s.max_nan(m, s.load(&x[i..]));
        }
        max = s.reduce_max_nan(m);
    }
    max = x[body..].iter().copied().fold(max, max_nan_f32);
    if !max.is_finite() {
        return generic::softmax_f32_row(x, y);
    }

    // x - max <= 0, so the exponentials are in [0, 1] and the max entry gives 1: the sum is
    // in [1, len] and cannot overflow. It is taken in f64 as the generic kernel does.
    let mv = s.splat(max);
    for i in (0..body).step_by(l) {
        let e = exp_nonpositive(s, s.sub(s.load(&x[i..]), mv));
        s.store(e, &mut y[i..]);
    }
    for (yv, &xv) in y[body..].iter_mut().zip(&x[body..]) {
        *yv = (xv - max).exp();
    }
    let inv = (1.0 / s.sum_f64(y)) as f32;
    let iv = s.splat(inv);
    for i in (0..body).step_by(l) {
        let v = s.mul(s.load(&y[i..]), iv);
        s.store(v, &mut y[i..]);
    }
    for yv in &mut y[body..] {
        *yv *= inv;
    }
}

/// `sum_sq[i] += x[i]^2`.
#[inline(always)]
pub(crate) fn add_squares<S: F32Vec>(s: S, sum_sq: &mut [f32], x: &[f32]) {
    let l = S::LANES;
    let n = sum_sq.len().min(x.len());
    let body = n - n % l;
    for i in (0..body).step_by(l) {
        let xv = s.load(&x[i..]);
        let v = s.mul_add(xv, xv, s.load(&sum_sq[i..]));
        s.store(v, &mut sum_sq[i..]);
    }
    for (a, &v) in sum_sq[body..n].iter_mut().zip(&x[body..n]) {
        *a += v * v;
    }
}

/// `y[i] = x[i] / (bias + alpha_over_size * sum_sq[i])^0.75`, as two square roots.
#[inline(always)]
pub(crate) fn lrn_scale_075<S: F32Vec>(
    s: S,
    y: &mut [f32],
    x: &[f32],
    sum_sq: &[f32],
    bias: f32,
    alpha_over_size: f32,
) {
    let l = S::LANES;
    let n = y.len().min(x.len()).min(sum_sq.len());
    let body = n - n % l;
    let (bv, av) = (s.splat(bias), s.splat(alpha_over_size));
    for i in (0..body).step_by(l) {
        let r = s.sqrt(s.mul_add(av, s.load(&sum_sq[i..]), bv));
        let v = s.div(s.load(&x[i..]), s.mul(r, s.sqrt(r)));
        s.store(v, &mut y[i..]);
    }
    for ((yv, &xv), &sq) in y[body..n].iter_mut().zip(&x[body..n]).zip(&sum_sq[body..n]) {
        let r = (bias + alpha_over_size * sq).sqrt();
        *yv = xv / (r * r.sqrt());
    }
}

/// The vector kernels of one ISA, each compiled with that ISA's features.
pub(crate) trait VecKernels: F32Vec {
    fn max_segment(self, out: &mut [f32], row: &[f32], stride: usize);
    fn add_segment(self, out: &mut [f32], row: &[f32], stride: usize);
    fn softmax_row(self, x: &[f32], y: &mut [f32]);
    fn add_squares(self, sum_sq: &mut [f32], x: &[f32]);
    fn lrn_scale_075(self, y: &mut [f32], x: &[f32], sum_sq: &[f32], bias: f32, aos: f32);
    /// [`F32Vec::sum_f64`], for callers outside the ISA's feature context.
    fn channel_sum(self, x: &[f32]) -> f64;
}

/// Runs `$body` with `$k` bound to the vector-kernel token of `$isa`, or `$generic` where the
/// ISA has no vector versions of these kernels (32-bit ARM); panics if `isa` cannot run here.
macro_rules! with_vec_kernels {
    ($isa:expr, $generic:expr, |$k:ident| $body:expr) => {
        match $isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                let $k = Avx2Fma::new().unwrap_or_else(|| crate::unavailable(Isa::Avx2Fma));
                $body
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => {
                let $k = Neon::new().unwrap_or_else(|| crate::unavailable(Isa::Neon));
                $body
            }
            Isa::Generic => $generic,
            #[allow(unreachable_patterns)]
            other if other.is_available() => $generic,
            #[allow(unreachable_patterns)]
            other => crate::unavailable(other),
        }
    };
}

/// Max pool; see [`generic::max_pool2d_f32`] for the semantics. Runs on
/// [`selected_isa`](crate::selected_isa).
pub fn max_pool2d_f32(g: &Pool2dGeometry, input: &[f32], output: &mut [f32]) {
    max_pool2d_f32_with(crate::selected_isa(), g, input, output);
}

/// [`max_pool2d_f32`] on a given implementation. Panics if `isa` is not available here.
pub fn max_pool2d_f32_with(isa: Isa, g: &Pool2dGeometry, input: &[f32], output: &mut [f32]) {
    with_vec_kernels!(isa, generic::max_pool2d_f32(g, input, output), |k| {
        generic::max_pool2d_f32_by(g, input, output, |o, r, st| k.max_segment(o, r, st))
    })
}

/// Average pool; see [`generic::avg_pool2d_f32`] for the semantics (padding counts, ceil
/// mode). Runs on [`selected_isa`](crate::selected_isa).
pub fn avg_pool2d_f32(
    g: &Pool2dGeometry,
    count_include_pad: bool,
    input: &[f32],
    output: &mut [f32],
) {
    avg_pool2d_f32_with(crate::selected_isa(), g, count_include_pad, input, output);
}

/// [`avg_pool2d_f32`] on a given implementation. Panics if `isa` is not available here.
pub fn avg_pool2d_f32_with(
    isa: Isa,
    g: &Pool2dGeometry,
    count_include_pad: bool,
    input: &[f32],
    output: &mut [f32],
) {
    with_vec_kernels!(
        isa,
        generic::avg_pool2d_f32(g, count_include_pad, input, output),
        |k| generic::avg_pool2d_f32_by(g, count_include_pad, input, output, |o, r, st| {
            k.add_segment(o, r, st)
        })
    )
}

/// Mean of each channel, accumulated in f64; see [`generic::global_avg_pool_f32`]. Runs on
/// [`selected_isa`](crate::selected_isa).
pub fn global_avg_pool_f32(channels: usize, hw: usize, input: &[f32], output: &mut [f32]) {
    global_avg_pool_f32_with(crate::selected_isa(), channels, hw, input, output);
}

/// [`global_avg_pool_f32`] on a given implementation. Panics if `isa` is not available here.
pub fn global_avg_pool_f32_with(
    isa: Isa,
    channels: usize,
    hw: usize,
    input: &[f32],
    output: &mut [f32],
) {
    with_vec_kernels!(
        isa,
        generic::global_avg_pool_f32(channels, hw, input, output),
        |k| generic::global_avg_pool_f32_by(channels, hw, input, output, |x| k.channel_sum(x))
    )
}

/// Row-wise softmax; see [`generic::softmax_f32`] for the semantics of non-finite rows. Runs
/// on [`selected_isa`](crate::selected_isa).
pub fn softmax_f32(rows: usize, cols: usize, input: &[f32], output: &mut [f32]) {
    softmax_f32_with(crate::selected_isa(), rows, cols, input, output);
}

/// [`softmax_f32`] on a given implementation. Panics if `isa` is not available here.
pub fn softmax_f32_with(isa: Isa, rows: usize, cols: usize, input: &[f32], output: &mut [f32]) {
    with_vec_kernels!(isa, generic::softmax_f32(rows, cols, input, output), |k| {
        generic::softmax_f32_by(rows, cols, input, output, |x, y| k.softmax_row(x, y))
    })
}

/// LRN across channels; see [`generic::lrn_f32`]. Runs on
/// [`selected_isa`](crate::selected_isa).
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
    lrn_f32_with(
        crate::selected_isa(),
        channels,
        hw,
        size,
        alpha,
        beta,
        bias,
        input,
        output,
    );
}

/// [`lrn_f32`] on a given implementation. Panics if `isa` is not available here.
#[allow(clippy::too_many_arguments)]
pub fn lrn_f32_with(
    isa: Isa,
    channels: usize,
    hw: usize,
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
    input: &[f32],
    output: &mut [f32],
) {
    with_vec_kernels!(
        isa,
        generic::lrn_f32(channels, hw, size, alpha, beta, bias, input, output),
        |k| generic::lrn_f32_by(
            channels,
            hw,
            (size, alpha, beta, bias),
            input,
            output,
            |sum_sq, x| k.add_squares(sum_sq, x),
            |y, x, sum_sq, bias, aos| k.lrn_scale_075(y, x, sum_sq, bias, aos),
        )
    )
}
