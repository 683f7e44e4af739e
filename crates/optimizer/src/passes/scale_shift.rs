//! Folding a multiplication or addition by a per-channel constant into the convolution before
//! it (the scale and shift some exporters leave after a batch norm, or instead of one).
//!
//! The convolution computes `c[o] = sum W[o] * x + b[o]` per output channel `o`. A constant
//! `s` or `t` holding one value per channel (or a single value for all of them) then gives
//!
//! ```text
//! Mul: y[o] = s[o] * c[o] = sum (s[o] * W[o]) * x + s[o] * b[o]
//! Add: y[o] = c[o] + t[o] = sum W[o] * x + (b[o] + t[o])
//! ```
//!
//! one convolution with weights `W'[o] = s[o] * W[o]` and bias `b'[o] = s[o] * b[o]`, or the
//! same weights and bias `b'[o] = b[o] + t[o]` (`b = 0` when the convolution has none). Products
//! and sums are formed in f64 and rounded once.
//!
//! Only a constant that is the same at every spatial position and every image folds: one
//! broadcasting over height, width or batch would need a different bias per position, which a
//! convolution does not have. Non-finite constants stay, since `0 * inf` inside the sum is not
//! `inf` outside it.

use kestrel_graph::{BinaryOp, Graph, GraphError, NodeId, Op, Tensor};

use crate::rewrite::{conv_read_only_by, Rewrite};

/// Folds until no match is left: a conv followed by Mul then Add folds the Mul in one round
/// and the Add, now right after the folded conv, in the next.
pub(crate) fn fold_constant_mul_adds(graph: &Graph) -> Result<(Graph, usize), GraphError> {
    let mut current = graph.clone();
    let mut total = 0;
    loop {
        let (next, count) = fold_round(&current)?;
        current = next;
        total += count;
        if count == 0 {
            return Ok((current, total));
        }
    }
}

fn fold_round(graph: &Graph) -> Result<(Graph, usize), GraphError> {
    let mut rewrite = Rewrite::new(graph);
    let mut count = 0;
    for (i, node) in graph.nodes.iter().enumerate() {
        let Op::Binary(op @ (BinaryOp::Mul | BinaryOp::Add)) = node.op else {
            continue;
        };
        // Both operations commute: the conv may be either operand.
        for (branch, other) in [(0, 1), (1, 0)] {
            let (branch, other) = (node.inputs[branch], node.inputs[other]);
            let Some((conv_id, conv, attrs)) =
                conv_read_only_by(graph, &rewrite, branch, NodeId(i))
            else {
                continue;
            };
            // An epilogue acts after the bias; the constant must see the plain convolution.
            let conv_shape = &graph.value(branch).shape;
            if !attrs.epilogue.is_empty() || &graph.value(node.output).shape != conv_shape {
                continue;
            }
            let Some(factors) = graph
                .constant(other)
                .and_then(|t| per_channel(t, conv_shape))
            else {
                continue;
            };
            let Some(weights) = graph.constant(conv.inputs[1]) else {
                continue;
            };
            let bias = match conv.inputs.get(2) {
                Some(&id) => match graph.constant(id) {
                    Some(t) => Some(t),
                    None => continue,
                },
                None => None,
            };
            let mut inputs = vec![conv.inputs[0]];
            match op {
                BinaryOp::Mul => {
                    let (w, b) = scale(weights, bias, &factors);
                    inputs.push(rewrite.constant(format!("{}.scaled_weights", conv.name), w));
                    if let Some(b) = b {
                        inputs.push(rewrite.constant(format!("{}.scaled_bias", conv.name), b));
                    }
                }
                _ => {
                    let b = shift(bias, &factors);
                    inputs.push(conv.inputs[1]);
                    inputs.push(rewrite.constant(format!("{}.shifted_bias", conv.name), b));
                }
            }
            log::debug!(
                "fold-mul-add: {} '{}' by {:?} folded into conv '{}'",
                node.op.name(),
                node.name,
                graph.value(other).shape,
                conv.name
            );
            rewrite.fuse(
                NodeId(i),
                conv.name.clone(),
                conv.op.clone(),
                inputs,
                &[conv_id],
            );
            count += 1;
            break;
        }
    }
    Ok((rewrite.apply()?, count))
}

/// One finite value per output channel of an NCHW `conv_shape`, when `constant` broadcasts
/// against it along the channel axis alone (a scalar, `[C]` only if it lines up with the
/// channel axis, `[C, 1, 1]`, `[1, C, 1, 1]`, ...).
fn per_channel(constant: &Tensor, conv_shape: &[usize]) -> Option<Vec<f64>> {
    let (shape, rank) = (constant.shape(), conv_shape.len());
    if rank != 4 || shape.len() > rank {
        return None;
    }
    let channels = conv_shape[1];
    // The constant's dimensions right-aligned against [N, C, H, W].
    let dim = |axis: usize| {
        let skipped = rank - shape.len();
        if axis < skipped {
            1
        } else {
            shape[axis - skipped]
        }
    };
    let channel_only = (0..rank).all(|a| dim(a) == 1 || (a == 1 && dim(a) == channels));
    let data = constant.data();
    if !channel_only || !data.iter().all(|v| v.is_finite()) {
        return None;
    }
    Some(
        (0..channels)
            .map(|o| f64::from(if data.len() == 1 { data[0] } else { data[o] }))
            .collect(),
    )
}

/// `W'[o] = s[o] * W[o]` and `b'[o] = s[o] * b[o]`.
fn scale(weights: &Tensor, bias: Option<&Tensor>, s: &[f64]) -> (Tensor, Option<Tensor>) {
    let per_filter = weights.len() / s.len().max(1);
    let mut w = weights.clone();
    for (filter, &factor) in w.data_mut().chunks_mut(per_filter.max(1)).zip(s) {
        for v in filter {
            *v = (f64::from(*v) * factor) as f32;
        }
    }
    let b = bias.map(|bias| {
        let mut b = bias.clone();
        for (v, &factor) in b.data_mut().iter_mut().zip(s) {
            *v = (f64::from(*v) * factor) as f32;
        }
        b
    });
    (w, b)
}

/// `b'[o] = b[o] + t[o]`.
fn shift(bias: Option<&Tensor>, t: &[f64]) -> Tensor {
    let data = t
        .iter()
        .enumerate()
        .map(|(o, &shift)| (bias.map_or(0.0, |b| f64::from(b.data()[o])) + shift) as f32)
        .collect();
    Tensor::new(vec![t.len()], data).expect("one bias per channel")
}
