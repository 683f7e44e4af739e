//! Portable int8 micro-kernel: a 4 x 8 tile of i32 sums over i16 operands in pairs of depth
//! steps, written so the compiler can vectorise it (on x86 it becomes `pmaddwd`, on ARM
//! widening multiply-accumulates). The same operand format as the AVX2 kernel, smaller tile.

use super::driver::I8MicroKernel;

/// The portable kernel runs everywhere.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable;

const MR: usize = 4;
const NR: usize = 8;
const KU: usize = 2;

impl I8MicroKernel for Portable {
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

    fn tile(&self, groups: usize, a: &[i16], b: &[i16], c: &mut [i32], ldc: usize, _cols: usize) {
        assert!(a.len() >= groups * MR * KU && b.len() >= groups * NR * KU);
        let mut acc = [[0i32; NR]; MR];
        for (ap, bp) in a
            .chunks_exact(MR * KU)
            .zip(b.chunks_exact(NR * KU))
            .take(groups)
        {
            for (r, row) in acc.iter_mut().enumerate() {
                let (a0, a1) = (ap[r * KU] as i32, ap[r * KU + 1] as i32);
                for (j, v) in row.iter_mut().enumerate() {
                    // Each product is at most 128 * 255 in magnitude, so the pair fits i32.
                    let pair = a0 * bp[j * KU] as i32 + a1 * bp[j * KU + 1] as i32;
                    *v = v.wrapping_add(pair);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            c[r * ldc..][..NR].copy_from_slice(row);
        }
    }
}
