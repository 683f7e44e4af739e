//! Fusing ReLU and Clip (ReLU6) into the convolution before them: the activation is applied as
//! the convolution writes its output, after any residual add it already does.

use kestrel_graph::{Activation, Graph, GraphError, NodeId, Op};

use crate::rewrite::{producer_id, sole_consumer, Rewrite};

pub(crate) fn fuse_activations(graph: &Graph) -> Result<(Graph, usize), GraphError> {
    let mut rewrite = Rewrite::new(graph);
    let mut count = 0;
    for (i, node) in graph.nodes.iter().enumerate() {
        let activation = match node.op {
            Op::Relu => Activation::Relu,
            Op::Clip { min, max } => Activation::Clip { min, max },
            _ => continue,
        };
        let Some(conv_id) = producer_id(graph, node.inputs[0]) else {
            continue;
        };
        let conv = graph.node(conv_id);
        let Op::Conv(attrs) = &conv.op else { continue };
        // The conv's own output must not be needed by anyone else, pre-activation.
        if attrs.epilogue.activation.is_some()
            || sole_consumer(graph, conv.output) != Some(NodeId(i))
            || rewrite.touched(conv_id)
        {
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
