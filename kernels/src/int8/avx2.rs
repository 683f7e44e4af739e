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

use std::arch::x86_64::*;

use super::driver::I8MicroKernel;

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

    fn tile(&self, groups: usize, a: &[i16], b: &[i16], c: &mut [i32]) {
        assert!(a.len() >= groups * MR * KU && b.len() >= groups * NR * KU);
        assert!(c.len() >= MR * NR);
        // SAFETY: `self` exists only if AVX2 was detected; the asserts bound every read of
        // `a` (groups steps of 12 i16) and `b` (groups steps of 32 i16) and the 96 i32
        // written to `c`.
        unsafe { kernel_6x16(groups, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()) }
    }
}

/// c[6 x 16] = A_panel * B_panel over `groups` pairs of depth steps.
///
/// # Safety
/// AVX2 must be available; `a` must be valid for `groups * 12` reads, `b` for `groups * 32`
/// reads and `c` for 96 writes.
#[target_feature(enable = "avx2")]
unsafe fn kernel_6x16(groups: usize, a: *const i16, b: *const i16, c: *mut i32) {
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    for g in 0..groups {
        // SAFETY: g < groups, so B i16 g*32..g*32+32 and A i16 g*12..g*12+12 are in bounds;
        // the A pair of row r is the unaligned i32 at i16 offset g*12 + 2r.
        unsafe {
            let bp = b.add(g * NR * KU);
            let b0 = _mm256_loadu_si256(bp.cast());
            let b1 = _mm256_loadu_si256(bp.add(16).cast());
            let ap = a.add(g * MR * KU);
            for (r, row) in acc.iter_mut().enumerate() {
                let pair = ap.add(r * KU).cast::<i32>().read_unaligned();
                let av = _mm256_set1_epi32(pair);
                row[0] = _mm256_add_epi32(row[0], _mm256_madd_epi16(av, b0));
                row[1] = _mm256_add_epi32(row[1], _mm256_madd_epi16(av, b1));
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row r < 6 of the 6 x 16 tile is 16 i32 at c + r * 16 (caller contract).
        unsafe {
            let cp = c.add(r * NR);
            _mm256_storeu_si256(cp.cast(), row[0]);
            _mm256_storeu_si256(cp.add(8).cast(), row[1]);
        }
    }
}
