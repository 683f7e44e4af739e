//! Row-wise softmax.

use super::max_nan_f32;

/// Softmax of each row of a [rows, cols] matrix: subtract the row max, exponentiate, divide by
/// the sum. Gives finite probabilities summing to 1 for logits up to f32::MAX in magnitude.
///
/// Rows whose max is not finite are defined as follows: all -inf gives the uniform
/// distribution 1/cols (the limit of equal logits); any +inf gives 1/count to each +inf entry
/// and 0 elsewhere; any NaN makes the whole row NaN.
pub fn softmax_f32(rows: usize, cols: usize, input: &[f32], output: &mut [f32]) {
    softmax_f32_by(rows, cols, input, output, softmax_f32_row);
}

/// [`softmax_f32`] with each row done by `row`.
pub(crate) fn softmax_f32_by(
    rows: usize,
    cols: usize,
    input: &[f32],
    output: &mut [f32],
    row: impl Fn(&[f32], &mut [f32]),
) {
    assert_eq!(input.len(), rows * cols, "softmax: input length");
    assert_eq!(output.len(), rows * cols, "softmax: output length");
    if cols == 0 {
        return;
    }
    for (x, y) in input.chunks_exact(cols).zip(output.chunks_exact_mut(cols)) {
        row(x, y);
    }
}

/// Softmax of one row; the definition of every case, including rows whose max is not finite.
pub(crate) fn softmax_f32_row(x: &[f32], y: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, max_nan_f32);
    if max.is_nan() {
        y.fill(f32::NAN);
        return;
    }
    if max == f32::NEG_INFINITY {
        y.fill(1.0 / x.len() as f32);
        return;
    }
    if max == f32::INFINITY {
        // inf - inf is NaN, so the +inf entries are handled as the max explicitly.
        let count = x.iter().filter(|&&v| v == f32::INFINITY).count();
        for (yv, &xv) in y.iter_mut().zip(x) {
            *yv = if xv == f32::INFINITY {
                1.0 / count as f32
            } else {
                0.0
            };
        }
        return;
    }

    // x - max may overflow to -inf for logits near -f32::MAX; exp then gives 0, as it should.
    // The max entry contributes exp(0) = 1, so the sum is at least 1 and never overflows for
    // any realistic row length.
    let mut sum = 0.0f64;
    for (yv, &xv) in y.iter_mut().zip(x) {
        let e = (xv - max).exp();
        *yv = e;
        sum += e as f64;
    }
    let inv = (1.0 / sum) as f32;
    for yv in y.iter_mut() {
        *yv *= inv;
    }
}
