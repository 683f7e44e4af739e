//! AVX2 + FMA micro-kernel: a 6 x 16 tile of C held in twelve ymm accumulators.
//!
//! Per depth step the kernel loads two 8-float vectors of packed B, broadcasts six packed A
//! values and issues twelve independent FMAs, enough to cover Zen 3's and Skylake's FMA
//! latency on both FMA pipes (needs >= 8 in flight) while leaving 3 of 16 registers for
//! operands.

use std::arch::x86_64::*;

use crate::packed::MicroKernel;

/// Proof that the running CPU has AVX2 and FMA; only `new` builds one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2Fma {
    _detected: (),
}

impl Avx2Fma {
    pub(crate) fn new() -> Option<Self> {
        (std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"))
            .then_some(Avx2Fma { _detected: () })
    }
}

const MR: usize = 6;
const NR: usize = 16;

impl MicroKernel for Avx2Fma {
    const MR: usize = MR;
    const NR: usize = NR;
    // A block of 144 x 256 floats is 144 KiB (Zen 3 L2: 512 KiB); a 256 x 16 B sliver is
    // 16 KiB (L1d: 32 KiB); a 256 x 4080 B panel is 4 MiB (L3).
    const MC: usize = 144;
    const KC: usize = 256;
    const NC: usize = 4080;

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
        // SAFETY: `self` exists only if AVX2 and FMA were detected; the asserts above bound
        // every read of `a`/`b` (kc steps of MR floats, and of NR floats ldb apart) and every
        // C access (MR rows of NR floats, ldc apart).
        unsafe { kernel_6x16(kc, a.as_ptr(), b.as_ptr(), ldb, alpha, c.as_mut_ptr(), ldc) }
    }

    fn prefetch(&self, data: &[f32]) {
        for line in data.chunks(16) {
            // SAFETY: prefetch is only a hint and never faults; the address is in `data`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) }
        }
    }

    fn gemv_dot(&self, x: &[f32], b: &[f32], ldb: usize, alpha: f32, y: &mut [f32]) {
        let k = x.len();
        if let Some(last) = y.len().checked_sub(1) {
            assert!(last * ldb + k <= b.len());
        }
        // SAFETY: CPU support as above; row j of b (k floats at j * ldb) is in bounds for
        // every j < y.len() by the assert.
        unsafe { gemv_dot(k, x.as_ptr(), b.as_ptr(), ldb, alpha, y) }
    }

    fn gemv_axpy(&self, x: &[f32], b: &[f32], ldb: usize, alpha: f32, y: &mut [f32]) {
        let n = y.len();
        if let Some(last) = x.len().checked_sub(1) {
            assert!(last * ldb + n <= b.len());
        }
        // SAFETY: CPU support as above; row p of b (n floats at p * ldb) is in bounds for
        // every p < x.len() by the assert.
        unsafe { gemv_axpy(x, b.as_ptr(), ldb, alpha, y) }
    }
}

/// C[6 x 16] += alpha * A_panel * B_sliver, depth step p of B being the 16 floats at
/// `b + p * ldb` (`ldb` is 16 for a packed sliver, the row stride for rows read in place).
///
/// # Safety
/// AVX2 and FMA must be available; `a` must be valid for `kc * 6` reads, `b` for 16 reads at
/// each of `b + p * ldb`, p < kc, and `c` for reads and writes of 16 floats at each of
/// `c + r * ldc`, r < 6.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_6x16(
    kc: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    alpha: f32,
    c: *mut f32,
    ldc: usize,
) {
    // C rows are far apart (ldc floats) and touched once per tile, so the hardware prefetcher
    // cannot predict them; start their loads now so they land during the FMA loop.
    for r in 0..MR {
        // SAFETY: prefetch is only a hint and never faults; the addresses are C's own rows.
        unsafe {
            let cp = c.add(r * ldc);
            _mm_prefetch::<_MM_HINT_T0>(cp.cast());
            _mm_prefetch::<_MM_HINT_T0>(cp.add(NR - 1).cast());
        }
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for p in 0..kc {
        // SAFETY: p < kc, so B floats p*ldb..p*ldb+16 and A floats p*6..p*6+6 are in bounds.
        unsafe {
            let bp = b.add(p * ldb);
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            let ap = a.add(p * MR);
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ap.add(r));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
            }
        }
    }
    let alpha = _mm256_set1_ps(alpha);
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row r < 6 of C holds 16 floats at c + r * ldc (caller contract).
        unsafe {
            let cp = c.add(r * ldc);
            _mm256_storeu_ps(cp, _mm256_fmadd_ps(row[0], alpha, _mm256_loadu_ps(cp)));
            let cp = cp.add(8);
            _mm256_storeu_ps(cp, _mm256_fmadd_ps(row[1], alpha, _mm256_loadu_ps(cp)));
        }
    }
}

/// Sum of the eight lanes.
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// y[j] += alpha * dot(x, b[j * ldb..j * ldb + k]), four rows of b per pass so each load of x
/// feeds four FMAs.
///
/// # Safety
/// AVX2 and FMA must be available; `x` valid for `k` reads and row j of `b` (k floats at
/// `b + j * ldb`) valid for every j < y.len().
#[target_feature(enable = "avx2,fma")]
unsafe fn gemv_dot(k: usize, x: *const f32, b: *const f32, ldb: usize, alpha: f32, y: &mut [f32]) {
    let body = k - k % 8;
    let mut rows = y.chunks_exact_mut(4);
    let mut j = 0;
    for out in &mut rows {
        // SAFETY: rows j..j+4 exist (out has 4 entries) and the loop reads p < body <= k.
        unsafe {
            let r = [
                b.add(j * ldb),
                b.add((j + 1) * ldb),
                b.add((j + 2) * ldb),
                b.add((j + 3) * ldb),
            ];
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut p = 0;
            while p < body {
                let xv = _mm256_loadu_ps(x.add(p));
                for (a, rp) in acc.iter_mut().zip(&r) {
                    *a = _mm256_fmadd_ps(xv, _mm256_loadu_ps(rp.add(p)), *a);
                }
                p += 8;
            }
            for ((o, a), rp) in out.iter_mut().zip(acc).zip(&r) {
                let mut s = hsum(a);
                for q in body..k {
                    s += *x.add(q) * *rp.add(q);
                }
                *o += alpha * s;
            }
        }
        j += 4;
    }
    for o in rows.into_remainder() {
        // SAFETY: row j < y.len() exists; reads p < k.
        unsafe {
            let rp = b.add(j * ldb);
            let mut acc = _mm256_setzero_ps();
            let mut p = 0;
            while p < body {
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(p)), _mm256_loadu_ps(rp.add(p)), acc);
                p += 8;
            }
            let mut s = hsum(acc);
            for q in body..k {
                s += *x.add(q) * *rp.add(q);
            }
            *o += alpha * s;
        }
        j += 1;
    }
}

/// y[j] += alpha * sum_p x[p] * b[p * ldb + j], 32 columns of accumulators at a time.
///
/// # Safety
/// AVX2 and FMA must be available; row p of `b` (y.len() floats at `b + p * ldb`) valid for
/// every p < x.len().
#[target_feature(enable = "avx2,fma")]
unsafe fn gemv_axpy(x: &[f32], b: *const f32, ldb: usize, alpha: f32, y: &mut [f32]) {
    const W: usize = 32;
    let alpha_v = _mm256_set1_ps(alpha);
    let mut chunks = y.chunks_exact_mut(W);
    let mut j = 0;
    for out in &mut chunks {
        let mut acc = [_mm256_setzero_ps(); W / 8];
        for (p, &xv) in x.iter().enumerate() {
            let xv = _mm256_set1_ps(xv);
            // SAFETY: columns j..j+32 < y.len() of row p are in bounds.
            unsafe {
                let rp = b.add(p * ldb + j);
                for (h, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(xv, _mm256_loadu_ps(rp.add(8 * h)), *a);
                }
            }
        }
        for (h, a) in acc.iter().enumerate() {
            // SAFETY: out has 32 floats, so 8 at offset 8 * h (h < 4) are in bounds.
            unsafe {
                let op = out.as_mut_ptr().add(8 * h);
                _mm256_storeu_ps(op, _mm256_fmadd_ps(*a, alpha_v, _mm256_loadu_ps(op)));
            }
        }
        j += W;
    }
    for (jj, o) in chunks.into_remainder().iter_mut().enumerate() {
        let mut s = 0.0f32;
        for (p, &xv) in x.iter().enumerate() {
            // SAFETY: column j + jj < y.len() of row p is in bounds.
            s += xv * unsafe { *b.add(p * ldb + j + jj) };
        }
        *o += alpha * s;
    }
}
