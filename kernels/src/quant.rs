//! Quantization arithmetic shared by the int8 kernels and their references.
//!
//! Requantization follows ONNX QLinearConv: the i32 accumulator (bias included) is multiplied
//! by the real scale `x_scale * w_scale[oc] / y_scale` (computed in f32, in that order),
//! rounded half to even, offset by the output zero point and saturated to the output type.
//! The ONNX reference evaluates the product in f64 (an i32 array times an f32 scalar promotes
//! to f64), which is what [`requantize_reference`] does.
//!
//! The kernels use [`Requantizer`], an integer form of the same computation: every finite f32
//! scale is exactly `m * 2^e` with an integer mantissa `m < 2^24`, so `acc * m` is exact in
//! i64 (`|acc| < 2^31`) and the division by `2^-e` can be rounded half to even exactly with
//! shifts. It therefore returns the correctly rounded value of the exact product for every
//! accumulator. The f64 reference is exact (and so agrees bit for bit) whenever `acc * m`
//! fits f64's 53-bit significand, i.e. for every `|acc| < 2^29`; beyond that the f64 product
//! may itself be rounded and the integer form is the more accurate of the two.

/// The real multiplier of a requantization, `x_scale * w_scale / y_scale`, rounded to f32 the
/// way the ONNX reference computes it.
pub fn requant_scale(x_scale: f32, w_scale: f32, y_scale: f32) -> f32 {
    x_scale * w_scale / y_scale
}

/// `round_half_even(acc * scale) + zero_point` saturated to `lo..=hi`, evaluated in f64 as the
/// ONNX reference does. Exact for `|acc| < 2^29` (see the module docs).
pub fn requantize_reference(acc: i32, scale: f32, zero_point: i32, lo: i32, hi: i32) -> i32 {
    let r = (acc as f64 * scale as f64).round_ties_even();
    (r + zero_point as f64).clamp(lo as f64, hi as f64) as i32
}

/// `acc * scale` in f32, rounded once (the product is formed in f64): the dequantized value of
/// an accumulator whose real scale is `scale`.
pub fn dequantize(acc: i32, scale: f32) -> f32 {
    (acc as f64 * scale as f64) as f32
}

/// `round_half_even(x / scale) + zero_point` saturated to `lo..=hi` (ONNX QuantizeLinear).
pub fn quantize(x: f32, scale: f32, zero_point: i32, lo: i32, hi: i32) -> i32 {
    let r = (x as f64 / scale as f64).round_ties_even();
    if r.is_nan() {
        return zero_point.clamp(lo, hi);
    }
    (r + zero_point as f64).clamp(lo as f64, hi as f64) as i32
}

/// Exact integer requantization by a fixed f32 scale: `scale = mantissa * 2^exponent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requantizer {
    mantissa: i64,
    exponent: i32,
}

impl Requantizer {
    /// Splits `scale` into its integer mantissa and power of two. Panics unless `scale` is
    /// finite and non-negative (quantization scales are positive).
    pub fn new(scale: f32) -> Self {
        assert!(
            scale.is_finite() && scale >= 0.0,
            "requantization scale must be finite and >= 0, got {scale}"
        );
        let bits = scale.to_bits();
        let biased = ((bits >> 23) & 0xff) as i32;
        let fraction = (bits & 0x7f_ffff) as i64;
        let (mantissa, exponent) = if biased == 0 {
            // Zero or subnormal: fraction * 2^-149.
            (fraction, -149)
        } else {
            (fraction | 0x80_0000, biased - 150)
        };
        Requantizer { mantissa, exponent }
    }

    /// `round_half_even(acc * scale)`, saturated to the i32 range; exact for every `acc`.
    #[inline]
    pub fn apply(&self, acc: i32) -> i32 {
        let product = acc as i64 * self.mantissa; // |product| < 2^55
        if product == 0 {
            return 0;
        }
        if self.exponent >= 0 {
            // scale >= 2^23: any non-zero product is far outside i32 after the shift.
            let shifted = (product as i128) << self.exponent.min(16);
            return shifted.clamp(i32::MIN as i128, i32::MAX as i128) as i32;
        }
        let shift = -self.exponent as u32;
        if shift >= 57 {
            // |product| < 2^55 < 2^(shift - 1): below one half, rounds to zero.
            return 0;
        }
        let floor = product >> shift;
        let rem = product - (floor << shift); // 0 <= rem < 2^shift
        let half = 1i64 << (shift - 1);
        let rounded = if rem > half || (rem == half && floor & 1 == 1) {
            floor + 1
        } else {
            floor
        };
        rounded.clamp(i32::MIN as i64, i32::MAX as i64) as i32
    }

    /// The fixed-point form for vector kernels, or `None` for the scales it does not cover
    /// (zero, or outside `2^-33 ..= 2^23` or so: `shift` must be in `1..=56`); kernels fall
    /// back to [`Requantizer::apply_saturating`] for those.
    pub fn fixed_point(&self) -> Option<FixedPoint> {
        if self.mantissa == 0 || self.exponent >= 0 || -self.exponent > FixedPoint::MAX_SHIFT as i32
        {
            return None;
        }
        let shift = (-self.exponent) as u32;
        // apply(acc) >= 384 exactly when acc * mantissa >= 383.5 * 2^shift (383.5 is a tie
        // and rounds to the even 384), and rounding half to even is odd-symmetric, so the
        // same bound serves the negative side.
        let threshold = 767u128 << (shift - 1);
        let limit = threshold.div_ceil(self.mantissa as u128);
        Some(FixedPoint {
            mantissa: self.mantissa as i32,
            shift,
            acc_limit: limit.min(i32::MAX as u128) as i32,
        })
    }

    /// `apply(acc) + offset` saturated to `lo..=hi`, with the sum formed without overflow.
    #[inline]
    pub fn apply_saturating(&self, acc: i32, offset: i32, lo: i32, hi: i32) -> i32 {
        (self.apply(acc) as i64 + offset as i64).clamp(lo as i64, hi as i64) as i32
    }
}

/// The integer requantization in the form vector kernels use: multiply by `mantissa`, shift
/// right by `shift` rounding half to even, for accumulators first clamped to
/// `-acc_limit..=acc_limit`.
///
/// The clamp is what lets a kernel keep only the low 32 bits of the shifted product: an
/// accumulator at `acc_limit` already rounds to at least 384 in magnitude, and every output
/// (u8 or i8, zero point or residual addend in -128..=255) saturates from there on, so the
/// clamp never changes a final output, and inside it `|acc * mantissa| < 2^(shift + 9) +
/// 2^24`, whose shifted value fits comfortably in an i32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedPoint {
    pub mantissa: i32,
    pub shift: u32,
    pub acc_limit: i32,
}

impl FixedPoint {
    /// Largest `shift` the vector forms support (the scalar [`Requantizer`] gives 0 beyond 56).
    pub const MAX_SHIFT: u32 = 56;
    /// Smallest requantized magnitude that saturates every u8/i8 output whatever its addend.
    pub const SATURATING: i64 = 384;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(acc: i32, scale: f32) {
        let fixed = Requantizer::new(scale).apply_saturating(acc, 0, i32::MIN, i32::MAX);
        let float = requantize_reference(acc, scale, 0, i32::MIN, i32::MAX);
        assert_eq!(fixed, float, "acc {acc} scale {scale:e}");
    }

    #[test]
    fn ties_round_to_even() {
        let r = Requantizer::new(0.5);
        let got: Vec<i32> = (-5..=5).map(|a| r.apply(a)).collect();
        // -2.5 -2 -1.5 -1 -0.5 0 0.5 1 1.5 2 2.5
        assert_eq!(got, [-2, -2, -2, -1, 0, 0, 0, 1, 2, 2, 2]);
        let quarter = Requantizer::new(0.25);
        // 6/4 = 1.5 -> 2, 10/4 = 2.5 -> 2, -6/4 -> -2, 5/4 -> 1, 7/4 -> 2.
        assert_eq!(
            [6, 10, -6, -10, 5, 7, 3].map(|a| quarter.apply(a)),
            [2, 2, -2, -2, 1, 2, 1]
        );
        for acc in -9..=9 {
            check(acc, 0.5);
            check(acc, 0.25);
            check(acc, 1.5);
        }
    }

    #[test]
    fn saturates_at_both_ends() {
        let r = Requantizer::new(1.0);
        assert_eq!(r.apply_saturating(300, 0, 0, 255), 255);
        assert_eq!(r.apply_saturating(-300, 0, 0, 255), 0);
        assert_eq!(r.apply_saturating(200, -100, -128, 127), 100);
        assert_eq!(r.apply_saturating(i32::MAX, 255, -128, 127), 127);
        assert_eq!(r.apply_saturating(i32::MIN, -128, -128, 127), -128);
        let huge = Requantizer::new(f32::MAX);
        assert_eq!(huge.apply(1), i32::MAX);
        assert_eq!(huge.apply(-1), i32::MIN);
        assert_eq!(huge.apply(0), 0);
        assert_eq!(requantize_reference(i32::MAX, f32::MAX, 3, 0, 255), 255);
        assert_eq!(requantize_reference(i32::MIN, 1.0, 3, -128, 127), -128);
    }

    #[test]
    fn zero_tiny_and_subnormal_scales() {
        for scale in [
            0.0f32,
            f32::MIN_POSITIVE,
            1e-40,
            1e-45,
            1e-12,
            2.0f32.powi(-30),
        ] {
            for acc in [0, 1, -1, 1 << 20, -(1 << 28), (1 << 29) - 1] {
                check(acc, scale);
            }
        }
        // 2^28 * 2^-29 = 0.5 exactly: a tie, rounds to 0; 3 * 2^28 * 2^-29 = 1.5 -> 2.
        let r = Requantizer::new(2.0f32.powi(-29));
        assert_eq!(r.apply(1 << 28), 0);
        assert_eq!(r.apply(3 << 28), 2);
        assert_eq!(r.apply(-(3 << 28)), -2);
    }

    /// The integer form equals the f64 reference over typical and awkward scales for every
    /// accumulator magnitude where the reference is exact.
    #[test]
    fn fixed_point_agrees_with_float_reference() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let scales = [
            1.0f32,
            0.5,
            0.1,
            0.003_921_569,
            1.0 / 3.0,
            7.3e-4,
            2.5e-5,
            0.999_999_9,
            1.000_000_1,
            123.456,
        ];
        for &scale in &scales {
            for _ in 0..20_000 {
                let acc = (next() as i32) >> (next() % 31 + 2); // |acc| < 2^29
                check(acc, scale);
            }
        }
        for _ in 0..100_000 {
            let scale = f32::from_bits((next() as u32) % 0x4000_0000); // [0, 2)
            let acc = (next() as i32) >> 3;
            check(acc, scale);
        }
    }

    /// The clamp of [`FixedPoint`] sits exactly where the requantized value reaches 384.
    #[test]
    fn fixed_point_limit_is_the_saturation_edge() {
        for scale in [1.0f32, 0.5, 0.1, 1.0 / 3.0, 7.3e-4, 2.5e-5, 1e-9, 3e5, 1.5] {
            let r = Requantizer::new(scale);
            let fp = r.fixed_point().expect("ordinary scale");
            let limit = fp.acc_limit;
            if limit < i32::MAX {
                assert!(r.apply(limit) as i64 >= FixedPoint::SATURATING, "{scale}");
                assert!(r.apply(-limit) as i64 <= -FixedPoint::SATURATING, "{scale}");
            }
            assert!(
                (r.apply(limit - 1) as i64) < FixedPoint::SATURATING,
                "{scale}"
            );
            assert!(
                (r.apply(-limit + 1) as i64) > -FixedPoint::SATURATING,
                "{scale}"
            );
        }
        assert_eq!(Requantizer::new(0.0).fixed_point(), None);
        assert_eq!(Requantizer::new(1e30).fixed_point(), None);
        assert_eq!(Requantizer::new(1e-40).fixed_point(), None);
    }

    #[test]
    fn quantize_and_dequantize() {
        assert_eq!(quantize(0.25, 0.5, 10, 0, 255), 10); // 0.5 -> 0
        assert_eq!(quantize(0.75, 0.5, 10, 0, 255), 12); // 1.5 -> 2
        assert_eq!(quantize(1e9, 0.5, 10, 0, 255), 255);
        assert_eq!(quantize(-1e9, 0.5, 10, -128, 127), -128);
        assert_eq!(quantize(f32::NAN, 0.5, 10, 0, 255), 10);
        assert_eq!(dequantize(-6, 0.25), -1.5);
        assert_eq!(requant_scale(0.5, 0.25, 0.125), 1.0);
    }
}
