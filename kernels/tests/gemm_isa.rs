//! Every available GEMM implementation (`Isa::available()`: AVX2+FMA or NEON, and generic)
//! against the f64 reference.
//!
//! Tolerance: fp32 kernels sum the k products in a different order from the reference (tiles,
//! KC blocks, FMA), so each output may differ by the classic re-association bound
//! `|got - want| <= (k + 2) * eps_f32 * (|alpha| * sum_p |a_ip| |b_pj| + |out0_ij|)`
//! (k roundings in the sum, one for alpha, one for the final add), plus one f32 ulp of the
//! result. A wrong or missing product is of order sum / k, far above this for k <= 10^3.

mod common;

use common::Rng;
use kestrel_kernels::{gemm_f32_with, reference, Isa};
use proptest::prelude::*;

/// Element (i, p) of A and (p, j) of B in their stored layouts.
fn a_at(a: &[f32], m: usize, k: usize, ta: bool, i: usize, p: usize) -> f32 {
    if ta {
        a[p * m + i]
    } else {
        a[i * k + p]
    }
}

fn b_at(b: &[f32], n: usize, k: usize, tb: bool, p: usize, j: usize) -> f32 {
    if tb {
        b[j * k + p]
    } else {
        b[p * n + j]
    }
}

struct Case {
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    alpha: f32,
    a: Vec<f32>,
    b: Vec<f32>,
    out0: Vec<f32>,
}

impl Case {
    #[allow(clippy::too_many_arguments)]
    fn random(m: usize, n: usize, k: usize, ta: bool, tb: bool, alpha: f32, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        Case {
            m,
            n,
            k,
            ta,
            tb,
            alpha,
            a: rng.vec(m * k, -1.0, 1.0),
            b: rng.vec(k * n, -1.0, 1.0),
            out0: rng.vec(m * n, -1.0, 1.0),
        }
    }

    fn what(&self, isa: Isa) -> String {
        format!(
            "{isa} m={} n={} k={} ta={} tb={} alpha={}",
            self.m, self.n, self.k, self.ta, self.tb, self.alpha
        )
    }

    /// Runs `isa` and the reference; checks every element as described at the top.
    fn check(&self, isa: Isa) -> Vec<f32> {
        let (m, n, k) = (self.m, self.n, self.k);
        let mut got = self.out0.clone();
        let mut want = self.out0.clone();
        gemm_f32_with(
            isa, m, n, k, &self.a, self.ta, &self.b, self.tb, self.alpha, &mut got,
        );
        reference::gemm_f32(
            m, n, k, &self.a, self.ta, &self.b, self.tb, self.alpha, &mut want,
        );
        for i in 0..m {
            for j in 0..n {
                let (g, w) = (got[i * n + j], want[i * n + j]);
                let what = || format!("{}: C({i},{j}) got {g}, want {w}", self.what(isa));
                if w.is_nan() {
                    assert!(g.is_nan(), "{}", what());
                    continue;
                }
                if w.is_infinite() {
                    assert_eq!(g, w, "{}", what());
                    continue;
                }
                let abs_sum: f64 = (0..k)
                    .map(|p| {
                        (a_at(&self.a, m, k, self.ta, i, p) as f64
                            * b_at(&self.b, n, k, self.tb, p, j) as f64)
                            .abs()
                    })
                    .sum();
                let scale = self.alpha.abs() as f64 * abs_sum + self.out0[i * n + j].abs() as f64;
                let tol = (k + 2) as f64 * f32::EPSILON as f64 * scale
                    + f32::EPSILON as f64 * w.abs() as f64;
                assert!(
                    ((g as f64) - (w as f64)).abs() <= tol,
                    "{} (tolerance {tol:e})",
                    what()
                );
            }
        }
        got
    }

    fn check_all(&self) {
        for isa in Isa::available() {
            self.check(isa);
        }
    }
}

/// Tile-edge sizes: 1, 3, 7, 11, 15, 17 from the shared list plus both sides of the AVX2
/// 6 x 16 and NEON 8 x 8 tiles.
const EDGE_SIZES: [usize; 14] = [1, 3, 5, 6, 7, 8, 9, 11, 12, 15, 16, 17, 23, 33];
/// Depths below, at and above the 256-deep KC block, and crossing two blocks.
const DEPTHS: [usize; 10] = [1, 2, 7, 17, 64, 255, 256, 257, 300, 520];

fn alphas() -> impl Strategy<Value = f32> {
    prop::sample::select(&[1.0f32, -0.5, 2.0, 0.0, 1.0e-3][..])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn small_shapes_match_reference(
        m in 1..=40usize,
        n in 1..=40usize,
        k in 1..=40usize,
        ta: bool,
        tb: bool,
        alpha in alphas(),
        seed: u64,
    ) {
        Case::random(m, n, k, ta, tb, alpha, seed).check_all();
    }

    #[test]
    fn edge_sizes_and_kc_blocks_match_reference(
        m in prop::sample::select(&EDGE_SIZES[..]),
        n in prop::sample::select(&EDGE_SIZES[..]),
        k in prop::sample::select(&DEPTHS[..]),
        ta: bool,
        tb: bool,
        alpha in alphas(),
        seed: u64,
    ) {
        Case::random(m, n, k, ta, tb, alpha, seed).check_all();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Sizes across the MC row block (144 on AVX2, 128 on NEON) and with many tiles.
    #[test]
    fn block_crossing_shapes_match_reference(
        m in prop::sample::select(&[1usize, 2, 6, 127, 128, 129, 143, 144, 145, 150, 300][..]),
        n in prop::sample::select(&[1usize, 2, 16, 17, 49, 100, 161][..]),
        k in prop::sample::select(&[1usize, 64, 256, 257, 300][..]),
        ta: bool,
        tb: bool,
        alpha in alphas(),
        seed: u64,
    ) {
        Case::random(m, n, k, ta, tb, alpha, seed).check_all();
    }
}

#[test]
fn simd_isa_is_available_where_the_cpu_has_it() {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        assert!(Isa::available().contains(&Isa::Avx2Fma));
    }
    #[cfg(target_arch = "aarch64")]
    assert!(Isa::available().contains(&Isa::Neon));
    // Every 32-bit ARM board these tests run on (the Cortex-A7/A53/A72 Pis, qemu's
    // Cortex-A15) has NEON, so its absence here means run-time detection is broken.
    #[cfg(target_arch = "arm")]
    assert!(Isa::available().contains(&Isa::Neon));
    assert_eq!(Isa::available().last(), Some(&Isa::Generic));
}

#[test]
fn wide_output_crosses_nc_panels() {
    // n = 4100 needs two 4080-wide B panels on AVX2 (three 2048-wide on NEON).
    Case::random(7, 4100, 3, false, false, 1.0, 11).check_all();
    Case::random(13, 4100, 20, true, true, -2.0, 12).check_all();
}

#[test]
fn layer_like_shapes() {
    // Pointwise conv (tall-skinny n = 49), im2col-like deep k, and the classifier row.
    Case::random(200, 49, 512, false, false, 1.0, 21).check_all();
    Case::random(64, 300, 1152, false, false, 1.0, 22).check_all();
    Case::random(1, 1000, 2048, false, true, 1.0, 23).check_all();
    Case::random(1, 1000, 2048, false, false, 1.0, 24).check_all();
    Case::random(1000, 1, 2048, true, false, 1.0, 25).check_all();
}

#[test]
fn zero_sized_dimensions_leave_out_unchanged() {
    for isa in Isa::available() {
        let mut out = vec![3.0; 6];
        gemm_f32_with(isa, 2, 3, 0, &[], false, &[], false, 1.0, &mut out);
        assert_eq!(out, vec![3.0; 6]);
        gemm_f32_with(isa, 0, 3, 2, &[], true, &[0.0; 6], true, 1.0, &mut []);
        gemm_f32_with(isa, 3, 0, 2, &[0.0; 6], false, &[], false, 1.0, &mut []);
    }
}

/// Large magnitudes that stay finite in fp32 for every summation order (|a b| <= 1e34,
/// k <= 300, so every partial sum is below 3.4e38).
#[test]
fn large_magnitudes() {
    for (m, n, k, seed) in [(7, 17, 300, 1u64), (1, 33, 256, 2), (13, 1, 129, 3)] {
        for (ta, tb) in [(false, false), (true, true)] {
            let mut c = Case::random(m, n, k, ta, tb, 1.0, seed);
            c.a.iter_mut().for_each(|v| *v *= 1e17);
            c.b.iter_mut().for_each(|v| *v *= 1e17);
            c.out0.iter_mut().for_each(|v| *v *= 1e30);
            c.check_all();
        }
    }
}

/// Zero operands onto -0.0: the SIMD kernels, like the reference, add alpha * (+0.0 sum)
/// once, so the sign of every zero must match the reference exactly. (The generic kernel
/// adds products one by one and may keep -0.0, so for it only the value is checked.)
#[test]
fn signed_zeros() {
    for (m, n, k) in [(7, 17, 5), (1, 20, 9), (9, 1, 3), (6, 16, 300)] {
        for alpha in [1.0f32, -1.0] {
            let mut c = Case::random(m, n, k, false, false, alpha, 5);
            c.a.iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = if i % 2 == 0 { -0.0 } else { 0.0 });
            c.out0.fill(-0.0);
            let mut want = c.out0.clone();
            reference::gemm_f32(m, n, k, &c.a, false, &c.b, false, alpha, &mut want);
            for isa in Isa::available() {
                let got = c.check(isa);
                if isa != Isa::Generic {
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "{}", c.what(isa));
                }
            }
        }
    }
}

/// inf and NaN in A, B and out. Where the result is defined (NaN in, inf * 0, inf - inf
/// give NaN; inf times a finite non-zero gives a signed inf) the kernels must produce exactly
/// the reference's non-finite value, whatever the summation order; finite entries nearby
/// must stay correct (padded tile lanes never leak into real outputs).
#[test]
fn inf_and_nan_propagate() {
    for (m, n, k) in [
        (7, 17, 5),
        (6, 16, 3),
        (13, 35, 260),
        (1, 40, 19),
        (40, 1, 19),
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for alpha in [1.0f32, -2.0, 0.0] {
                let mut c = Case::random(m, n, k, ta, tb, alpha, (m * n * k) as u64);
                let mut rng = Rng::new(k as u64);
                let special = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 0.0];
                for _ in 0..3 {
                    let ai = (rng.next_u64() % c.a.len() as u64) as usize;
                    c.a[ai] = special[(rng.next_u64() % 4) as usize];
                    let bi = (rng.next_u64() % c.b.len() as u64) as usize;
                    c.b[bi] = special[(rng.next_u64() % 4) as usize];
                }
                let oi = (rng.next_u64() % c.out0.len() as u64) as usize;
                c.out0[oi] = f32::NAN;
                c.check_all();
            }
        }
    }
}

/// A NaN in row i of A (column j of B) poisons all of row i (column j) of C, even where it
/// meets a zero; nothing else.
#[test]
fn nan_poisons_exactly_its_row_and_column() {
    let (m, n, k) = (11, 19, 7);
    for isa in Isa::available() {
        let mut a = vec![1.0f32; m * k];
        let mut b = vec![0.0f32; k * n];
        a[4 * k + 2] = f32::NAN;
        b[5 * n + 13] = f32::NAN;
        let mut out = vec![0.0f32; m * n];
        gemm_f32_with(isa, m, n, k, &a, false, &b, false, 1.0, &mut out);
        for i in 0..m {
            for j in 0..n {
                let v = out[i * n + j];
                assert_eq!(v.is_nan(), i == 4 || j == 13, "{isa} C({i},{j}) = {v}");
            }
        }
    }
}
