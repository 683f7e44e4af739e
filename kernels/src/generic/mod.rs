//! Portable scalar kernels. `reference` holds the naive versions written straight from the ONNX
//! operator definitions; the other modules are the ones the runtime calls.

mod conv;
mod elementwise;
mod gemm;
mod layout;
mod lrn;
mod pool;
pub mod reference;
mod softmax;

pub use conv::{conv2d_f32, Conv2dGeometry};
pub(crate) use conv::{conv2d_f32_with_products, gemm_columns, runs_direct, ConvProducts};
pub use elementwise::{binary_broadcast_f32, channel_affine_f32, clip_f32, relu_f32, BinaryOp};
pub(crate) use gemm::dot_f32;
pub use gemm::gemm_f32;
pub use layout::{pad_constant_f32, transpose_f32};
pub use lrn::lrn_f32;
pub use pool::{avg_pool2d_f32, global_avg_pool_f32, max_pool2d_f32, Pool2dGeometry};
// Hooks for the vector kernels, which exist only on x86_64 and aarch64.
pub use softmax::softmax_f32;
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(unused_imports)
)]
pub(crate) use {
    lrn::lrn_f32_by,
    pool::{avg_pool2d_f32_by, fold_segment, global_avg_pool_f32_by, max_pool2d_f32_by},
    softmax::{softmax_f32_by, softmax_f32_row},
};

use std::ops::Range;

/// Output positions `o` in `0..out_len` whose tap `o * stride + offset` lands in `0..in_len`.
///
/// Convolution and pooling use this to split each output row into a padded head, a body that
/// reads only real input, and a padded tail, so the body loop needs no bounds checks.
pub(crate) fn tap_range(
    out_len: usize,
    in_len: usize,
    stride: usize,
    offset: isize,
) -> Range<usize> {
    debug_assert!(stride > 0);
    // o * stride + offset >= 0
    let start = if offset >= 0 {
        0
    } else {
        offset.unsigned_abs().div_ceil(stride)
    };
    // o * stride + offset <= in_len - 1
    let last = in_len as isize - 1 - offset;
    let end = if last < 0 {
        0
    } else {
        (last as usize / stride + 1).min(out_len)
    };
    start.min(end)..end
}

/// Maximum that propagates NaN from either side, as ONNX Max and MaxPool do (`f32::max` drops
/// NaN).
#[inline(always)]
pub(crate) fn max_nan_f32(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() {
        a
    } else {
        b
    }
}

/// Minimum that propagates NaN from either side.
#[inline(always)]
pub(crate) fn min_nan_f32(a: f32, b: f32) -> f32 {
    if a < b || a.is_nan() {
        a
    } else {
        b
    }
}

/// Number of elements of a shape (1 for rank 0).
pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides of a contiguous tensor.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap_range_naive(out_len: usize, in_len: usize, stride: usize, offset: isize) -> Vec<usize> {
        (0..out_len)
            .filter(|&o| {
                let i = (o * stride) as isize + offset;
                i >= 0 && i < in_len as isize
            })
            .collect()
    }

    #[test]
    fn tap_range_matches_filter() {
        for out_len in 0..8 {
            for in_len in 0..8 {
                for stride in 1..4 {
                    for offset in -9..9 {
                        let r = tap_range(out_len, in_len, stride, offset);
                        let want = tap_range_naive(out_len, in_len, stride, offset);
                        assert_eq!(
                            r.collect::<Vec<_>>(),
                            want,
                            "{out_len} {in_len} {stride} {offset}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn max_min_nan_propagate() {
        assert!(max_nan_f32(f32::NAN, 1.0).is_nan());
        assert!(max_nan_f32(1.0, f32::NAN).is_nan());
        assert!(min_nan_f32(f32::NAN, 1.0).is_nan());
        assert!(min_nan_f32(1.0, f32::NAN).is_nan());
        assert_eq!(max_nan_f32(-1.0, 2.0), 2.0);
        assert_eq!(min_nan_f32(-1.0, 2.0), -1.0);
    }

    #[test]
    fn contiguous_strides_rank_0_to_3() {
        assert_eq!(contiguous_strides(&[]), Vec::<usize>::new());
        assert_eq!(contiguous_strides(&[5]), vec![1]);
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
    }
}
