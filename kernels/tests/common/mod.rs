//! Helpers shared by the kernel integration tests.
#![allow(dead_code)]
use kestrel_kernels::Conv2dGeometry;

/// Sizes that straddle vector widths and unroll factors.
pub const SIZES: [usize; 6] = [1, 3, 7, 11, 15, 17];

/// splitmix64: deterministic test data from a proptest-chosen seed, so shrinking works on
/// shapes while the data stays reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }

    pub fn vec(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }
}

pub fn random(seed: u64, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    Rng::new(seed).vec(len, lo, hi)
}

/// Checks |actual - expected| <= 1e-5 * max |expected| element-wise (NaN must match NaN, and
/// infinities must match exactly).
pub fn assert_close(actual: &[f32], expected: &[f32], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let scale = expected
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, v| m.max(v.abs()));
    let tol = 1e-5 * scale.max(f32::MIN_POSITIVE);
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let ok = if e.is_nan() {
            a.is_nan()
        } else if e.is_infinite() {
            a == e
        } else {
            (a - e).abs() <= tol
        };
        assert!(
            ok,
            "{what}: element {i}: got {a}, expected {e} (tolerance {tol})"
        );
    }
}

/// Checks |actual - expected| <= 1e-5 * max `bound` element-wise, where `bound` holds each
/// output's sum of |terms| (the same computation on absolute values). A sum that cancels to
/// near zero then gets the tolerance its terms' size warrants, which `assert_close` (scaled by
/// the results themselves) would not give it when every output cancels.
pub fn assert_close_to_bound(actual: &[f32], expected: &[f32], bound: &[f32], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let scale = bound.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let tol = 1e-5 * scale.max(f32::MIN_POSITIVE);
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol,
            "{what}: element {i}: got {a}, expected {e} (tolerance {tol})"
        );
    }
}

/// A square-kernel convolution of `groups` groups of `cin -> cout` channels over an `hw` map,
/// or `None` when the kernel does not fit the padded input.
#[allow(clippy::too_many_arguments)]
pub fn geometry(
    cin: usize,
    cout: usize,
    groups: usize,
    hw: (usize, usize),
    kernel: usize,
    stride: usize,
    pad: usize,
) -> Option<Conv2dGeometry> {
    let out = |i: usize| (i + 2 * pad).checked_sub(kernel).map(|s| s / stride + 1);
    Some(Conv2dGeometry {
        in_channels: cin * groups,
        in_h: hw.0,
        in_w: hw.1,
        out_channels: cout * groups,
        out_h: out(hw.0)?,
        out_w: out(hw.1)?,
        kernel_h: kernel,
        kernel_w: kernel,
        stride_h: stride,
        stride_w: stride,
        dilation_h: 1,
        dilation_w: 1,
        pad_top: pad,
        pad_left: pad,
        groups,
    })
}
