//! Folding an inference batch normalization into the convolution before it.
//!
//! The convolution computes `c[o] = sum W[o] * x + b[o]` per output channel `o`, and the batch
//! norm after it `y[o] = gamma[o] * (c[o] - mean[o]) / sqrt(var[o] + eps) + beta[o]`. With
//! `s[o] = gamma[o] / sqrt(var[o] + eps)` that is
//!
//! ```text
//! y[o] = sum (s[o] * W[o]) * x + (s[o] * (b[o] - mean[o]) + beta[o])
//! ```
//!
//! one convolution with weights `W'[o] = s[o] * W[o]` and bias
//! `b'[o] = s[o] * (b[o] - mean[o]) + beta[o]` (`b = 0` when the convolution has none). `s` and
//! `b'` are formed in f64 so a tiny variance with a large epsilon, or the reverse, loses nothing
//! before the one rounding to f32.

use kestrel_graph::{Graph, GraphError, NodeId, Op, Tensor};

use crate::rewrite::{conv_read_only_by, Rewrite};

pub(crate) fn fold_batch_norms(graph: &Graph) -> Result<(Graph, usize), GraphError> {
    let mut rewrite = Rewrite::new(graph);
    let mut count = 0;
    for (i, bn) in graph.nodes.iter().enumerate() {
        let Op::BatchNorm { epsilon } = bn.op else {
            continue;
        };
        let Some((conv_id, conv, attrs)) =
            conv_read_only_by(graph, &rewrite, bn.inputs[0], NodeId(i))
        else {
            continue;
        };
        // An epilogue acts after the bias; the batch norm must see the plain convolution.
        if !attrs.epilogue.is_empty() {
            continue;
        }
        let params: Option<Vec<&Tensor>> = bn.inputs[1..]
            .iter()
            .map(|&id| graph.constant(id))
            .collect();
        let Some(&[gamma, beta, mean, var]) = params.as_deref() else {
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
        let Some((w, b)) = fold(weights, bias, gamma, beta, mean, var, epsilon) else {
            continue;
        };

        let w = rewrite.constant(format!("{}.folded_weights", conv.name), w);
        let b = rewrite.constant(format!("{}.folded_bias", conv.name), b);
        let op = conv.op.clone();
        rewrite.fuse(
            NodeId(i),
            conv.name.clone(),
            op,
            vec![conv.inputs[0], w, b],
            &[conv_id],
        );
        count += 1;
    }
    Ok((rewrite.apply()?, count))
}

/// The folded weights and bias, or `None` when the parameter shapes do not give one value per
/// output channel.
fn fold(
    weights: &Tensor,
    bias: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    epsilon: f32,
) -> Option<(Tensor, Tensor)> {
    let channels = *weights.shape().first()?;
    let per_channel = |t: &Tensor| t.shape() == [channels];
    if ![gamma, beta, mean, var].into_iter().all(per_channel) || !bias.is_none_or(per_channel) {
        return None;
    }
    let per_filter = weights.len() / channels.max(1);
    let mut w = weights.clone();
    let mut b = Tensor::zeros(vec![channels]);
    for o in 0..channels {
        let scale =
            f64::from(gamma.data()[o]) / (f64::from(var.data()[o]) + f64::from(epsilon)).sqrt();
        for v in &mut w.data_mut()[o * per_filter..(o + 1) * per_filter] {
            *v = (f64::from(*v) * scale) as f32;
        }
        let conv_bias = bias.map_or(0.0, |t| f64::from(t.data()[o]));
        b.data_mut()[o] =
            (scale * (conv_bias - f64::from(mean.data()[o])) + f64::from(beta.data()[o])) as f32;
    }
    Some((w, b))
}
