//! NEON lanes for the vector kernels of [`crate::simd`]: four f32 per `float32x4_t`.
//!
//! Advanced SIMD is baseline on aarch64, so the kernels need no feature-enabled wrappers and
//! the entry points simply instantiate them.

use std::arch::aarch64::*;

use super::Neon;
use crate::simd::{self, F32Vec, VecKernels};

impl F32Vec for Neon {
    type V = float32x4_t;
    const LANES: usize = 4;

    #[inline(always)]
    fn splat(self, x: f32) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vdupq_n_f32(x) }
    }

    #[inline(always)]
    fn load(self, s: &[f32]) -> float32x4_t {
        let s = &s[..4];
        // SAFETY: NEON is baseline; `s` holds the 4 floats read.
        unsafe { vld1q_f32(s.as_ptr()) }
    }

    #[inline(always)]
    fn store(self, v: float32x4_t, s: &mut [f32]) {
        let s = &mut s[..4];
        // SAFETY: NEON is baseline; `s` holds the 4 floats written.
        unsafe { vst1q_f32(s.as_mut_ptr(), v) }
    }

    #[inline(always)]
    fn load_even(self, s: &[f32]) -> float32x4_t {
        let s = &s[..8];
        // SAFETY: NEON is baseline; `s` holds the 8 floats `ld2` reads.
        unsafe { vld2q_f32(s.as_ptr()).0 }
    }

    #[inline(always)]
    fn add(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vaddq_f32(a, b) }
    }

    #[inline(always)]
    fn sub(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vsubq_f32(a, b) }
    }

    #[inline(always)]
    fn mul(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vmulq_f32(a, b) }
    }

    #[inline(always)]
    fn div(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vdivq_f32(a, b) }
    }

    #[inline(always)]
    fn mul_add(self, a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vfmaq_f32(c, a, b) }
    }

    #[inline(always)]
    fn max_nan(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // `fmax` (unlike `fmaxnm`) returns NaN when either operand is NaN.
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vmaxq_f32(a, b) }
    }

    #[inline(always)]
    fn sqrt(self, a: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vsqrtq_f32(a) }
    }

    #[inline(always)]
    fn round(self, a: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vrndnq_f32(a) }
    }

    #[inline(always)]
    fn pow2i(self, n: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe {
            let biased = vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127));
            vreinterpretq_f32_s32(vshlq_n_s32::<23>(biased))
        }
    }

    #[inline(always)]
    fn zero_below(self, x: float32x4_t, limit: float32x4_t, v: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vbslq_f32(vcltq_f32(x, limit), vdupq_n_f32(0.0), v) }
    }

    #[inline(always)]
    fn reduce_max_nan(self, v: float32x4_t) -> f32 {
        // `fmaxv` propagates NaN like `fmax`.
        // SAFETY: NEON is baseline on aarch64.
        unsafe { vmaxvq_f32(v) }
    }

    #[inline(always)]
    fn sum_f64(self, s: &[f32]) -> f64 {
        let (chunks, tail) = s.as_chunks::<4>();
        // SAFETY: NEON is baseline on aarch64; each chunk holds the 4 floats read.
        let body = unsafe {
            let mut acc = [vdupq_n_f64(0.0); 2];
            for c in chunks {
                let v = vld1q_f32(c.as_ptr());
                acc[0] = vaddq_f64(acc[0], vcvt_f64_f32(vget_low_f32(v)));
                acc[1] = vaddq_f64(acc[1], vcvt_high_f64_f32(v));
            }
            vaddvq_f64(vaddq_f64(acc[0], acc[1]))
        };
        body + tail.iter().map(|&v| v as f64).sum::<f64>()
    }
}

impl VecKernels for Neon {
    fn max_segment(self, out: &mut [f32], row: &[f32], stride: usize) {
        simd::max_segment(self, out, row, stride)
    }

    fn add_segment(self, out: &mut [f32], row: &[f32], stride: usize) {
        simd::add_segment(self, out, row, stride)
    }

    fn softmax_row(self, x: &[f32], y: &mut [f32]) {
        simd::softmax_row(self, x, y)
    }

    fn add_squares(self, sum_sq: &mut [f32], x: &[f32]) {
        simd::add_squares(self, sum_sq, x)
    }

    fn lrn_scale_075(self, y: &mut [f32], x: &[f32], sum_sq: &[f32], bias: f32, aos: f32) {
        simd::lrn_scale_075(self, y, x, sum_sq, bias, aos)
    }

    fn channel_sum(self, x: &[f32]) -> f64 {
        self.sum_f64(x)
    }
}
