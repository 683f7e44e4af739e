//! The int8 GEMM on every available micro-kernel (`Int8Kernel::available()`: AVX2 or NEON
//! with and without `sdot`, and the portable one) against the scalar reference. Integer
//! results must be exact.
//!
//! The packed driver has no depth blocking, but its column panels narrow as depth grows (a
//! packed panel is ~192 KiB), and the kernels consume depth in groups of 1, 2 or 4 steps, so
//! the depths below straddle both: odd depths and depths just past a multiple of 4, and
//! widths past one panel at deep k.

mod common;

use common::Rng;
use kestrel_kernels::int8::{reference, MAX_DEPTH_I8};
use kestrel_kernels::{gemm_i8_i32_with, Int8Kernel, QuantizedData};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Act {
    U8(Vec<u8>),
    I8(Vec<i8>),
}

impl Act {
    fn data(&self) -> QuantizedData<'_> {
        match self {
            Act::U8(v) => QuantizedData::U8(v),
            Act::I8(v) => QuantizedData::I8(v),
        }
    }
}

struct Case {
    m: usize,
    n: usize,
    k: usize,
    a: Vec<i8>,
    b: Act,
    zb: i32,
}

impl Case {
    fn random(m: usize, n: usize, k: usize, signed: bool, zb: i32, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let a = (0..m * k).map(|_| rng.next_u64() as i8).collect();
        let b = if signed {
            Act::I8((0..k * n).map(|_| rng.next_u64() as i8).collect())
        } else {
            Act::U8((0..k * n).map(|_| rng.next_u64() as u8).collect())
        };
        Case { m, n, k, a, b, zb }
    }

    fn constant(m: usize, n: usize, k: usize, a: i8, b: Act, zb: i32) -> Self {
        Case {
            m,
            n,
            k,
            a: vec![a; m * k],
            b,
            zb,
        }
    }

    fn check(&self, kernel: Int8Kernel) {
        let (m, n, k) = (self.m, self.n, self.k);
        let mut got = vec![i32::MIN; m * n];
        let mut want = vec![0; m * n];
        gemm_i8_i32_with(kernel, m, n, k, &self.a, self.b.data(), self.zb, &mut got);
        reference::gemm_i8_i32(m, n, k, &self.a, self.b.data(), self.zb, &mut want);
        if got != want {
            let i = got.iter().zip(&want).position(|(g, w)| g != w).unwrap();
            panic!(
                "{kernel} m={m} n={n} k={k} zb={} {}: C({},{}) got {} want {}",
                self.zb,
                if matches!(self.b, Act::I8(_)) {
                    "i8"
                } else {
                    "u8"
                },
                i / n,
                i % n,
                got[i],
                want[i]
            );
        }
    }

    fn check_all(&self) {
        for kernel in Int8Kernel::available() {
            self.check(kernel);
        }
    }
}

/// Both sides of every tile (4 x 8 portable, 6 x 16 AVX2, 8 x 8 NEON).
const EDGE_SIZES: [usize; 14] = [1, 3, 4, 5, 6, 7, 8, 9, 11, 15, 16, 17, 23, 33];
const DEPTHS: [usize; 14] = [1, 2, 3, 4, 5, 7, 8, 9, 17, 64, 255, 256, 257, 1001];

fn zero_point(signed: bool) -> impl Strategy<Value = i32> {
    if signed {
        prop_oneof![Just(-128), Just(0), Just(127), -128..=127i32].boxed()
    } else {
        prop_oneof![Just(0), Just(128), Just(255), 0..=255i32].boxed()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn small_shapes_are_exact(
        m in 1..=40usize,
        n in 1..=40usize,
        k in 1..=40usize,
        (signed, zb) in any::<bool>().prop_flat_map(|s| (Just(s), zero_point(s))),
        seed: u64,
    ) {
        Case::random(m, n, k, signed, zb, seed).check_all();
    }

    #[test]
    fn edge_sizes_and_depths_are_exact(
        m in prop::sample::select(&EDGE_SIZES[..]),
        n in prop::sample::select(&EDGE_SIZES[..]),
        k in prop::sample::select(&DEPTHS[..]),
        (signed, zb) in any::<bool>().prop_flat_map(|s| (Just(s), zero_point(s))),
        seed: u64,
    ) {
        Case::random(m, n, k, signed, zb, seed).check_all();
    }
}

#[test]
fn int8_kernels_are_available_where_the_cpu_has_them() {
    let available = Int8Kernel::available();
    eprintln!("int8 kernels available here: {available:?}");
    assert_eq!(available.last(), Some(&Int8Kernel::Generic));
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        available.contains(&Int8Kernel::Avx2),
        std::is_x86_feature_detected!("avx2")
    );
    #[cfg(target_arch = "aarch64")]
    {
        assert!(available.contains(&Int8Kernel::NeonWidening));
        assert_eq!(
            available.contains(&Int8Kernel::NeonDot),
            std::arch::is_aarch64_feature_detected!("dotprod")
        );
    }
    for kernel in available {
        assert_eq!(Int8Kernel::for_isa(kernel.isa()).isa(), kernel.isa());
    }
}

/// Extreme operands: all 255 / 0 (u8) or 127 / -128 (i8) activations against all 127 and all
/// -128 weights, every extreme zero point, for depths 1, odd, and large. 255 * 127 twice is
/// exactly what saturates `vpmaddubsw`.
#[test]
fn worst_case_values_are_exact() {
    let (m, n) = (7, 17);
    for k in [1usize, 2, 3, 5, 31, 255, 257, 1023, 4097] {
        for w in [127i8, -128, -127, 0] {
            for x in [0u8, 1, 127, 128, 254, 255] {
                for zb in [0, 1, 127, 128, 254, 255] {
                    Case::constant(m, n, k, w, Act::U8(vec![x; k * n]), zb).check_all();
                }
            }
            for x in [-128i8, -1, 0, 127] {
                for zb in [-128, -1, 0, 127] {
                    Case::constant(m, n, k, w, Act::I8(vec![x; k * n]), zb).check_all();
                }
            }
        }
    }
}

/// Alternating extremes so neighbouring products (the pairs `vpmaddwd` and `sdot` sum) have
/// the same and opposite signs.
#[test]
fn alternating_extremes_are_exact() {
    let (m, n) = (13, 21);
    for k in [1usize, 3, 4, 7, 9, 300] {
        let a: Vec<i8> = (0..m * k)
            .map(|i| if (i / 3) % 2 == 0 { 127 } else { -128 })
            .collect();
        let bu: Vec<u8> = (0..k * n)
            .map(|i| if i % 2 == 0 { 255 } else { 0 })
            .collect();
        let bi: Vec<i8> = (0..k * n)
            .map(|i| if i % 5 < 2 { 127 } else { -128 })
            .collect();
        for zb in [0, 128, 255] {
            Case {
                m,
                n,
                k,
                a: a.clone(),
                b: Act::U8(bu.clone()),
                zb,
            }
            .check_all();
        }
        for zb in [-128, 0, 127] {
            Case {
                m,
                n,
                k,
                a: a.clone(),
                b: Act::I8(bi.clone()),
                zb,
            }
            .check_all();
        }
    }
}

/// The deepest product the kernels accept, with the largest sums it can produce:
/// 65536 * 128 * 255 = 2^31 - 2^23 in magnitude, inside i32.
#[test]
fn maximum_depth_extremes_are_exact() {
    let k = MAX_DEPTH_I8;
    for (w, x, zb) in [
        (-128i8, 255u8, 0),
        (127, 0, 255),
        (-128, 0, 255),
        (127, 255, 0),
    ] {
        Case::constant(2, 3, k, w, Act::U8(vec![x; k * 3]), zb).check_all();
    }
}

#[test]
fn wide_output_crosses_column_panels() {
    // At k = 2000 a 192 KiB panel holds a few slivers, so n = 300 needs several panels.
    Case::random(9, 300, 2000, false, 37, 1).check_all();
    Case::random(5, 130, 4097, true, -3, 2).check_all();
}

#[test]
fn empty_dimensions() {
    for kernel in Int8Kernel::available() {
        let mut out = vec![7; 6];
        gemm_i8_i32_with(kernel, 2, 3, 0, &[], QuantizedData::U8(&[]), 5, &mut out);
        assert_eq!(out, vec![0; 6], "{kernel}: k = 0 gives zeros");
        gemm_i8_i32_with(kernel, 0, 3, 2, &[], QuantizedData::U8(&[0; 6]), 0, &mut []);
        gemm_i8_i32_with(kernel, 3, 0, 2, &[0; 6], QuantizedData::I8(&[]), 0, &mut []);
    }
}
