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
