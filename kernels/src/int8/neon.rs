//! aarch64 int8 micro-kernels, both 8 x 8 tiles of i32 sums in sixteen q accumulators.
//!
//! `NeonWidening` (every aarch64 core, the Cortex-A72's path): operands are widened to i16
//! when packed, and each depth step is sixteen `smlal`/`smlal2` by lane: four i16 x i16
//! products widened to i32 and added, with the A value taken from a lane of one q register,
//! so no broadcasts are needed. Products are exact in i32 (at most 255 * 128).
//!
//! `NeonDot` (cores with the dot-product extension, such as the Cortex-A76): operands stay
//! 8-bit and each group of four depth steps is sixteen `sdot` by lane: four i8 x i8 products
//! summed straight into an i32 lane. `sdot` is signed x signed, so u8 activations are packed
//! as `x - 128` (flip the top bit) and the epilogue adds back `128 * weight_sum[oc]`, which it
//! folds into the zero-point correction it applies anyway: `sum w (x - zx) =
//! sum w (x - 128) + (128 - zx) * sum w`. The `sdot` intrinsics were not stable in the Rust
//! versions this crate supports, so the instruction is written with inline assembly inside a
//! function compiled for the `dotprod` feature; it only runs when
//! `is_aarch64_feature_detected!("dotprod")` said so.

//!
//! Both share a vectorised requantizing epilogue ([`requantize_neon`]): the clamped
//! fixed-point form of [`FixedPoint`](crate::quant::FixedPoint) with `smull` into 64-bit lanes and a rounding shift
//! that is half-to-even, four outputs per multiply pair, bit-exact with the scalar form.

use std::arch::aarch64::*;
use std::arch::asm;

use super::driver::{requantize_scalar, ChannelRequant, I8MicroKernel, QuantByte};

const MR: usize = 8;
const NR: usize = 8;

/// Advanced SIMD is part of the aarch64 baseline, so this token is always constructible.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NeonWidening {
    _private: (),
}

impl NeonWidening {
    pub(crate) fn new() -> Self {
        NeonWidening { _private: () }
    }
}

impl I8MicroKernel for NeonWidening {
    type Elem = i16;
    const MR: usize = MR;
    const NR: usize = NR;
    const KU: usize = 1;
    const ACT_OFFSET: i32 = 0;

    fn pack_act(x: u8) -> i16 {
        x as i16
    }

    fn pack_weight(w: i8) -> i16 {
        w as i16
    }

    fn tile(&self, groups: usize, a: &[i16], b: &[i16], c: &mut [i32], ldc: usize, _cols: usize) {
        assert!(a.len() >= groups * MR && b.len() >= groups * NR);
        assert!(ldc >= NR && c.len() >= (MR - 1) * ldc + NR);
        // SAFETY: NEON is baseline on aarch64; the asserts bound every read of `a` and `b`
        // (groups steps of 8 i16 each) and the 8 rows of 8 i32 written to `c` at stride `ldc`.
        unsafe { widening_8x8(groups, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc) }
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
        requantize_neon(rq, acc, offset, residual, zero_point, lo, hi, dst);
    }
}

/// Row `r` of the tile += b * a[r], a[r] from lane `$lane` of `$av`.
macro_rules! mlal_row {
    ($acc:expr, $av:expr, $lane:literal, $b:expr) => {
        $acc[0] = vmlal_laneq_s16::<$lane>($acc[0], vget_low_s16($b), $av);
        $acc[1] = vmlal_high_laneq_s16::<$lane>($acc[1], $b, $av);
    };
}

/// c[8 x 8] = A_panel * B_panel over `groups` depth steps.
///
/// # Safety
/// `a` and `b` valid for `groups * 8` reads, `c` for 8 rows of 8 writes at stride `ldc`.
unsafe fn widening_8x8(groups: usize, a: *const i16, b: *const i16, c: *mut i32, ldc: usize) {
    let zero = vdupq_n_s32(0);
    let mut acc = [[zero; 2]; MR];
    for p in 0..groups {
        // SAFETY: p < groups, so A and B i16 p*8..p*8+8 are in bounds.
        unsafe {
            let av = vld1q_s16(a.add(p * MR));
            let bv = vld1q_s16(b.add(p * NR));
            mlal_row!(acc[0], av, 0, bv);
            mlal_row!(acc[1], av, 1, bv);
            mlal_row!(acc[2], av, 2, bv);
            mlal_row!(acc[3], av, 3, bv);
            mlal_row!(acc[4], av, 4, bv);
            mlal_row!(acc[5], av, 5, bv);
            mlal_row!(acc[6], av, 6, bv);
            mlal_row!(acc[7], av, 7, bv);
        }
    }
    // SAFETY: `c` valid for the tile at stride `ldc` (caller contract).
    unsafe { store_8x8(&acc, c, ldc) }
}

/// Writes the accumulators as an 8 x 8 tile with row stride `ldc`.
///
/// # Safety
/// `c` valid for 8 rows of 8 writes at stride `ldc`.
#[inline(always)]
unsafe fn store_8x8(acc: &[[int32x4_t; 2]; MR], c: *mut i32, ldc: usize) {
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row r < 8 is 8 i32 at c + r * ldc (caller contract).
        unsafe {
            vst1q_s32(c.add(r * ldc), row[0]);
            vst1q_s32(c.add(r * ldc + 4), row[1]);
        }
    }
}

/// Proof that the running CPU has the dot-product instructions; only `new` builds one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NeonDot {
    _detected: (),
}

impl NeonDot {
    pub(crate) fn new() -> Option<Self> {
        std::arch::is_aarch64_feature_detected!("dotprod").then_some(NeonDot { _detected: () })
    }
}

impl I8MicroKernel for NeonDot {
    type Elem = i8;
    const MR: usize = MR;
    const NR: usize = NR;
    const KU: usize = 4;
    const ACT_OFFSET: i32 = 128;

    fn pack_act(x: u8) -> i8 {
        (x ^ 0x80) as i8
    }

    fn pack_weight(w: i8) -> i8 {
        w
    }

    fn tile(&self, groups: usize, a: &[i8], b: &[i8], c: &mut [i32], ldc: usize, _cols: usize) {
        assert!(a.len() >= groups * MR * 4 && b.len() >= groups * NR * 4);
        assert!(ldc >= NR && c.len() >= (MR - 1) * ldc + NR);
        // SAFETY: `self` exists only if the dot-product extension was detected; the asserts
        // bound every read of `a` and `b` (groups steps of 32 i8 each) and the 8 rows of 8
        // i32 written to `c` at stride `ldc`.
        unsafe { dot_8x8(groups, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc) }
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
        requantize_neon(rq, acc, offset, residual, zero_point, lo, hi, dst);
    }
}

/// `$acc += sdot($b, lane $lane of $a)`: each i32 lane i of the accumulator gains the dot
/// product of bytes 4i..4i+4 of `$b` with bytes 4*lane..4*lane+4 of `$a`.
macro_rules! sdot_lane {
    ($acc:expr, $b:expr, $a:expr, $lane:literal) => {
        // SAFETY: register-only instruction; the enclosing function is compiled for (and only
        // called with) the dot-product extension.
        unsafe {
            asm!(
                concat!("sdot {acc:v}.4s, {b:v}.16b, {a:v}.4b[", $lane, "]"),
                acc = inout(vreg) $acc,
                b = in(vreg) $b,
                a = in(vreg) $a,
                options(pure, nomem, nostack, preserves_flags)
            )
        }
    };
}

/// Rows `$r0..$r0 + 4` of the tile from the four row lanes of `$a`.
macro_rules! sdot_rows {
    ($acc:expr, $r0:literal, $a:expr, $b0:expr, $b1:expr) => {
        sdot_lane!($acc[$r0][0], $b0, $a, 0);
        sdot_lane!($acc[$r0][1], $b1, $a, 0);
        sdot_lane!($acc[$r0 + 1][0], $b0, $a, 1);
        sdot_lane!($acc[$r0 + 1][1], $b1, $a, 1);
        sdot_lane!($acc[$r0 + 2][0], $b0, $a, 2);
        sdot_lane!($acc[$r0 + 2][1], $b1, $a, 2);
        sdot_lane!($acc[$r0 + 3][0], $b0, $a, 3);
        sdot_lane!($acc[$r0 + 3][1], $b1, $a, 3);
    };
}

/// c[8 x 8] = A_panel * B_panel over `groups` groups of four depth steps.
///
/// # Safety
/// The dot-product extension must be available; `a` and `b` valid for `groups * 32` reads,
/// `c` for 8 rows of 8 writes at stride `ldc`.
#[target_feature(enable = "dotprod")]
unsafe fn dot_8x8(groups: usize, a: *const i8, b: *const i8, c: *mut i32, ldc: usize) {
    let zero = vdupq_n_s32(0);
    let mut acc = [[zero; 2]; MR];
    for p in 0..groups {
        // SAFETY: p < groups, so A and B i8 p*32..p*32+32 are in bounds.
        let (a0, a1, b0, b1) = unsafe {
            let ap = a.add(p * 32);
            let bp = b.add(p * 32);
            (
                vld1q_s8(ap),
                vld1q_s8(ap.add(16)),
                vld1q_s8(bp),
                vld1q_s8(bp.add(16)),
            )
        };
        sdot_rows!(acc, 0, a0, b0, b1);
        sdot_rows!(acc, 4, a1, b0, b1);
    }
    // SAFETY: `c` valid for the tile at stride `ldc` (caller contract).
    unsafe { store_8x8(&acc, c, ldc) }
}

/// [`requantize_scalar`] with eight outputs per step where the channel's scale has a
/// [`FixedPoint`](crate::quant::FixedPoint) form, bit for bit.
///
/// Why it is exact: the true accumulator `acc + offset` (wrapping, as in the scalar form) is
/// clamped to `±acc_limit`, which changes no output (see
/// [`FixedPoint`](crate::quant::FixedPoint)); `smull` forms the
/// exact 64-bit product with the 24-bit mantissa; adding `2^(shift-1) - 1` plus the bit that
/// the arithmetic shift brings to the units place, then shifting, divides by `2^shift` rounding
/// half to even (a tie goes up exactly when the truncated quotient is odd); the quotient is
/// below 2^24 in magnitude, so narrowing it to i32 is exact. The addend and the saturation then
/// follow the scalar form.
#[allow(clippy::too_many_arguments)]
fn requantize_neon<T: QuantByte>(
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
    let Some(fp) = rq.fixed else {
        return requantize_scalar(rq, acc, offset, residual, zero_point, lo, hi, dst);
    };
    let steps = n / 8;
    let res_ptr = residual.map(|r| r.as_ptr().cast::<u8>());
    let (acc_ptr, dst_ptr) = (acc.as_ptr(), dst.as_mut_ptr().cast::<u8>());
    // SAFETY: Advanced SIMD is baseline on aarch64; every access is to the eight elements at
    // step * 8 < steps * 8 <= n of `acc`, `dst` and the residual, all `n` long (asserted); T is
    // one byte.
    unsafe {
        let offset = vdupq_n_s32(offset);
        let acc_max = vdupq_n_s32(fp.acc_limit);
        let acc_min = vdupq_n_s32(-fp.acc_limit);
        let mantissa = vdupq_n_s32(fp.mantissa);
        let down = vdupq_n_s64(-(fp.shift as i64));
        let half_less_one = vdupq_n_s64((1i64 << (fp.shift - 1)) - 1);
        let one = vdupq_n_s64(1);
        let zero_point = vdupq_n_s32(zero_point);
        let lo = vdupq_n_s32(lo);
        let hi = vdupq_n_s32(hi);
        let round = |p: int64x2_t| {
            let parity = vandq_s64(vshlq_s64(p, down), one);
            vshlq_s64(vaddq_s64(vaddq_s64(p, half_less_one), parity), down)
        };
        let four = |a: int32x4_t, addend: int32x4_t| {
            let a = vminq_s32(vmaxq_s32(vaddq_s32(a, offset), acc_min), acc_max);
            let p_lo = vmull_s32(vget_low_s32(a), vget_low_s32(mantissa));
            let p_hi = vmull_high_s32(a, mantissa);
            let q = vcombine_s32(vmovn_s64(round(p_lo)), vmovn_s64(round(p_hi)));
            vminq_s32(vmaxq_s32(vaddq_s32(q, addend), lo), hi)
        };
        for step in 0..steps {
            let at = step * 8;
            let (add0, add1) = match res_ptr {
                None => (zero_point, zero_point),
                Some(res) => {
                    let bytes = vld1_u8(res.add(at));
                    let words = if T::SIGNED {
                        vmovl_s8(vreinterpret_s8_u8(bytes))
                    } else {
                        vreinterpretq_s16_u16(vmovl_u8(bytes))
                    };
                    (vmovl_s16(vget_low_s16(words)), vmovl_high_s16(words))
                }
            };
            let r0 = four(vld1q_s32(acc_ptr.add(at)), add0);
            let r1 = four(vld1q_s32(acc_ptr.add(at + 4)), add1);
            // In range for the output type, so keeping the low byte of each is exact.
            let words = vcombine_s16(vmovn_s32(r0), vmovn_s32(r1));
            vst1_u8(dst_ptr.add(at), vreinterpret_u8_s8(vmovn_s16(words)));
        }
    }
    let done = steps * 8;
    if done < n {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_requantize_matches_scalar() {
        super::super::driver::tests::requantize_matches_scalar(&NeonWidening::new());
        if let Some(kern) = NeonDot::new() {
            super::super::driver::tests::requantize_matches_scalar(&kern);
        }
    }
}
