//! Merging parallel 1x1 convolutions that read the same input (an inception module's 1x1
//! branch and its 3x3/5x5 reduce convolutions) into one wider 1x1 convolution: its output
//! channels are the branches' output channels one after another, and each branch becomes a
//! ChannelSlice of that output. One large matrix product replaces several narrow ones that each
//! read the whole input.
//!
//! A pointwise convolution computes each output channel from the input independently, so
//! stacking the filters (and biases) along the output axis stacks the outputs the same way.
//! Branches merge only when their epilogues agree (the same activation, no residual, no pool),
//! since one convolution applies one epilogue, and when they are plain 1x1 stride-1 unpadded
//! ungrouped convolutions with constant weights.

use kestrel_graph::{
    Activation, ConvAttrs, Graph, GraphError, NodeId, Op, Padding, Tensor, ValueId,
};

use crate::rewrite::Rewrite;

/// A 1x1 convolution that may merge: its node, its input and its activation.
struct Branch {
    node: NodeId,
    input: ValueId,
    activation: Option<Activation>,
    channels: usize,
}

pub(crate) fn merge_parallel_1x1(graph: &Graph) -> Result<(Graph, usize), GraphError> {
    // Branches grouped by (input, activation), each group in node order.
    let mut groups: Vec<Vec<Branch>> = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let Op::Conv(attrs) = &node.op else {
            continue;
        };
        if !mergeable(graph, attrs, &node.inputs) {
            continue;
        }
        let branch = Branch {
            node: NodeId(i),
            input: node.inputs[0],
            activation: attrs.epilogue.activation,
            channels: graph.value(node.output).shape[1],
        };
        match groups
            .iter_mut()
            .find(|g| g[0].input == branch.input && g[0].activation == branch.activation)
        {
            Some(group) => group.push(branch),
            None => groups.push(vec![branch]),
        }
    }

    let mut rewrite = Rewrite::new(graph);
    let mut count = 0;
    for group in groups.iter().filter(|g| g.len() > 1) {
        let nodes: Vec<_> = group.iter().map(|b| graph.node(b.node)).collect();
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let merged_name = names.join("+");
        let (weights, bias) = stack(graph, &nodes);
        let mut inputs = vec![group[0].input];
        inputs.push(rewrite.constant(format!("{merged_name}.weights"), weights));
        if let Some(bias) = bias {
            inputs.push(rewrite.constant(format!("{merged_name}.bias"), bias));
        }
        // The first branch's attributes, which all share but for the output channels.
        let op = nodes[0].op.clone();
        // Before the first branch: the shared input is defined there, and every branch's
        // readers come later.
        let merged = rewrite.insert_before(
            group[0].node,
            merged_name.clone(),
            op,
            inputs,
            merged_name.clone(),
        );
        let mut start = 0;
        for (branch, node) in group.iter().zip(&nodes) {
            let end = start + branch.channels;
            let slice = Op::ChannelSlice { start, end };
            rewrite.fuse(branch.node, node.name.clone(), slice, vec![merged], &[]);
            start = end;
        }
        log::debug!(
            "merge-parallel-1x1: {} convs reading '{}' merged into '{merged_name}' of {start} \
             channels",
            group.len(),
            graph.value(group[0].input).name
        );
        count += 1;
    }
    Ok((rewrite.apply()?, count))
}

/// Whether the convolution is a plain pointwise one with constant weights and bias.
fn mergeable(graph: &Graph, attrs: &ConvAttrs, inputs: &[ValueId]) -> bool {
    let unpadded = match attrs.padding {
        Padding::Explicit { begin, end } => begin == [0, 0] && end == [0, 0],
        // A 1x1 stride-1 window needs no padding to keep the size.
        Padding::SameUpper | Padding::SameLower => true,
    };
    attrs.kernel == [1, 1]
        && attrs.strides == [1, 1]
        && unpadded
        && attrs.groups == 1
        && !attrs.epilogue.residual
        && attrs.epilogue.pool.is_none()
        && inputs[1..].iter().all(|&id| graph.constant(id).is_some())
}

/// The branches' weights stacked along the output axis, and their biases likewise (zeros for
/// a branch without one; no bias if none has one).
fn stack(graph: &Graph, nodes: &[&kestrel_graph::Node]) -> (Tensor, Option<Tensor>) {
    let constant = |id: ValueId| graph.constant(id).expect("checked constant");
    let mut shape = constant(nodes[0].inputs[1]).shape().to_vec();
    let mut weights = Vec::new();
    let mut bias = Vec::new();
    let any_bias = nodes.iter().any(|n| n.inputs.len() > 2);
    for node in nodes {
        let w = constant(node.inputs[1]);
        weights.extend_from_slice(w.data());
        match node.inputs.get(2) {
            Some(&b) => bias.extend_from_slice(constant(b).data()),
            None => bias.extend(std::iter::repeat_n(0.0, w.shape()[0])),
        }
    }
    shape[0] = bias.len();
    let weights = Tensor::new(shape, weights).expect("stacked filters fill the shape");
    let bias = any_bias.then(|| Tensor::new(vec![bias.len()], bias).expect("one bias per filter"));
    (weights, bias)
}
