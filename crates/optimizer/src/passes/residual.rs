//! Folding a residual shortcut into a convolution: `Add(conv(x), shortcut)` becomes one
//! convolution whose epilogue adds `shortcut` to its result, so the sum is formed while the
//! output is written instead of in a second pass over memory.
//!
//! Only a shortcut of exactly the convolution's output shape folds: an Add that broadcasts
//! (a bias, a per-channel scale) is something else and stays.

use kestrel_graph::{BinaryOp, Epilogue, Graph, GraphError, NodeId, Op, Tensor};

use crate::rewrite::{conv_read_only_by, Rewrite};

pub(crate) fn fold_residual_adds(graph: &Graph) -> Result<(Graph, usize), GraphError> {
    let mut rewrite = Rewrite::new(graph);
    let mut count = 0;
    for (i, add) in graph.nodes.iter().enumerate() {
        if add.op != Op::Binary(BinaryOp::Add) || add.inputs[0] == add.inputs[1] {
            continue;
        }
        // Either operand may be the convolution; in a projection block both are, and the first
        // that qualifies takes the other as its shortcut.
        for (branch, shortcut) in [(0, 1), (1, 0)] {
            let (branch, shortcut) = (add.inputs[branch], add.inputs[shortcut]);
            let Some((conv_id, conv, attrs)) =
                conv_read_only_by(graph, &rewrite, branch, NodeId(i))
            else {
                continue;
            };
            let out_shape = &graph.value(add.output).shape;
            if !attrs.epilogue.is_empty()
                || &graph.value(branch).shape != out_shape
                || &graph.value(shortcut).shape != out_shape
            {
                continue;
            }
            let mut inputs = conv.inputs.clone();
            if inputs.len() == 2 {
                // The residual is the fourth input, so a conv without bias gets a zero one.
                let channels = graph.value(branch).shape[1];
                inputs.push(
                    rewrite.constant(format!("{}.bias", conv.name), Tensor::zeros(vec![channels])),
                );
            }
            inputs.push(shortcut);
            let mut attrs = attrs.clone();
            attrs.epilogue = Epilogue {
                residual: true,
                ..Epilogue::default()
            };
            rewrite.fuse(
                NodeId(i),
                conv.name.clone(),
                Op::Conv(attrs),
                inputs,
                &[conv_id],
            );
            count += 1;
            break;
        }
    }
    Ok((rewrite.apply()?, count))
}
