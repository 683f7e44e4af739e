//! 32-bit ARM (ARMv7-A) NEON micro-kernel: a 6 x 8 tile of C in twelve q registers.
//!
//! NEON intrinsics and `#[target_feature(enable = "neon")]` are not stable for 32-bit ARM,
//! and the armv7 target's baseline has no NEON, so the kernel is inline assembly that turns
//! NEON on for itself (`.fpu neon`) and runs only after the CPU reported NEON at run time.
//!
//! ARMv7 NEON has 16 q registers: twelve accumulators (q4-q15), the six A values of a depth
//! step in d0-d2 and the eight B values in q2-q3. Each step issues twelve `vmla.f32` by
//! scalar, which broadcast an A lane without extra instructions. `vmla` is used rather than
//! `vfma` because fused multiply-add by scalar does not exist on ARMv7, and `vmla` also runs on
//! NEON cores without VFPv4 (Cortex-A8, A9).

use crate::packed::MicroKernel;

/// Proof that the running CPU has NEON; only `new` builds one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NeonArmv7 {
    _detected: (),
}

impl NeonArmv7 {
    pub(crate) fn new() -> Option<Self> {
        neon_detected().then_some(NeonArmv7 { _detected: () })
    }
}

/// Whether the kernel reports NEON in the ELF auxiliary vector (`HWCAP_NEON`).
#[cfg(target_os = "linux")]
pub(crate) fn neon_detected() -> bool {
    // Bit 12 of AT_HWCAP on 32-bit ARM Linux (asm/hwcap.h).
    const HWCAP_NEON: libc::c_ulong = 1 << 12;
    // SAFETY: getauxval has no preconditions; it returns 0 for an entry it does not know.
    let hwcap = unsafe { libc::getauxval(libc::AT_HWCAP) };
    hwcap & HWCAP_NEON != 0
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn neon_detected() -> bool {
    false
}

const MR: usize = 6;
const NR: usize = 8;

impl MicroKernel for NeonArmv7 {
    const MR: usize = MR;
    const NR: usize = NR;
    // Cortex-A72/A53-class caches: a 256 x 8 B sliver is 8 KiB of the 32 KiB L1d; a
    // 120 x 256 A block is 120 KiB of L2.
    const MC: usize = 120;
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
        if ldb != NR {
            // The assembly walks a packed sliver; B rows read in place are gathered into one
            // first, a depth block at a time.
            let mut sliver = [0.0f32; Self::KC * NR];
            for p0 in (0..kc).step_by(Self::KC) {
                let steps = Self::KC.min(kc - p0);
                for (p, dst) in sliver.chunks_exact_mut(NR).take(steps).enumerate() {
                    dst.copy_from_slice(&b[(p0 + p) * ldb..][..NR]);
                }
                self.tile(steps, &a[p0 * MR..], &sliver, NR, alpha, c, ldc);
            }
            return;
        }
        assert!(a.len() >= kc * MR && b.len() >= kc * NR);
        assert!(c.len() >= (MR - 1) * ldc + NR);
        // SAFETY: `self` exists only if the CPU has NEON; the asserts bound every read of
        // `a`/`b` (kc steps of MR and NR floats) and every C access (MR rows of NR floats,
        // ldc apart).
        unsafe { kernel_6x8(kc, a.as_ptr(), b.as_ptr(), alpha, c.as_mut_ptr(), ldc) }
    }
}

/// C[6 x 8] += alpha * A_panel * B_panel.
///
/// # Safety
/// The CPU must have NEON; `a` must be valid for `kc * 6` reads, `b` for `kc * 8` reads and
/// `c` for reads and writes of 8 floats at each of `c + r * ldc`, r < 6.
unsafe fn kernel_6x8(kc: usize, a: *const f32, b: *const f32, alpha: f32, c: *mut f32, ldc: usize) {
    let ldc_bytes = ldc * std::mem::size_of::<f32>();
    // SAFETY: NEON is present (caller contract). The loop reads kc * 6 floats from `a` and
    // kc * 8 from `b`; the epilogue reads and writes 8 floats on each of the 6 rows of C, ldc
    // apart: all within the caller's bounds. Every NEON register is written, so the
    // callee-saved d8-d15 are declared and the ABI's caller-saved set (d0-d7, d16-d31) is
    // clobbered; the stack is not touched.
    unsafe {
        std::arch::asm!(
            ".fpu neon",
            "vmov.i32 q4, #0",
            "vmov.i32 q5, #0",
            "vmov.i32 q6, #0",
            "vmov.i32 q7, #0",
            "vmov.i32 q8, #0",
            "vmov.i32 q9, #0",
            "vmov.i32 q10, #0",
            "vmov.i32 q11, #0",
            "vmov.i32 q12, #0",
            "vmov.i32 q13, #0",
            "vmov.i32 q14, #0",
            "vmov.i32 q15, #0",
            "cmp r0, #0",
            "beq 2f",
            "1:",
            "vld1.32 {{d0, d1, d2}}, [r1]!",
            "vld1.32 {{d4, d5, d6, d7}}, [r2]!",
            "vmla.f32 q4, q2, d0[0]",
            "vmla.f32 q5, q3, d0[0]",
            "vmla.f32 q6, q2, d0[1]",
            "vmla.f32 q7, q3, d0[1]",
            "vmla.f32 q8, q2, d1[0]",
            "vmla.f32 q9, q3, d1[0]",
            "vmla.f32 q10, q2, d1[1]",
            "vmla.f32 q11, q3, d1[1]",
            "vmla.f32 q12, q2, d2[0]",
            "vmla.f32 q13, q3, d2[0]",
            "vmla.f32 q14, q2, d2[1]",
            "vmla.f32 q15, q3, d2[1]",
            "subs r0, r0, #1",
            "bne 1b",
            "2:",
            // C row r (q2, q3) += alpha * acc row r, then step to the next row.
            "vdup.32 q0, {alpha}",
            "vld1.32 {{d4, d5, d6, d7}}, [r3]",
            "vmla.f32 q2, q4, d0[0]",
            "vmla.f32 q3, q5, d0[0]",
            "vst1.32 {{d4, d5, d6, d7}}, [r3], {ldc}",
            "vld1.32 {{d4, d5, d6, d7}}, [r3]",
            "vmla.f32 q2, q6, d0[0]",
            "vmla.f32 q3, q7, d0[0]",
            "vst1.32 {{d4, d5, d6, d7}}, [r3], {ldc}",
            "vld1.32 {{d4, d5, d6, d7}}, [r3]",
            "vmla.f32 q2, q8, d0[0]",
            "vmla.f32 q3, q9, d0[0]",
            "vst1.32 {{d4, d5, d6, d7}}, [r3], {ldc}",
            "vld1.32 {{d4, d5, d6, d7}}, [r3]",
            "vmla.f32 q2, q10, d0[0]",
            "vmla.f32 q3, q11, d0[0]",
            "vst1.32 {{d4, d5, d6, d7}}, [r3], {ldc}",
            "vld1.32 {{d4, d5, d6, d7}}, [r3]",
            "vmla.f32 q2, q12, d0[0]",
            "vmla.f32 q3, q13, d0[0]",
            "vst1.32 {{d4, d5, d6, d7}}, [r3], {ldc}",
            "vld1.32 {{d4, d5, d6, d7}}, [r3]",
            "vmla.f32 q2, q14, d0[0]",
            "vmla.f32 q3, q15, d0[0]",
            "vst1.32 {{d4, d5, d6, d7}}, [r3]",
            // Explicit registers: outputs must name theirs when an ABI's clobbers are used.
            inout("r0") kc => _,
            inout("r1") a => _,
            inout("r2") b => _,
            inout("r3") c => _,
            ldc = in(reg) ldc_bytes,
            alpha = in(reg) alpha.to_bits(),
            out("d8") _,
            out("d9") _,
            out("d10") _,
            out("d11") _,
            out("d12") _,
            out("d13") _,
            out("d14") _,
            out("d15") _,
            clobber_abi("C"),
            options(nostack),
        );
    }
}
