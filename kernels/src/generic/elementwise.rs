//! Elementwise activations, per-channel affine and broadcasting binary operators.

use super::{contiguous_strides, max_nan_f32, min_nan_f32, numel};

/// In place max(x, 0); NaN stays NaN.
pub fn relu_f32(data: &mut [f32]) {
    for x in data {
        *x = if *x < 0.0 { 0.0 } else { *x };
    }
}

/// In place clamp(x, min, max); NaN stays NaN. Clamps to `min` first, then to `max`, so
/// `min > max` gives `max` everywhere, as ONNX Runtime does.
pub fn clip_f32(data: &mut [f32], min: f32, max: f32) {
    for x in data {
        let y = if *x < min { min } else { *x };
        *x = if y > max { max } else { y };
    }
}

/// Per-channel y = x * scale[c] + shift[c] over [channels, hw] (batch norm at inference).
pub fn channel_affine_f32(
    channels: usize,
    hw: usize,
    scale: &[f32],
    shift: &[f32],
    input: &[f32],
    output: &mut [f32],
) {
    assert_eq!(scale.len(), channels, "channel_affine: scale length");
    assert_eq!(shift.len(), channels, "channel_affine: shift length");
    assert_eq!(input.len(), channels * hw, "channel_affine: input length");
    assert_eq!(output.len(), channels * hw, "channel_affine: output length");
    if hw == 0 {
        return;
    }
    for (((y, x), &s), &t) in output
        .chunks_exact_mut(hw)
        .zip(input.chunks_exact(hw))
        .zip(scale)
        .zip(shift)
    {
        for (yv, &xv) in y.iter_mut().zip(x) {
            *yv = xv * s + t;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
}

impl BinaryOp {
    /// The scalar operation. Max and Min propagate NaN from either side (numpy semantics).
    #[inline(always)]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Max => max_nan_f32(a, b),
            BinaryOp::Min => min_nan_f32(a, b),
            BinaryOp::Pow => a.powf(b),
        }
    }
}

/// Numpy-style broadcasting of a (shape a_shape) with b (shape b_shape) into out (out_shape, the
/// broadcast shape, computed by the caller; shapes right-aligned, ranks may differ, a dimension of
/// 1 broadcasts). Fast paths for equal shapes, scalar b, and per-channel b ([C,1,1] against
/// [N,C,H,W]) are worth having; the general path uses strides.
pub fn binary_broadcast_f32(
    op: BinaryOp,
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out: &mut [f32],
    out_shape: &[usize],
) {
    assert_eq!(a.len(), numel(a_shape), "binary_broadcast: a length");
    assert_eq!(b.len(), numel(b_shape), "binary_broadcast: b length");
    assert_eq!(out.len(), numel(out_shape), "binary_broadcast: out length");
    let a_strides = broadcast_strides(a_shape, out_shape);
    let b_strides = broadcast_strides(b_shape, out_shape);

    // Monomorphise the loops per operator so each inner loop is a plain arithmetic zip.
    match op {
        BinaryOp::Add => broadcast_f32(|x, y| x + y, a, &a_strides, b, &b_strides, out, out_shape),
        BinaryOp::Sub => broadcast_f32(|x, y| x - y, a, &a_strides, b, &b_strides, out, out_shape),
        BinaryOp::Mul => broadcast_f32(|x, y| x * y, a, &a_strides, b, &b_strides, out, out_shape),
        BinaryOp::Div => broadcast_f32(|x, y| x / y, a, &a_strides, b, &b_strides, out, out_shape),
        BinaryOp::Max => broadcast_f32(max_nan_f32, a, &a_strides, b, &b_strides, out, out_shape),
        BinaryOp::Min => broadcast_f32(min_nan_f32, a, &a_strides, b, &b_strides, out, out_shape),
        BinaryOp::Pow => broadcast_f32(f32::powf, a, &a_strides, b, &b_strides, out, out_shape),
    }
}

/// Strides of `shape` read as `out_shape` (right-aligned), with 0 on broadcast dimensions.
fn broadcast_strides(shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    assert!(
        shape.len() <= out_shape.len(),
        "binary_broadcast: operand rank exceeds output rank"
    );
    let lead = out_shape.len() - shape.len();
    let own = contiguous_strides(shape);
    let mut strides = vec![0; out_shape.len()];
    for (i, (&d, &s)) in shape.iter().zip(&own).enumerate() {
        let o = out_shape[lead + i];
        assert!(
            d == o || d == 1,
            "binary_broadcast: {shape:?} does not broadcast to {out_shape:?}"
        );
        strides[lead + i] = if d == 1 { 0 } else { s };
    }
    strides
}

/// Merges adjacent output dimensions that both operands walk the same way (contiguously or not at
/// all), so e.g. [N,C,H,W] + [C,1,1] becomes [N, C, H*W] with b strides [0, 1, 0]. Size-1
/// dimensions are dropped. Returns (dims, a_strides, b_strides), outermost first.
fn coalesce(
    shape: &[usize],
    a_strides: &[usize],
    b_strides: &[usize],
) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (mut dims, mut sa, mut sb) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..shape.len() {
        if shape[i] == 1 {
            continue;
        }
        if let (Some(&d), Some(&a), Some(&b)) = (dims.last(), sa.last(), sb.last()) {
            if a == a_strides[i] * shape[i] && b == b_strides[i] * shape[i] {
                let last = dims.len() - 1;
                dims[last] = d * shape[i];
                sa[last] = a_strides[i];
                sb[last] = b_strides[i];
                continue;
            }
        }
        dims.push(shape[i]);
        sa.push(a_strides[i]);
        sb.push(b_strides[i]);
    }
    (dims, sa, sb)
}

#[allow(clippy::too_many_arguments)]
fn broadcast_f32(
    f: impl Fn(f32, f32) -> f32 + Copy,
    a: &[f32],
    a_strides: &[usize],
    b: &[f32],
    b_strides: &[usize],
    out: &mut [f32],
    out_shape: &[usize],
) {
    if out.is_empty() {
        return;
    }
    let (dims, sa, sb) = coalesce(out_shape, a_strides, b_strides);
    let Some((&inner, outer_dims)) = dims.split_last() else {
        // Every dimension is 1: a single element.
        out[0] = f(a[0], b[0]);
        return;
    };
    let (inner_a, inner_b) = (sa[sa.len() - 1], sb[sb.len() - 1]);

    // Walk the outer dimensions with an odometer; each step handles one contiguous output row.
    let mut index = vec![0usize; outer_dims.len()];
    let (mut a_off, mut b_off) = (0usize, 0usize);
    for out_row in out.chunks_exact_mut(inner) {
        binary_row_f32(f, &a[a_off..], inner_a, &b[b_off..], inner_b, out_row);
        for d in (0..outer_dims.len()).rev() {
            index[d] += 1;
            a_off += sa[d];
            b_off += sb[d];
            if index[d] < outer_dims[d] {
                break;
            }
            a_off -= sa[d] * outer_dims[d];
            b_off -= sb[d] * outer_dims[d];
            index[d] = 0;
        }
    }
}

/// out[j] = f(a[j * sa], b[j * sb]) where after coalescing each stride is 0 or 1.
fn binary_row_f32(
    f: impl Fn(f32, f32) -> f32,
    a: &[f32],
    sa: usize,
    b: &[f32],
    sb: usize,
    out: &mut [f32],
) {
    let n = out.len();
    match (sa, sb) {
        (1, 1) => {
            for ((o, &x), &y) in out.iter_mut().zip(&a[..n]).zip(&b[..n]) {
                *o = f(x, y);
            }
        }
        (1, 0) => {
            let y = b[0];
            for (o, &x) in out.iter_mut().zip(&a[..n]) {
                *o = f(x, y);
            }
        }
        (0, 1) => {
            let x = a[0];
            for (o, &y) in out.iter_mut().zip(&b[..n]) {
                *o = f(x, y);
            }
        }
        _ => {
            for (j, o) in out.iter_mut().enumerate() {
                *o = f(a[j * sa], b[j * sb]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_per_channel_nchw() {
        let out = [2, 3, 4, 5];
        let a = broadcast_strides(&out, &out);
        let b = broadcast_strides(&[3, 1, 1], &out);
        assert_eq!(
            coalesce(&out, &a, &b),
            (vec![2, 3, 20], vec![60, 20, 1], vec![0, 1, 0])
        );
    }

    #[test]
    fn coalesce_equal_shapes_is_one_row() {
        let out = [2, 1, 4, 5];
        let a = broadcast_strides(&out, &out);
        assert_eq!(coalesce(&out, &a, &a), (vec![40], vec![1], vec![1]));
    }
}
