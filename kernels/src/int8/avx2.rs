//! AVX2 int8 micro-kernel: a 6 x 16 tile of i32 sums in twelve ymm accumulators.
//!
//! Scheme: both operands are widened to i16 when packed (activations zero-extended from u8,
//! weights sign-extended from i8), and each pair of depth steps is one `vpmaddwd`: sixteen
//! i16 x i16 products summed pairwise into eight i32 lanes, then a `vpaddd` into the
//! accumulator. The obvious single-instruction alternative, `vpmaddubsw` (u8 x i8 with the
//! pair sum saturated to i16), is not exact: 255 * 127 + 255 * 127 = 64770 and
//! 255 * -128 * 2 = -65280 overflow i16 and silently clip. `vpmaddwd` cannot: its pair sum
//! is at most 2 * 255 * 128 in magnitude, well inside i32, for every input and zero point.
//! The cost is twice the operand bytes and half the MACs per instruction of `vpmaddubsw`,
//! but no restriction on the weights (such as 7-bit values) and no correction terms.
//!
//! Per pair of depth steps the kernel loads two ymm of packed B (16 columns x 2 steps),
//! broadcasts six 32-bit A pairs and issues twelve independent `vpmaddwd` + `vpaddd`; only
//! the 1-cycle adds are loop-carried, so twelve accumulators keep both multiply pipes busy.
//!
//! Activation packing and the requantizing epilogue are vectorised too, because on shallow
//! layers (a 1x1 over 64 channels is 64 MACs per output) a scalar epilogue costs as much as
//! the products: packing interleaves two depth rows of 16 bytes and widens them in four
//! instructions, and requantization handles sixteen outputs per step, in f64 for ordinary
//! scales and with a `vpmuldq` fixed-point form otherwise (see [`requantize_avx2`] for why
//! both stay bit-exact). A sliver with at most eight live columns (the tail of a 7x7 or
//! 14x14 map) runs a half-width 6 x 8 tile.

use std::arch::x86_64::*;

use super::driver::{
    pack_b_sliver_scalar, requantize_scalar, Activation, ChannelRequant, I8MicroKernel, QuantByte,
};
use crate::quant::FixedPoint;

/// Proof that the running CPU has AVX2; only `new` builds one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2I8 {
    _detected: (),
}

impl Avx2I8 {
    pub(crate) fn new() -> Option<Self> {
        std::is_x86_feature_detected!("avx2").then_some(Avx2I8 { _detected: () })
    }
}

const MR: usize = 6;
const NR: usize = 16;
const KU: usize = 2;

impl I8MicroKernel for Avx2I8 {
    type Elem = i16;
    const MR: usize = MR;
    const NR: usize = NR;
    const KU: usize = KU;
    const ACT_OFFSET: i32 = 0;

    fn pack_act(x: u8) -> i16 {
        x as i16
    }

    fn pack_weight(w: i8) -> i16 {
        w as i16
    }

    fn tile(&self, groups: usize, a: &[i16], b: &[i16], c: &mut [i32], ldc: usize, cols: usize) {
        assert!(a.len() >= groups * MR * KU && b.len() >= groups * NR * KU);
        assert!(ldc >= NR && c.len() >= (MR - 1) * ldc + NR);
        let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        // SAFETY: `self` exists only if AVX2 was detected; the asserts bound every read of
        // `a` (groups steps of 12 i16) and `b` (groups steps of 32 i16) and the 6 rows of at
        // most 16 i32 written to `c` at stride `ldc`.
        unsafe {
            // A sliver with at most 8 live columns (the last of a 7x7 or 14x14 layer) needs
            // only its first vector: half the products.
            if cols <= 8 {
                kernel_6xn::<1>(groups, a, b, c, ldc)
            } else {
                kernel_6xn::<2>(groups, a, b, c, ldc)
            }
        }
    }

    fn pack_b_sliver<T: Activation>(
        &self,
        dst: &mut [i16],
        b: &[T],
        ldb: usize,
        k: usize,
        c0: usize,
        cols: usize,
    ) {
        if cols < NR || std::mem::size_of::<T>() != 1 {
            return pack_b_sliver_scalar::<Self, T>(dst, b, ldb, k, c0, cols);
        }
        let groups = k.div_ceil(KU);
        assert!(dst.len() >= groups * NR * KU);
        assert!(k > 0 && b.len() >= (k - 1) * ldb + c0 + NR);
        // SAFETY: AVX2 was detected (`self` exists); T is one byte, so `b` is readable as
        // bytes; the asserts bound the 16-byte reads of rows 0..k at column c0 and the
        // `groups * 32` i16 written.
        unsafe {
            pack_sliver_16(
                dst.as_mut_ptr(),
                b.as_ptr().cast::<u8>().add(c0),
                ldb,
                k,
                T::BIAS_XOR,
            )
        }
    }

    fn requantize<T: QuantByte>(
        &self,
        rq: &ChannelRequant,
        acc: &[i32],
        offset: i32,
        residual: Option<&[T]>,
        zero_point: i32,
        lo: i32,
        hi: i32,
        dst: &mut [T],
    ) {
        let n = acc.len();
        assert_eq!(dst.len(), n);
        if let Some(res) = residual {
            assert_eq!(res.len(), n);
        }
        let done = match rq.fixed {
            Some(fp) if n >= 8 => {
                let res = residual.map_or(std::ptr::null(), |r| r.as_ptr().cast::<u8>());
                let (acc, dst) = (acc.as_ptr(), dst.as_mut_ptr().cast::<u8>());
                // SAFETY: AVX2 was detected; `acc`, `dst` and (when non-null) `res` hold `n`
                // elements, and the functions touch only the first `n / 8 * 8`; T is one byte;
                // `fp.shift` is in 1..=56 by construction of `FixedPoint`.
                unsafe {
                    if FLOAT_SHIFTS.contains(&fp.shift) {
                        requantize_avx2::<T, true>(fp, acc, n, offset, res, zero_point, lo, hi, dst)
                    } else {
                        requantize_avx2::<T, false>(
                            fp, acc, n, offset, res, zero_point, lo, hi, dst,
                        )
                    }
                }
            }
            _ => 0,
        };
        if done == n {
            return;
        }
        requantize_scalar(
            rq,
            &acc[done..],
            offset,
            residual.map(|r| &r[done..]),
            zero_point,
            lo,
            hi,
            &mut dst[done..],
        );
    }
}

/// Packs 16 columns of `k` depth rows (bytes `b + p * ldb .. + 16`, xor `flip` to make them
/// the biased u8) into a sliver of i16 pairs: for each pair of rows, interleaving the bytes of
/// the two rows gives (row p, row p + 1) per column, and zero-extending the interleaved bytes
/// to i16 gives exactly the packed layout.
///
/// # Safety
/// AVX2 must be available; `b + p * ldb` must be valid for 16 reads for every `p < k`, and
/// `dst` for `k.div_ceil(2) * 32` writes.
#[target_feature(enable = "avx2")]
unsafe fn pack_sliver_16(dst: *mut i16, b: *const u8, ldb: usize, k: usize, flip: u8) {
    let flip = _mm_set1_epi8(flip as i8);
    let mut p = 0;
    let mut out = dst;
    while p < k {
        // SAFETY: rows p and (if present) p + 1 are below k (caller contract); a missing odd
        // row is zero, matching the zero-padded depth of A.
        unsafe {
            let r0 = _mm_xor_si128(_mm_loadu_si128(b.add(p * ldb).cast()), flip);
            let r1 = if p + 1 < k {
                _mm_xor_si128(_mm_loadu_si128(b.add((p + 1) * ldb).cast()), flip)
            } else {
                _mm_setzero_si128()
            };
            let lo = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(r0, r1));
            let hi = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(r0, r1));
            _mm256_storeu_si256(out.cast(), lo);
            _mm256_storeu_si256(out.add(16).cast(), hi);
            out = out.add(NR * KU);
        }
        p += KU;
    }
}

/// `round_half_even(p / 2^shift) + 2^(62 - shift)` for 64-bit lanes `p` with
/// `|p| < 2^55`, using only logical shifts (AVX2 has no 64-bit arithmetic shift): adding
/// 2^62 makes every lane non-negative without changing its low `shift` bits or its parity
/// after the shift, `2^(shift-1) - 1` plus the bit that lands in the units place rounds half
/// to even (a tie goes up exactly when the truncated value is odd).
#[inline(always)]
unsafe fn round_shift_biased(p: __m256i, bias_and_half: __m256i, shift: __m128i) -> __m256i {
    let one = _mm256_set1_epi64x(1);
    let parity = _mm256_and_si256(_mm256_srl_epi64(p, shift), one);
    _mm256_srl_epi64(
        _mm256_add_epi64(_mm256_add_epi64(p, bias_and_half), parity),
        shift,
    )
}

/// The shifts (scales in `[2^-20, 0.5)`, every practical requantization) for which the f64
/// form is exact without clamping the accumulator (see [`requantize_avx2`]).
const FLOAT_SHIFTS: std::ops::RangeInclusive<u32> = 25..=43;

/// Requantized values (before the addend) of eight accumulators `a` in f64: the product,
/// rounded half to even by the conversion back to i32 (`vcvtpd2dq` rounds by MXCSR, which Rust
/// requires to be left at its default, round to nearest even).
#[inline(always)]
unsafe fn requantize8_float(a: __m256i, scale: __m256d) -> __m256i {
    let lo = _mm256_cvtepi32_pd(_mm256_castsi256_si128(a));
    let hi = _mm256_cvtepi32_pd(_mm256_extracti128_si256::<1>(a));
    let lo = _mm256_cvtpd_epi32(_mm256_mul_pd(lo, scale));
    let hi = _mm256_cvtpd_epi32(_mm256_mul_pd(hi, scale));
    _mm256_set_m128i(hi, lo)
}

/// Requantized values of eight clamped accumulators `a` in 64-bit integers, plus the low 32
/// bits of the `2^(62 - shift)` bias of [`round_shift_biased`] (the caller removes it).
#[inline(always)]
unsafe fn requantize8_fixed(
    a: __m256i,
    mantissa: __m256i,
    bias_and_half: __m256i,
    shift: __m128i,
) -> __m256i {
    // vpmuldq multiplies the even i32 lanes; shift the odd ones down for the second.
    let even = _mm256_mul_epi32(a, mantissa);
    let odd = _mm256_mul_epi32(_mm256_srli_epi64::<32>(a), mantissa);
    let even = round_shift_biased(even, bias_and_half, shift);
    let odd = round_shift_biased(odd, bias_and_half, shift);
    _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd))
}

/// [`requantize_scalar`] over the first `n / 8 * 8` elements, bit for bit, for a channel whose
/// scale has a [`FixedPoint`] form; returns how many it did.
///
/// Why it is exact. Both forms start from the true accumulator `acc + offset` (wrapping, as in
/// the scalar form).
///
/// With `FLOAT` (shift in [`FLOAT_SHIFTS`], so `scale < 0.5`): the accumulator and the scale
/// are exact in f64. If `|acc * mantissa| < 2^53` their f64 product is the exact real product,
/// and the conversion rounds it half to even as the scalar form does. Otherwise the real
/// product is at least `2^(53 - shift) >= 1024` in magnitude; f64 rounding is monotonic and
/// ±1024 are representable, so the computed one is too, and both forms saturate the output
/// the same way. As `|acc * scale| < 2^30`, the conversion and the addend never overflow.
///
/// Without (any shift): the accumulator is clamped to `±acc_limit`, which changes no output
/// (see [`FixedPoint`]); `vpmuldq` forms the exact 64-bit product with the mantissa and
/// [`round_shift_biased`] divides by `2^shift` with round-half-even exactly; the quotient is
/// below 2^24 in magnitude, so its low 32 bits less those of the bias are the exact i32 result.
///
/// Either way the addend and the saturation then follow the scalar form.
///
/// # Safety
/// AVX2 must be available; `acc` and `dst` valid for `n` elements, `residual` null or valid
/// for as many; `fp.shift` in 1..=56, and in [`FLOAT_SHIFTS`] with `FLOAT`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
unsafe fn requantize_avx2<T: QuantByte, const FLOAT: bool>(
    fp: FixedPoint,
    acc: *const i32,
    n: usize,
    offset: i32,
    residual: *const u8,
    zero_point: i32,
    lo: i32,
    hi: i32,
    dst: *mut u8,
) -> usize {
    debug_assert!((1..=FixedPoint::MAX_SHIFT).contains(&fp.shift));
    debug_assert!(!FLOAT || FLOAT_SHIFTS.contains(&fp.shift));
    let offset = _mm256_set1_epi32(offset);
    let acc_max = _mm256_set1_epi32(fp.acc_limit);
    let acc_min = _mm256_set1_epi32(-fp.acc_limit);
    // The exact f32 scale, mantissa * 2^-shift.
    let pow2 = f64::from_bits((1023 - fp.shift as u64) << 52);
    let scale = _mm256_set1_pd(fp.mantissa as f64 * pow2);
    let mantissa = _mm256_set1_epi64x(fp.mantissa as i64);
    let shift = _mm_cvtsi32_si128(fp.shift as i32);
    let bias_and_half = _mm256_set1_epi64x((1i64 << 62) + (1i64 << (fp.shift - 1)) - 1);
    // Minus the low 32 bits of the fixed-point bias (zero once shift <= 30), folded into the
    // addend so that it costs nothing without a residual.
    let unbias = if FLOAT {
        0
    } else {
        ((1u64 << (62 - fp.shift)) as u32).wrapping_neg() as i32
    };
    let unbias_v = _mm256_set1_epi32(unbias);
    let zero_point = _mm256_set1_epi32(zero_point.wrapping_add(unbias));
    let lo = _mm256_set1_epi32(lo);
    let hi = _mm256_set1_epi32(hi);
    let eight = |at: usize| {
        // SAFETY: callers pass `at + 8 <= n`, so the eight elements at `at` are in bounds of
        // `acc` and of a non-null `residual` (caller contract).
        unsafe {
            let a = _mm256_add_epi32(_mm256_loadu_si256(acc.add(at).cast()), offset);
            let q = if FLOAT {
                requantize8_float(a, scale)
            } else {
                let a = _mm256_min_epi32(_mm256_max_epi32(a, acc_min), acc_max);
                requantize8_fixed(a, mantissa, bias_and_half, shift)
            };
            let addend = if residual.is_null() {
                zero_point
            } else {
                let bytes = _mm_loadl_epi64(residual.add(at).cast());
                let res = if T::SIGNED {
                    _mm256_cvtepi8_epi32(bytes)
                } else {
                    _mm256_cvtepu8_epi32(bytes)
                };
                _mm256_add_epi32(res, unbias_v)
            };
            _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(q, addend), lo), hi)
        }
    };
    // Values are inside the output type's range, so the saturating packs only narrow.
    let narrow = |words: __m256i| {
        if T::SIGNED {
            _mm256_packs_epi16(words, words)
        } else {
            _mm256_packus_epi16(words, words)
        }
    };
    let mut at = 0;
    while at + 16 <= n {
        let (r0, r1) = (eight(at), eight(at + 8));
        // Lane-wise packs leave the dwords (four outputs each) as r0 0-3, r1 0-3 | r0 4-7,
        // r1 4-7; one dword permute puts them in order.
        let bytes = narrow(_mm256_packs_epi32(r0, r1));
        let ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0));
        // SAFETY: at + 16 <= n, and `dst` is valid for n bytes.
        unsafe { _mm_storeu_si128(dst.add(at).cast(), _mm256_castsi256_si128(ordered)) };
        at += 16;
    }
    if at + 8 <= n {
        let r = eight(at);
        let words = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256::<1>(r));
        let bytes = if T::SIGNED {
            _mm_packs_epi16(words, words)
        } else {
            _mm_packus_epi16(words, words)
        };
        // SAFETY: at + 8 <= n, and `dst` is valid for n bytes.
        unsafe { _mm_storel_epi64(dst.add(at).cast(), bytes) };
        at += 8;
    }
    at
}

/// c[6 x 8 * VECS] = A_panel * B_panel over `groups` pairs of depth steps, rows at stride
/// `ldc`; `VECS` = 2 is the full 6 x 16 tile, 1 its left half.
///
/// # Safety
/// AVX2 must be available; `a` must be valid for `groups * 12` reads, `b` for `groups * 32`
/// reads and `c` for 6 rows of `8 * VECS` writes at stride `ldc`.
#[target_feature(enable = "avx2")]
unsafe fn kernel_6xn<const VECS: usize>(
    groups: usize,
    a: *const i16,
    b: *const i16,
    c: *mut i32,
    ldc: usize,
) {
    let mut acc = [[_mm256_setzero_si256(); VECS]; MR];
    // One pair of depth steps: VECS loads of B, six A broadcasts, 6 * VECS multiply-adds.
    let step = |acc: &mut [[__m256i; VECS]; MR], g: usize| {
        // SAFETY: g < groups, so B i16 g*32..g*32+32 and A i16 g*12..g*12+12 are in bounds;
        // the A pair of row r is the unaligned i32 at i16 offset g*12 + 2r.
        unsafe {
            let bp = b.add(g * NR * KU);
            let mut bv = [_mm256_setzero_si256(); VECS];
            for (v, dst) in bv.iter_mut().enumerate() {
                *dst = _mm256_loadu_si256(bp.add(16 * v).cast());
            }
            let ap = a.add(g * MR * KU);
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_epi32(ap.add(r * KU).cast::<i32>().read_unaligned());
                for (sum, &bvec) in row.iter_mut().zip(&bv) {
                    *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(av, bvec));
                }
            }
        }
    };
    // Two steps per iteration halve the loop overhead, which competes with the 24 vector
    // instructions of a step for dispatch slots.
    let mut g = 0;
    while g + 2 <= groups {
        step(&mut acc, g);
        step(&mut acc, g + 1);
        g += 2;
    }
    if g < groups {
        step(&mut acc, g);
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, sum) in row.iter().enumerate() {
            // SAFETY: row r < 6, vector v < VECS is 8 i32 at c + r * ldc + 8v (caller
            // contract).
            unsafe { _mm256_storeu_si256(c.add(r * ldc + 8 * v).cast(), *sum) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_requantize_matches_scalar() {
        if let Some(kern) = Avx2I8::new() {
            super::super::driver::tests::requantize_matches_scalar(&kern);
        }
    }
}
