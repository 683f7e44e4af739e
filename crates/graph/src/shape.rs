//! Output-shape rules of every operator, shared by the importer and the runtime.

use crate::op::{ConvAttrs, Op, Padding, PoolAttrs};
use crate::tensor::element_count;

/// Why an operator cannot accept its input shapes.
pub type ShapeResult<T> = Result<T, String>;

/// Numpy broadcasting of two shapes (right-aligned, 1 stretches).
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> ShapeResult<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() < rank {
            1
        } else {
            s[i + s.len() - rank]
        }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// Output size of a convolution along one axis, given its total padding.
pub fn conv_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_total: usize,
) -> ShapeResult<usize> {
    let (span, padded) = window_span(input, kernel, stride, dilation, pad_total)?;
    if padded < span {
        return Err(format!(
            "kernel span {span} is larger than the padded input {padded}"
        ));
    }
    Ok((padded - span) / stride + 1)
}

/// Output size of a pool along one axis. With `ceil_mode` the size rounds up, but a last window
/// that would start inside the end padding is dropped, as ONNX and Caffe define it.
pub fn pool_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
    ceil_mode: bool,
) -> ShapeResult<usize> {
    let pad_total = pad_begin.checked_add(pad_end).ok_or(OVERFLOW)?;
    let (span, padded) = window_span(input, kernel, stride, dilation, pad_total)?;
    if padded < span {
        return Err(format!(
            "pool window {span} is larger than the padded input {padded}"
        ));
    }
    let steps = padded - span;
    let mut out = if ceil_mode {
        steps.div_ceil(stride)
    } else {
        steps / stride
    } + 1;
    if ceil_mode && (out - 1).saturating_mul(stride) >= input.saturating_add(pad_begin) {
        out -= 1;
    }
    Ok(out)
}

const OVERFLOW: &str = "sizes overflow";

/// The span of a dilated window and the padded input size, checking the attributes are
/// positive and the sizes do not overflow (attributes come from model files).
fn window_span(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_total: usize,
) -> ShapeResult<(usize, usize)> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(format!(
            "kernel {kernel}, stride {stride} and dilation {dilation} must be positive"
        ));
    }
    let span = dilation
        .checked_mul(kernel - 1)
        .and_then(|s| s.checked_add(1))
        .ok_or(OVERFLOW)?;
    let padded = input.checked_add(pad_total).ok_or(OVERFLOW)?;
    Ok((span, padded))
}

/// Explicit `(begin, end)` padding of the two spatial axes for an input of `in_hw`.
pub fn resolve_padding(
    padding: &Padding,
    in_hw: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
) -> ([usize; 2], [usize; 2]) {
    match padding {
        Padding::Explicit { begin, end } => (*begin, *end),
        Padding::SameUpper | Padding::SameLower => {
            let mut begin = [0; 2];
            let mut end = [0; 2];
            for i in 0..2 {
                // Saturating: a zero or huge attribute is refused by the size rules that
                // use this padding, and must not panic here first.
                let stride = strides[i].max(1);
                let out = in_hw[i].div_ceil(stride);
                let span = dilations[i]
                    .saturating_mul(kernel[i].saturating_sub(1))
                    .saturating_add(1);
                let total = ((out.max(1) - 1).saturating_mul(stride))
                    .saturating_add(span)
                    .saturating_sub(in_hw[i]);
                let (small, large) = (total / 2, total - total / 2);
                if *padding == Padding::SameUpper {
                    (begin[i], end[i]) = (small, large);
                } else {
                    (begin[i], end[i]) = (large, small);
                }
            }
            (begin, end)
        }
    }
}

fn require_rank(shape: &[usize], rank: usize, what: &str) -> ShapeResult<()> {
    if shape.len() == rank {
        Ok(())
    } else {
        Err(format!("{what} must have rank {rank}, got shape {shape:?}"))
    }
}

fn conv_shape(
    a: &ConvAttrs,
    x: &[usize],
    w: &[usize],
    bias: Option<&[usize]>,
) -> ShapeResult<Vec<usize>> {
    require_rank(x, 4, "conv input")?;
    require_rank(w, 4, "conv weights")?;
    let groups = a.groups;
    if groups == 0 || !x[1].is_multiple_of(groups) || !w[0].is_multiple_of(groups) {
        return Err(format!(
            "{groups} groups do not divide input channels {} and output channels {}",
            x[1], w[0]
        ));
    }
    let expected = w[1].checked_mul(groups).ok_or(OVERFLOW)?;
    if expected != x[1] {
        return Err(format!(
            "weights {w:?} expect {expected} input channels, input {x:?} has {}",
            x[1]
        ));
    }
    if [w[2], w[3]] != a.kernel {
        return Err(format!(
            "weights {w:?} do not match kernel_shape {:?}",
            a.kernel
        ));
    }
    if let Some(b) = bias {
        if b != [w[0]] {
            return Err(format!(
                "bias shape {b:?} does not match {} output channels",
                w[0]
            ));
        }
    }
    let (begin, end) = resolve_padding(&a.padding, [x[2], x[3]], a.kernel, a.strides, a.dilations);
    let oh = conv_output_size(
        x[2],
        a.kernel[0],
        a.strides[0],
        a.dilations[0],
        begin[0].checked_add(end[0]).ok_or(OVERFLOW)?,
    )?;
    let ow = conv_output_size(
        x[3],
        a.kernel[1],
        a.strides[1],
        a.dilations[1],
        begin[1].checked_add(end[1]).ok_or(OVERFLOW)?,
    )?;
    Ok(vec![x[0], w[0], oh, ow])
}

fn pool_shape(a: &PoolAttrs, x: &[usize]) -> ShapeResult<Vec<usize>> {
    require_rank(x, 4, "pool input")?;
    let (begin, end) = resolve_padding(&a.padding, [x[2], x[3]], a.kernel, a.strides, a.dilations);
    let mut out = vec![x[0], x[1], 0, 0];
    for i in 0..2 {
        out[2 + i] = pool_output_size(
            x[2 + i],
            a.kernel[i],
            a.strides[i],
            a.dilations[i],
            begin[i],
            end[i],
            a.ceil_mode,
        )?;
    }
    Ok(out)
}

fn reshape_shape(x: &[usize], target: &[i64], allow_zero: bool) -> ShapeResult<Vec<usize>> {
    let total = element_count(x).ok_or("input size overflows")?;
    let mut out = Vec::with_capacity(target.len());
    let mut inferred = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if inferred.is_none() => {
                inferred = Some(i);
                out.push(1);
            }
            0 if !allow_zero => out.push(
                *x.get(i)
                    .ok_or_else(|| format!("shape {target:?} copies a missing dimension"))?,
            ),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(format!("invalid reshape target {target:?}")),
        }
    }
    let known = element_count(&out).ok_or("reshape target overflows")?;
    if let Some(i) = inferred {
        if known == 0 || total % known != 0 {
            return Err(format!("cannot reshape {x:?} into {target:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!(
            "cannot reshape {x:?} ({total} elements) into {target:?}"
        ));
    }
    Ok(out)
}

fn check_axes(axes: &[usize], rank: usize) -> ShapeResult<()> {
    match axes.iter().find(|&&a| a >= rank) {
        Some(a) => Err(format!("axis {a} is out of range for rank {rank}")),
        None => Ok(()),
    }
}

impl Op {
    /// The output shape for these input shapes, or why they are not accepted.
    pub fn output_shape(&self, inputs: &[&[usize]]) -> ShapeResult<Vec<usize>> {
        let (min, max) = self.arity();
        if inputs.len() < min || inputs.len() > max {
            return Err(format!(
                "takes {} inputs, got {}",
                count_range(min, max),
                inputs.len()
            ));
        }
        let x = inputs[0];
        match self {
            Op::Conv(a) => {
                let out = conv_shape(a, x, inputs[1], inputs.get(2).copied())?;
                match (inputs.get(3), a.epilogue.pool) {
                    (Some(&r), _) if r != out.as_slice() => Err(format!(
                        "residual input {r:?} does not match the conv output {out:?}"
                    )),
                    // The residual would have to be pooled too; no pass fuses that.
                    (Some(_), Some(_)) => Err("a conv epilogue cannot both add a residual and \
                                               pool"
                        .into()),
                    (_, Some(pool)) => pool_shape(&pool.attrs(), &out),
                    (_, None) => Ok(out),
                }
            }
            Op::Pool(a) => pool_shape(a, x),
            Op::GlobalAveragePool => {
                if x.len() < 3 {
                    return Err(format!("input must have spatial axes, got {x:?}"));
                }
                Ok(x[..2]
                    .iter()
                    .copied()
                    .chain(x[2..].iter().map(|_| 1))
                    .collect())
            }
            Op::ReduceMean { axes, keep_dims } => {
                check_axes(axes, x.len())?;
                Ok(x.iter()
                    .enumerate()
                    .filter_map(|(i, &d)| match (axes.contains(&i), keep_dims) {
                        (false, _) => Some(d),
                        (true, true) => Some(1),
                        (true, false) => None,
                    })
                    .collect())
            }
            Op::Relu | Op::Clip { .. } | Op::Sigmoid | Op::Identity => Ok(x.to_vec()),
            Op::Lrn(a) => {
                require_rank(x, 4, "LRN input")?;
                if a.size == 0 {
                    return Err("LRN size must be positive".into());
                }
                Ok(x.to_vec())
            }
            Op::BatchNorm { .. } => {
                if x.len() < 2 {
                    return Err(format!("input must have a channel axis, got {x:?}"));
                }
                for (i, p) in inputs[1..].iter().enumerate() {
                    if *p != [x[1]] {
                        return Err(format!(
                            "parameter {} has shape {p:?}, expected [{}]",
                            i + 1,
                            x[1]
                        ));
                    }
                }
                Ok(x.to_vec())
            }
            Op::Binary(_) => broadcast_shapes(x, inputs[1]),
            Op::Concat { axis } => {
                check_axes(&[*axis], x.len())?;
                let mut out = x.to_vec();
                for s in &inputs[1..] {
                    let same_elsewhere = s.len() == x.len()
                        && s.iter()
                            .zip(x)
                            .enumerate()
                            .all(|(i, (a, b))| i == *axis || a == b);
                    if !same_elsewhere {
                        return Err(format!("cannot concatenate {x:?} and {s:?} on axis {axis}"));
                    }
                    out[*axis] = out[*axis].checked_add(s[*axis]).ok_or(OVERFLOW)?;
                }
                Ok(out)
            }
            Op::Gemm(a) => {
                let b = inputs[1];
                require_rank(x, 2, "Gemm A")?;
                require_rank(b, 2, "Gemm B")?;
                let (m, k) = if a.trans_a {
                    (x[1], x[0])
                } else {
                    (x[0], x[1])
                };
                let (kb, n) = if a.trans_b {
                    (b[1], b[0])
                } else {
                    (b[0], b[1])
                };
                if k != kb {
                    return Err(format!("A {x:?} and B {b:?} disagree on k ({k} vs {kb})"));
                }
                if let Some(c) = inputs.get(2) {
                    if broadcast_shapes(&[m, n], c)? != [m, n] {
                        return Err(format!("C {c:?} does not broadcast to [{m}, {n}]"));
                    }
                }
                Ok(vec![m, n])
            }
            Op::MatMul => {
                let b = inputs[1];
                if x.len() < 2 || b.len() < 2 {
                    return Err(format!("operands must have rank >= 2, got {x:?} and {b:?}"));
                }
                let (m, k) = (x[x.len() - 2], x[x.len() - 1]);
                let (kb, n) = (b[b.len() - 2], b[b.len() - 1]);
                if k != kb {
                    return Err(format!("{x:?} and {b:?} disagree on k ({k} vs {kb})"));
                }
                let mut out = broadcast_shapes(&x[..x.len() - 2], &b[..b.len() - 2])?;
                out.extend([m, n]);
                Ok(out)
            }
            Op::Flatten { axis } => {
                if *axis > x.len() {
                    return Err(format!("axis {axis} is out of range for {x:?}"));
                }
                let outer = element_count(&x[..*axis]).ok_or("size overflows")?;
                let inner = element_count(&x[*axis..]).ok_or("size overflows")?;
                Ok(vec![outer, inner])
            }
            Op::Reshape { shape, allow_zero } => reshape_shape(x, shape, *allow_zero),
            Op::Transpose { perm } => {
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                if sorted != (0..x.len()).collect::<Vec<_>>() {
                    return Err(format!(
                        "perm {perm:?} is not a permutation of {x:?}'s axes"
                    ));
                }
                Ok(perm.iter().map(|&p| x[p]).collect())
            }
            Op::Softmax { axis, .. } => {
                check_axes(&[*axis], x.len())?;
                Ok(x.to_vec())
            }
            Op::Pad { pads, .. } => {
                if pads.len() != 2 * x.len() {
                    return Err(format!("{} pads for rank {}", pads.len(), x.len()));
                }
                let r = x.len();
                (0..r)
                    .map(|i| {
                        x[i].checked_add(pads[i])
                            .and_then(|d| d.checked_add(pads[r + i]))
                            .ok_or_else(|| OVERFLOW.to_string())
                    })
                    .collect()
            }
            Op::ChannelSlice { start, end } => {
                if x.len() < 2 || start >= end || *end > x[1] {
                    return Err(format!(
                        "channels {start}..{end} are not a non-empty range of {x:?}"
                    ));
                }
                let mut out = x.to_vec();
                out[1] = end - start;
                Ok(out)
            }
            Op::Squeeze { axes } => {
                check_axes(axes, x.len())?;
                if let Some(a) = axes.iter().find(|&&a| x[a] != 1) {
                    return Err(format!("cannot squeeze axis {a} of {x:?}"));
                }
                Ok(x.iter()
                    .enumerate()
                    .filter(|(i, _)| !axes.contains(i))
                    .map(|(_, &d)| d)
                    .collect())
            }
            Op::Unsqueeze { axes } => {
                let rank = x.len() + axes.len();
                check_axes(axes, rank)?;
                let mut rest = x.iter();
                Ok((0..rank)
                    .map(|i| {
                        if axes.contains(&i) {
                            1
                        } else {
                            *rest.next().unwrap_or(&1)
                        }
                    })
                    .collect())
            }
        }
    }
}

/// `3`, `2 to 3` or `at least 1` (for an unbounded `max`): how many inputs an operator takes, in
/// error messages.
pub fn count_range(min: usize, max: usize) -> String {
    match (min, max) {
        (min, usize::MAX) => format!("at least {min}"),
        (min, max) if min == max => min.to_string(),
        (min, max) => format!("{min} to {max}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_mode_drops_a_window_starting_in_the_end_padding() {
        // 5 wide, kernel 3, stride 2, pads 1/1: the ceil'd 4th window would start in the pad.
        assert_eq!(pool_output_size(5, 3, 2, 1, 1, 1, true), Ok(3));
        // GoogLeNet's 3x3 stride-2 ceil pool on 14x14.
        assert_eq!(pool_output_size(14, 3, 2, 1, 0, 0, true), Ok(7));
        assert_eq!(pool_output_size(14, 3, 2, 1, 0, 0, false), Ok(6));
    }

    #[test]
    fn same_padding_puts_the_odd_pixel_where_asked() {
        let k = [4, 4];
        let upper = resolve_padding(&Padding::SameUpper, [6, 8], k, [1, 1], [1, 1]);
        let lower = resolve_padding(&Padding::SameLower, [6, 8], k, [1, 1], [1, 1]);
        assert_eq!(upper, ([1, 1], [2, 2]));
        assert_eq!(lower, ([2, 2], [1, 1]));
        let s2 = resolve_padding(&Padding::SameUpper, [6, 8], [3, 3], [2, 2], [1, 1]);
        assert_eq!(s2, ([0, 0], [1, 1]));
    }

    #[test]
    fn hostile_attributes_are_refused_without_panicking() {
        assert!(conv_output_size(5, 0, 1, 1, 0).is_err());
        assert!(conv_output_size(5, 3, 0, 1, 0).is_err());
        assert!(conv_output_size(5, usize::MAX, 1, 2, 0).is_err());
        assert!(pool_output_size(5, 3, 1, 1, usize::MAX, 1, false).is_err());
        let _ = resolve_padding(&Padding::SameUpper, [5, 5], [0, 0], [0, 0], [0, 0]);
        let max = usize::MAX;
        let _ = resolve_padding(&Padding::SameLower, [max, 5], [max, 1], [1, 1], [max, 1]);
        let pad = Op::Pad {
            pads: vec![max, 0],
            value: 0.0,
        };
        assert!(pad.output_shape(&[&[2]]).is_err());
        let concat = Op::Concat { axis: 0 };
        assert!(concat.output_shape(&[&[max], &[1]]).is_err());
    }

    #[test]
    fn channel_slices_and_pooling_convs_have_their_shapes() {
        let slice = |start, end| Op::ChannelSlice { start, end };
        assert_eq!(
            slice(2, 5).output_shape(&[&[2, 8, 3, 3]]),
            Ok(vec![2, 3, 3, 3])
        );
        assert!(slice(5, 5).output_shape(&[&[2, 8, 3, 3]]).is_err());
        assert!(slice(4, 9).output_shape(&[&[2, 8, 3, 3]]).is_err());
        assert!(slice(0, 1).output_shape(&[&[8]]).is_err());

        let mut attrs = ConvAttrs {
            kernel: [3, 3],
            strides: [1, 1],
            dilations: [1, 1],
            padding: Padding::NONE,
            groups: 1,
            epilogue: Default::default(),
        };
        attrs.epilogue.pool = Some(crate::MaxPoolStage {
            kernel: [3, 3],
            strides: [2, 2],
            dilations: [1, 1],
            padding: Padding::NONE,
            ceil_mode: true,
        });
        let x: &[usize] = &[1, 3, 16, 16];
        let w: &[usize] = &[4, 3, 3, 3];
        // 16 -> conv 14 -> ceil pool 7.
        let conv = Op::Conv(attrs.clone());
        assert_eq!(conv.output_shape(&[x, w]), Ok(vec![1, 4, 7, 7]));
        assert_eq!(
            Op::Conv(attrs.without_pool()).output_shape(&[x, w]),
            Ok(vec![1, 4, 14, 14])
        );
        attrs.epilogue.residual = true;
        let residual: &[usize] = &[1, 4, 14, 14];
        let err = Op::Conv(attrs).output_shape(&[x, w, &[4], residual]);
        assert!(err.is_err_and(|e| e.contains("residual")));
    }

    #[test]
    fn reshape_copies_and_infers() {
        assert_eq!(reshape_shape(&[2, 3, 4], &[0, -1], false), Ok(vec![2, 12]));
        assert!(reshape_shape(&[2, 3, 4], &[5, -1], false).is_err());
        assert_eq!(reshape_shape(&[0, 4], &[0, -1], false).ok(), None);
    }

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(
            broadcast_shapes(&[2, 3, 4, 4], &[3, 1, 1]),
            Ok(vec![2, 3, 4, 4])
        );
        assert!(broadcast_shapes(&[2, 3], &[4]).is_err());
    }
}
