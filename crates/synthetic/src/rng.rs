//! Self-contained randomness and trigonometry.
//!
//! Both are written out here rather than taken from a crate or libm so that a given
//! (seed, index) pair yields the same bytes on every platform and with every
//! dependency version: the datasets and the accuracy figures quoted for them depend
//! on it.

/// SplitMix64: tiny, fast, and good enough to drive a procedural renderer.
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// Derives an independent stream for one sample, so that sample `index` can be
    /// rendered without generating the ones before it.
    pub(crate) fn for_sample(seed: u64, index: u64) -> Self {
        let mut outer = Rng { state: seed };
        let key = outer.next_u64();
        let mut inner = Rng {
            state: key ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03),
        };
        // One extra round so neighbouring indices do not start from related states.
        let state = inner.next_u64();
        Rng { state }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 bits, exactly representable as f32.
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    pub(crate) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n); the modulo bias is negligible for the small `n` used.
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        ((self.next_u64() >> 32) % u64::from(n)) as u32
    }

    pub(crate) fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    pub(crate) fn angle(&mut self) -> f32 {
        self.range(0.0, std::f32::consts::TAU)
    }
}

/// Sine and cosine from basic arithmetic only (round, +, *), which IEEE 754 fixes
/// bit for bit, unlike the platform's libm.
pub(crate) fn sin_cos(angle: f32) -> (f32, f32) {
    use std::f64::consts::FRAC_PI_2;
    let a = f64::from(angle);
    let quadrant = (a / FRAC_PI_2).round();
    let r = a - quadrant * FRAC_PI_2;
    let r2 = r * r;
    // Taylor series on |r| <= pi/4; the first omitted terms are below 1e-12.
    let s = r * (1.0 - r2 / 6.0 * (1.0 - r2 / 20.0 * (1.0 - r2 / 42.0 * (1.0 - r2 / 72.0))));
    let c = 1.0 - r2 / 2.0 * (1.0 - r2 / 12.0 * (1.0 - r2 / 30.0 * (1.0 - r2 / 56.0)));
    let (s, c) = match (quadrant as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    };
    (s as f32, c as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sin_cos_matches_std() {
        for i in -400..400 {
            let a = i as f32 * 0.037;
            let (s, c) = sin_cos(a);
            assert!((s - a.sin()).abs() < 1e-6, "sin({a})");
            assert!((c - a.cos()).abs() < 1e-6, "cos({a})");
        }
    }

    #[test]
    fn unit_and_below_stay_in_range() {
        let mut rng = Rng::for_sample(7, 3);
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(rng.below(6) < 6);
        }
    }

    #[test]
    fn streams_differ_between_indices_and_seeds() {
        let a = Rng::for_sample(1, 0).next_u64();
        let b = Rng::for_sample(1, 1).next_u64();
        let c = Rng::for_sample(2, 0).next_u64();
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
