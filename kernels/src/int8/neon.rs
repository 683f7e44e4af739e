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

use std::arch::aarch64::*;
use std::arch::asm;

use super::driver::I8MicroKernel;

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
