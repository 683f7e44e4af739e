//! The rewrite passes, one pattern each.

mod activation;
mod batch_norm;
mod identity;
mod residual;

use kestrel_graph::{Graph, GraphError};

/// A named rewrite: returns the rewritten graph and how many matches it rewrote.
pub struct Pass {
    pub name: &'static str,
    pub run: fn(&Graph) -> Result<(Graph, usize), GraphError>,
}

/// Every pass, in the order [`crate::optimize`] runs them: batch norms fold into their
/// convolutions first, so the convolutions they leave can take a residual add and then an
/// activation into their epilogue.
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
        name: "fold-residual-add",
        run: residual::fold_residual_adds,
    },
    Pass {
        name: "fuse-activation",
        run: activation::fuse_activations,
    },
];
