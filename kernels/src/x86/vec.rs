//! AVX2 lanes for the vector kernels of [`crate::simd`]: eight f32 per `__m256`.
//!
//! The trait methods are `#[inline(always)]` and only reach full speed inlined into the
//! `#[target_feature]` entry points at the bottom, which is where the kernels are instantiated.

use std::arch::x86_64::*;

use super::avx2::Avx2Fma;
use crate::simd::{self, F32Vec, VecKernels};

impl F32Vec for Avx2Fma {
    type V = __m256;
    const LANES: usize = 8;

    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        // SAFETY (this and every block below): the token exists only when AVX2 and FMA were
        // detected; slice accesses are bounds-checked first.
        unsafe { _mm256_set1_ps(x) }
    }

    #[inline(always)]
    fn load(self, s: &[f32]) -> __m256 {
        let s = &s[..8];
        // SAFETY: AVX2 (token); `s` holds the 8 floats read.
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }

    #[inline(always)]
    fn store(self, v: __m256, s: &mut [f32]) {
        let s = &mut s[..8];
        // SAFETY: AVX2 (token); `s` holds the 8 floats written.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
    }

    #[inline(always)]
    fn load_even(self, s: &[f32]) -> __m256 {
        let s = &s[..16];
        // SAFETY: AVX2 (token); `s` holds the 16 floats read.
        unsafe {
            let lo = _mm256_loadu_ps(s.as_ptr());
            let hi = _mm256_loadu_ps(s.as_ptr().add(8));
            // Per 128-bit half: [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6], then order the 64-bit
            // pairs as 0, 2, 1, 3.
            let mixed = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
                mixed,
            )))
        }
    }

    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 (token).
        unsafe { _mm256_add_ps(a, b) }
    }

    #[inline(always)]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 (token).
        unsafe { _mm256_sub_ps(a, b) }
    }

    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 (token).
        unsafe { _mm256_mul_ps(a, b) }
    }

    #[inline(always)]
    fn div(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX2 (token).
        unsafe { _mm256_div_ps(a, b) }
    }

    #[inline(always)]
    fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: FMA (token).
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }

    #[inline(always)]
    fn max_nan(self, a: __m256, b: __m256) -> __m256 {
        // `vmaxps` returns its second operand when either is NaN, so it keeps a NaN `a`;
        // a NaN `b` is blended back in.
        // SAFETY: AVX2 (token).
        unsafe {
            let m = _mm256_max_ps(b, a);
            _mm256_blendv_ps(m, b, _mm256_cmp_ps::<_CMP_UNORD_Q>(b, b))
        }
    }

    #[inline(always)]
    fn sqrt(self, a: __m256) -> __m256 {
        // SAFETY: AVX2 (token).
        unsafe { _mm256_sqrt_ps(a) }
    }

    #[inline(always)]
    fn round(self, a: __m256) -> __m256 {
        // SAFETY: AVX2 (token).
        unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    }

    #[inline(always)]
    fn pow2i(self, n: __m256) -> __m256 {
        // SAFETY: AVX2 (token).
        unsafe {
            let biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased))
        }
    }

    #[inline(always)]
    fn zero_below(self, x: __m256, limit: __m256, v: __m256) -> __m256 {
        // SAFETY: AVX2 (token).
        unsafe { _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(x, limit), v) }
    }

    #[inline(always)]
    fn reduce_max_nan(self, v: __m256) -> f32 {
        let mut lanes = [0.0f32; 8];
        self.store(v, &mut lanes);
        lanes
            .into_iter()
            .fold(f32::NEG_INFINITY, crate::generic::max_nan_f32)
    }

    #[inline(always)]
    fn sum_f64(self, s: &[f32]) -> f64 {
        let (chunks, tail) = s.as_chunks::<8>();
        // SAFETY: AVX2 (token); each chunk holds the 8 floats read.
        let body = unsafe {
            let mut acc = [_mm256_setzero_pd(); 2];
            for c in chunks {
                let v = _mm256_loadu_ps(c.as_ptr());
                acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
                acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)));
            }
            let mut lanes = [0.0f64; 4];
            _mm256_storeu_pd(lanes.as_mut_ptr(), _mm256_add_pd(acc[0], acc[1]));
            (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
        };
        body + tail.iter().map(|&v| v as f64).sum::<f64>()
    }
}

impl VecKernels for Avx2Fma {
    fn max_segment(self, out: &mut [f32], row: &[f32], stride: usize) {
        // SAFETY: AVX2 and FMA (token).
        unsafe { max_segment(self, out, row, stride) }
    }

    fn add_segment(self, out: &mut [f32], row: &[f32], stride: usize) {
        // SAFETY: AVX2 and FMA (token).
        unsafe { add_segment(self, out, row, stride) }
    }

    fn softmax_row(self, x: &[f32], y: &mut [f32]) {
        // SAFETY: AVX2 and FMA (token).
        unsafe { softmax_row(self, x, y) }
    }

    fn add_squares(self, sum_sq: &mut [f32], x: &[f32]) {
        // SAFETY: AVX2 and FMA (token).
        unsafe { add_squares(self, sum_sq, x) }
    }

    fn lrn_scale_075(self, y: &mut [f32], x: &[f32], sum_sq: &[f32], bias: f32, aos: f32) {
        // SAFETY: AVX2 and FMA (token).
        unsafe { lrn_scale_075(self, y, x, sum_sq, bias, aos) }
    }

    fn channel_sum(self, x: &[f32]) -> f64 {
        // SAFETY: AVX2 and FMA (token).
        unsafe { channel_sum(self, x) }
    }
}

#[target_feature(enable = "avx2,fma")]
fn max_segment(k: Avx2Fma, out: &mut [f32], row: &[f32], stride: usize) {
    simd::max_segment(k, out, row, stride)
}

#[target_feature(enable = "avx2,fma")]
fn add_segment(k: Avx2Fma, out: &mut [f32], row: &[f32], stride: usize) {
    simd::add_segment(k, out, row, stride)
}

#[target_feature(enable = "avx2,fma")]
fn softmax_row(k: Avx2Fma, x: &[f32], y: &mut [f32]) {
    simd::softmax_row(k, x, y)
}

#[target_feature(enable = "avx2,fma")]
fn add_squares(k: Avx2Fma, sum_sq: &mut [f32], x: &[f32]) {
    simd::add_squares(k, sum_sq, x)
}

#[target_feature(enable = "avx2,fma")]
fn lrn_scale_075(k: Avx2Fma, y: &mut [f32], x: &[f32], sum_sq: &[f32], bias: f32, aos: f32) {
    simd::lrn_scale_075(k, y, x, sum_sq, bias, aos)
}

#[target_feature(enable = "avx2,fma")]
fn channel_sum(k: Avx2Fma, x: &[f32]) -> f64 {
    k.sum_f64(x)
}
