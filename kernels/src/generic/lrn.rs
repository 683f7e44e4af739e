//! Local response normalisation across channels.

/// ONNX LRN across channels: for channel c, sum x[c']^2 over c' in
/// [c - floor((size-1)/2), c + ceil((size-1)/2)] clipped to [0, channels); then
/// y = x / (bias + alpha / size * sum)^beta.
#[allow(clippy::too_many_arguments)]
pub fn lrn_f32(
    channels: usize,
    hw: usize,
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
    input: &[f32],
    output: &mut [f32],
) {
    lrn_f32_by(
        channels,
        hw,
        (size, alpha, beta, bias),
        input,
        output,
        |sum_sq, x| {
            for (s, &x) in sum_sq.iter_mut().zip(x) {
                *s += x * x;
            }
        },
        |y, x, sum_sq, bias, alpha_over_size| {
            for ((y, &x), &s) in y.iter_mut().zip(x).zip(sum_sq) {
                let r = (bias + alpha_over_size * s).sqrt();
                *y = x / (r * r.sqrt());
            }
        },
    );
}

/// [`lrn_f32`] with the two hot loops supplied: `add_squares(sum_sq, x)` adds `x[i]^2` to
/// `sum_sq[i]`, and `scale_075(y, x, sum_sq, bias, alpha_over_size)` sets
/// `y[i] = x[i] / (bias + alpha_over_size * sum_sq[i])^0.75`.
pub(crate) fn lrn_f32_by(
    channels: usize,
    hw: usize,
    (size, alpha, beta, bias): (usize, f32, f32, f32),
    input: &[f32],
    output: &mut [f32],
    add_squares: impl Fn(&mut [f32], &[f32]),
    scale_075: impl Fn(&mut [f32], &[f32], &[f32], f32, f32),
) {
    assert!(size > 0, "lrn: size must be > 0");
    assert_eq!(input.len(), channels * hw, "lrn: input length");
    assert_eq!(output.len(), channels * hw, "lrn: output length");
    if hw == 0 {
        return;
    }
    let before = (size - 1) / 2;
    let after = size - 1 - before;
    let alpha_over_size = alpha / size as f32;

    // The window is a handful of channels (5 in AlexNet and GoogLeNet), so summing squares
    // afresh per channel costs little and avoids the cancellation of a running add/subtract.
    let mut sum_sq = vec![0.0f32; hw];
    for (c, out_ch) in output.chunks_exact_mut(hw).enumerate() {
        sum_sq.fill(0.0);
        let lo = c.saturating_sub(before);
        let hi = (c + after + 1).min(channels);
        for x_ch in input[lo * hw..hi * hw].chunks_exact(hw) {
            add_squares(&mut sum_sq, x_ch);
        }

        let x_ch = &input[c * hw..(c + 1) * hw];
        if beta == 0.75 {
            // t^-0.75 = 1 / (sqrt(t) * sqrt(sqrt(t))): two square roots are far cheaper than powf
            // for the beta every common model uses.
            scale_075(out_ch, x_ch, &sum_sq, bias, alpha_over_size);
        } else {
            for ((y, &x), &s) in out_ch.iter_mut().zip(x_ch).zip(&sum_sq) {
                *y = x / (bias + alpha_over_size * s).powf(beta);
            }
        }
    }
}
