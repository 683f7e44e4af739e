//! Fusing ReLU and Clip (ReLU6) into the convolution before them: the activation is applied as
//! the convolution writes its output, after any residual add it already does.

use kestrel_graph::{Activation, Graph, GraphError, NodeId, Op};

use crate::rewrite::{conv_read_only_by, Rewrite};

pub(crate) fn fuse_activations(graph: &Graph) -> Result<(Graph, usize), GraphError> {
    let mut rewrite = Rewrite::new(graph);
    let mut count = 0;
    for (i, node) in graph.nodes.iter().enumerate() {
        let activation = match node.op {
            Op::Relu => Activation::Relu,
            Op::Clip { min, max } => Activation::Clip { min, max },
            _ => continue,
        };
        // The conv's own output must not be needed by anyone else, pre-activation.
        let Some((conv_id, conv, attrs)) =
            conv_read_only_by(graph, &rewrite, node.inputs[0], NodeId(i))
        else {
            continue;
        };
        if attrs.epilogue.activation.is_some() {
            continue;
        }
        let mut attrs = attrs.clone();
        attrs.epilogue.activation = Some(activation);
        rewrite.fuse(
            NodeId(i),
            conv.name.clone(),
            Op::Conv(attrs),
            conv.inputs.clone(),
            &[conv_id],
        );
        count += 1;
    }
    Ok((rewrite.apply()?, count))
}
