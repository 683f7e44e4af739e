//! aarch64 Advanced SIMD micro-kernel: an 8 x 8 tile of C in sixteen q registers.
//!
//! Per depth step the kernel loads two q registers of packed A and two of packed B and issues
//! sixteen FMAs, each broadcasting one A lane with `vfmaq_laneq_f32`, so no separate
//! broadcast instructions are needed. 16 accumulators + 4 operands fit the 32 q registers.

mod vec;

use std::arch::aarch64::*;

use crate::packed::MicroKernel;

/// Advanced SIMD is part of the aarch64 baseline, so this token is always constructible.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Neon {
    _private: (),
}

impl Neon {
    pub(crate) fn new() -> Option<Self> {
        Some(Neon { _private: () })
    }
}

const MR: usize = 8;
const NR: usize = 8;

impl MicroKernel for Neon {
    const MR: usize = MR;
    const NR: usize = NR;
    // Cortex-A72-class caches: 32 KiB L1d holds a 256 x 8 B sliver (8 KiB) plus A stream;
    // a 128 x 256 A block is 128 KiB of L2.
    const MC: usize = 128;
    const KC: usize = 256;
    const NC: usize = 2048;

    fn tile(
        &self,
        kc: usize,
        a: &[f32],
        b: &[f32],
        ldb: usize,
        alpha: f32,
        c: &mut [f32],
        ldc: usize,
    ) {
        if kc == 0 {
            return;
        }
        assert!(a.len() >= kc * MR && b.len() >= (kc - 1) * ldb + NR);
        assert!(c.len() >= (MR - 1) * ldc + NR);
        // SAFETY: NEON is baseline on aarch64; the asserts bound every read of `a`/`b` (kc
        // steps of 8 floats each, B's ldb apart) and every C access (8 rows of 8 floats, ldc
        // apart).
        unsafe { kernel_8x8(kc, a.as_ptr(), b.as_ptr(), ldb, alpha, c.as_mut_ptr(), ldc) }
    }
}

/// Accumulates row `r` of the tile: acc[r] += a[r] * b, with a[r] taken from lane `L` of `av`.
macro_rules! fma_row {
    ($acc:expr, $av:expr, $lane:literal, $b0:expr, $b1:expr) => {
        $acc[0] = vfmaq_laneq_f32::<$lane>($acc[0], $b0, $av);
        $acc[1] = vfmaq_laneq_f32::<$lane>($acc[1], $b1, $av);
    };
}

/// C[8 x 8] += alpha * A_panel * B_sliver, depth step p of B being the 8 floats at
/// `b + p * ldb` (`ldb` is 8 for a packed sliver, the row stride for rows read in place).
///
/// # Safety
/// `a` valid for `kc * 8` reads, `b` for 8 reads at each of `b + p * ldb`, p < kc, and `c` for
/// reads and writes of 8 floats at each of `c + r * ldc`, r < 8.
unsafe fn kernel_8x8(
    kc: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    alpha: f32,
    c: *mut f32,
    ldc: usize,
) {
    let zero = vdupq_n_f32(0.0);
    let mut acc = [[zero; 2]; MR];
    for p in 0..kc {
        // SAFETY: p < kc, so A floats p*8..p*8+8 and B floats p*ldb..p*ldb+8 are in bounds.
        unsafe {
            let ap = a.add(p * MR);
            let bp = b.add(p * ldb);
            let a0 = vld1q_f32(ap);
            let a1 = vld1q_f32(ap.add(4));
            let b0 = vld1q_f32(bp);
            let b1 = vld1q_f32(bp.add(4));
            fma_row!(acc[0], a0, 0, b0, b1);
            fma_row!(acc[1], a0, 1, b0, b1);
            fma_row!(acc[2], a0, 2, b0, b1);
            fma_row!(acc[3], a0, 3, b0, b1);
            fma_row!(acc[4], a1, 0, b0, b1);
            fma_row!(acc[5], a1, 1, b0, b1);
            fma_row!(acc[6], a1, 2, b0, b1);
            fma_row!(acc[7], a1, 3, b0, b1);
        }
    }
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row r < 8 of C holds 8 floats at c + r * ldc (caller contract).
        unsafe {
            let cp = c.add(r * ldc);
            vst1q_f32(cp, vfmaq_n_f32(vld1q_f32(cp), row[0], alpha));
            let cp = cp.add(4);
            vst1q_f32(cp, vfmaq_n_f32(vld1q_f32(cp), row[1], alpha));
        }
    }
}
