//! The rewrite passes, one pattern each.

mod activation;
mod batch_norm;
mod identity;
mod max_pool;
mod merge_1x1;
mod residual;
mod scale_shift;

use kestrel_graph::{Graph, GraphError};

/// A named rewrite: returns the rewritten graph and how many matches it rewrote.
pub struct Pass {
    pub name: &'static str,
    pub run: fn(&Graph) -> Result<(Graph, usize), GraphError>,
}

/// Every pass, in the order [`crate::optimize`] runs them: batch norms and constant scales and
/// shifts fold into their convolutions first, so the convolutions they leave can take a
/// residual add, then an activation, then a max pool into their epilogue; parallel 1x1
/// convolutions merge last, once their epilogues are final.
pub const PASSES: &[Pass] = &[
    Pass {
        name: "drop-identity",
        run: identity::drop_identities,
    },
    Pass {
        name: "fold-batch-norm",
        run: batch_norm::fold_batch_norms,
    },
    Pass {
        name: "fold-mul-add",
        run: scale_shift::fold_constant_mul_adds,
    },
    Pass {
        name: "fold-residual-add",
        run: residual::fold_residual_adds,
    },
    Pass {
        name: "fuse-activation",
        run: activation::fuse_activations,
    },
    Pass {
        name: "fuse-max-pool",
        run: max_pool::fuse_max_pools,
    },
    Pass {
        name: "merge-parallel-1x1",
        run: merge_1x1::merge_parallel_1x1,
    },
];
