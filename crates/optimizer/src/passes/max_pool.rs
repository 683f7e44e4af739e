//! Fusing a MaxPool into the convolution before it (usually Conv + ReLU + MaxPool, the ReLU
//! already in the conv's epilogue): the conv's epilogue gains a pool stage, and the runtime
//! computes the conv a band of rows at a time and pools each band, so the full-resolution
//! activation is never written out whole.
//!
//! Every max pool fuses: any kernel, stride and dilation, explicit or SAME padding, ceil mode
//! (padded cells act as -inf, as in the standalone pool). Average pools do not (a band would
//! need the divisor rules of the padded edges), nor does a pool after a conv that adds a
//! residual, or after a conv whose output someone else also reads.

use kestrel_graph::{Graph, GraphError, MaxPoolStage, NodeId, Op};

use crate::rewrite::{conv_read_only_by, Rewrite};

pub(crate) fn fuse_max_pools(graph: &Graph) -> Result<(Graph, usize), GraphError> {
    let mut rewrite = Rewrite::new(graph);
    let mut count = 0;
    for (i, pool) in graph.nodes.iter().enumerate() {
        let Op::Pool(pool_attrs) = &pool.op else {
            continue;
        };
        let Some(stage) = MaxPoolStage::from_attrs(pool_attrs) else {
            continue;
        };
        let Some((conv_id, conv, attrs)) =
            conv_read_only_by(graph, &rewrite, pool.inputs[0], NodeId(i))
        else {
            continue;
        };
        if attrs.epilogue.residual || attrs.epilogue.pool.is_some() {
            continue;
        }
        let mut attrs = attrs.clone();
        attrs.epilogue.pool = Some(stage);
        log::debug!(
            "fuse-max-pool: pool '{}' {:?} -> {:?} fused into conv '{}'",
            pool.name,
            graph.value(pool.inputs[0]).shape,
            graph.value(pool.output).shape,
            conv.name
        );
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
