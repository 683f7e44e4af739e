//! Measured single-core fp32 FMA peak, the yardstick for kernel GMAC/s figures.

use std::time::{Duration, Instant};

use crate::Isa;

/// Best single-thread multiply-accumulates per second (in GMAC/s) of a register-only FMA loop
/// on `isa`, over short runs repeated for roughly `budget` in total. `None` for
/// `Isa::Generic` (it has no fixed instruction mix) or an ISA that cannot run here.
pub fn fma_peak_gmacs(isa: Isa, budget: Duration) -> Option<f64> {
    if !isa.is_available() {
        return None;
    }
    let run: fn(u64) -> (u64, f32) = match isa {
        Isa::Generic => return None,
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `is_available` confirmed AVX2 and FMA above.
        Isa::Avx2Fma => |iters| unsafe { avx2_fma_loop(iters) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon_fma_loop,
        // SAFETY: `is_available` confirmed NEON above.
        #[cfg(target_arch = "arm")]
        Isa::Neon => |iters| unsafe { armv7_mla_loop(iters) },
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    // Time many short runs and keep the best: a run is ~1 ms (less than a scheduler time
    // slice), so on a machine shared with other work most runs are not preempted, as with the
    // kernels timed against this peak.
    let chunk = (budget / 8).min(Duration::from_millis(1));
    let mut iters = 1u64 << 10;
    loop {
        let t = Instant::now();
        std::hint::black_box(run(iters));
        if t.elapsed() >= chunk || iters >= 1 << 40 {
            break;
        }
        iters *= 2;
    }
    let started = Instant::now();
    let mut best = 0.0f64;
    while best == 0.0 || started.elapsed() < budget {
        let t = Instant::now();
        let (macs, sink) = run(iters);
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(sink);
        best = best.max(macs as f64 / secs / 1e9);
    }
    Some(best)
}

/// `iters` rounds of 12 independent 8-lane FMAs; returns (MACs done, a value to keep alive).
///
/// # Safety
/// AVX2 and FMA must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_fma_loop(iters: u64) -> (u64, f32) {
    use std::arch::x86_64::*;
    // x * 1 + tiny stays finite and normal however long the loop runs.
    let mul = _mm256_set1_ps(std::hint::black_box(1.0));
    let add = _mm256_set1_ps(std::hint::black_box(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, mul, add);
        }
    }
    let mut sum = _mm256_setzero_ps();
    for a in acc {
        sum = _mm256_add_ps(sum, a);
    }
    (iters * 12 * 8, _mm256_cvtss_f32(sum))
}

/// `iters` rounds of 16 independent 4-lane FMAs; returns (MACs done, a value to keep alive).
#[cfg(target_arch = "aarch64")]
fn neon_fma_loop(iters: u64) -> (u64, f32) {
    use std::arch::aarch64::*;
    // SAFETY: Advanced SIMD is baseline on aarch64; no memory is touched.
    unsafe {
        let mul = vdupq_n_f32(std::hint::black_box(1.0));
        let add = vdupq_n_f32(std::hint::black_box(1e-7));
        let mut acc = [vdupq_n_f32(1.0); 16];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = vfmaq_f32(add, *a, mul);
            }
        }
        let mut sum = vdupq_n_f32(0.0);
        for a in acc {
            sum = vaddq_f32(sum, a);
        }
        (iters * 16 * 4, vgetq_lane_f32::<0>(sum))
    }
}

/// `iters` rounds of 12 independent 4-lane `vmla.f32` (the instruction the armv7 micro-kernel
/// uses); returns (MACs done, a value to keep alive).
///
/// # Safety
/// The CPU must have NEON.
#[cfg(target_arch = "arm")]
unsafe fn armv7_mla_loop(iters: u64) -> (u64, f32) {
    let mut sink = 0.0f32;
    // The asm takes a 32-bit count; split longer runs.
    let mut left = iters;
    while left > 0 {
        let n = left.min(u32::MAX as u64) as u32;
        let mut out = [0.0f32; 4];
        // SAFETY: NEON is present (caller contract); the only memory written is `out` (4
        // floats). x * 1e-7 added to 1 stays finite and normal however long the loop runs.
        // Every NEON register used is declared clobbered (d8-d15 explicitly, the rest via the
        // ABI's caller-saved set).
        unsafe {
            std::arch::asm!(
                ".fpu neon",
                "vmov.f32 q0, #1.0",
                "vmov.f32 q4, #1.0",
                "vmov.f32 q5, #1.0",
                "vmov.f32 q6, #1.0",
                "vmov.f32 q7, #1.0",
                "vmov.f32 q8, #1.0",
                "vmov.f32 q9, #1.0",
                "vmov.f32 q10, #1.0",
                "vmov.f32 q11, #1.0",
                "vmov.f32 q12, #1.0",
                "vmov.f32 q13, #1.0",
                "vmov.f32 q14, #1.0",
                "vmov.f32 q15, #1.0",
                "vdup.32 q1, {tiny}",
                "1:",
                "vmla.f32 q4, q0, q1",
                "vmla.f32 q5, q0, q1",
                "vmla.f32 q6, q0, q1",
                "vmla.f32 q7, q0, q1",
                "vmla.f32 q8, q0, q1",
                "vmla.f32 q9, q0, q1",
                "vmla.f32 q10, q0, q1",
                "vmla.f32 q11, q0, q1",
                "vmla.f32 q12, q0, q1",
                "vmla.f32 q13, q0, q1",
                "vmla.f32 q14, q0, q1",
                "vmla.f32 q15, q0, q1",
                "subs r0, r0, #1",
                "bne 1b",
                "vadd.f32 q4, q4, q15",
                "vst1.32 {{d8, d9}}, [{out}]",
                inout("r0") n => _,
                tiny = in(reg) std::hint::black_box(1e-7f32).to_bits(),
                out = in(reg) out.as_mut_ptr(),
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
        sink += out[0];
        left -= n as u64;
    }
    (iters * 12 * 4, sink)
}
