//! Data movement: transpose and constant padding.

use super::{contiguous_strides, numel};

/// General N-d transpose: out has shape [shape[perm[0]], shape[perm[1]], ...].
pub fn transpose_f32(input: &[f32], shape: &[usize], perm: &[usize], output: &mut [f32]) {
    assert_eq!(perm.len(), shape.len(), "transpose: perm rank");
    let mut seen = vec![false; perm.len()];
    for &p in perm {
        assert!(
            p < perm.len() && !seen[p],
            "transpose: {perm:?} is not a permutation"
        );
        seen[p] = true;
    }
    assert_eq!(input.len(), numel(shape), "transpose: input length");
    assert_eq!(output.len(), input.len(), "transpose: output length");
    if output.is_empty() {
        return;
    }

    // Output dimension i walks the input with stride in_strides[perm[i]]. Dims of size 1 are
    // dropped, and output dims that are also adjacent and in order in the input are merged, so
    // NCHW -> NHWC becomes a [N, HW, C] walk.
    let in_strides = contiguous_strides(shape);
    let mut dims: Vec<usize> = Vec::new();
    let mut strides: Vec<usize> = Vec::new();
    for &p in perm {
        if shape[p] == 1 {
            continue;
        }
        if let (Some(d), Some(s)) = (dims.last_mut(), strides.last_mut()) {
            if *s == in_strides[p] * shape[p] {
                *d *= shape[p];
                *s = in_strides[p];
                continue;
            }
        }
        dims.push(shape[p]);
        strides.push(in_strides[p]);
    }
    let Some((&inner, outer_dims)) = dims.split_last() else {
        output[0] = input[0];
        return;
    };
    let inner_stride = strides[strides.len() - 1];

    let mut index = vec![0usize; outer_dims.len()];
    let mut off = 0usize;
    for out_row in output.chunks_exact_mut(inner) {
        if inner_stride == 1 {
            out_row.copy_from_slice(&input[off..off + inner]);
        } else {
            for (o, &x) in out_row
                .iter_mut()
                .zip(input[off..].iter().step_by(inner_stride))
            {
                *o = x;
            }
        }
        for d in (0..outer_dims.len()).rev() {
            index[d] += 1;
            off += strides[d];
            if index[d] < outer_dims[d] {
                break;
            }
            off -= strides[d] * outer_dims[d];
            index[d] = 0;
        }
    }
}

/// Constant padding of an N-d tensor: pads = [begin_0, .., begin_{r-1}, end_0, .., end_{r-1}]
/// as in ONNX, non-negative; output shape computed by the caller (shape[i] + begin_i + end_i).
pub fn pad_constant_f32(
    input: &[f32],
    shape: &[usize],
    pads: &[usize],
    value: f32,
    output: &mut [f32],
) {
    let rank = shape.len();
    assert_eq!(
        pads.len(),
        2 * rank,
        "pad: pads must hold begin and end per dimension"
    );
    let out_shape: Vec<usize> = (0..rank)
        .map(|i| shape[i] + pads[i] + pads[rank + i])
        .collect();
    assert_eq!(input.len(), numel(shape), "pad: input length");
    assert_eq!(output.len(), numel(&out_shape), "pad: output length");

    output.fill(value);
    if input.is_empty() {
        return;
    }
    let Some((&inner, outer_shape)) = shape.split_last() else {
        output[0] = input[0];
        return;
    };

    // Copy each contiguous input row to its place in the output.
    let out_strides = contiguous_strides(&out_shape);
    let base: usize = (0..rank).map(|i| pads[i] * out_strides[i]).sum();
    let mut index = vec![0usize; outer_shape.len()];
    let mut off = base;
    for in_row in input.chunks_exact(inner) {
        output[off..off + inner].copy_from_slice(in_row);
        for d in (0..outer_shape.len()).rev() {
            index[d] += 1;
            off += out_strides[d];
            if index[d] < outer_shape[d] {
                break;
            }
            off -= out_strides[d] * outer_shape[d];
            index[d] = 0;
        }
    }
}
