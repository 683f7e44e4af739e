//! Identity nodes (ONNX Identity, and Dropout, which is the identity at inference) pass their
//! input through: their readers can read the input directly.

use kestrel_graph::{Graph, GraphError, NodeId, Op};

use crate::rewrite::Rewrite;

pub(crate) fn drop_identities(graph: &Graph) -> Result<(Graph, usize), GraphError> {
    let mut rewrite = Rewrite::new(graph);
    let mut count = 0;
    for (i, node) in graph.nodes.iter().enumerate() {
        // A graph output keeps its node, so it keeps its name.
        if node.op == Op::Identity && !graph.outputs.contains(&node.output) {
            rewrite.remove(NodeId(i), node.inputs[0]);
            count += 1;
        }
    }
    Ok((rewrite.apply()?, count))
}
