//! Kestrel's graph intermediate representation.
//!
//! A [`Graph`] is a list of [`Node`]s in topological order over a table of [`Value`]s. Every
//! value is a graph input, a constant (weights) or the single output of one node. Activations
//! are NCHW `f32` tensors.
//!
//! Shapes are stored for a nominal run (every free input dimension set to its nominal size,
//! 1 for a symbolic batch). Operator attributes never depend on the batch size, so the runtime
//! re-infers concrete shapes with [`Graph::infer_shapes`] whenever the input shapes change.

mod error;
mod graph;
mod op;
mod shape;
mod tensor;

pub use error::GraphError;
pub use graph::{Dim, Graph, Node, NodeId, Value, ValueId, ValueKind};
pub use op::{
    Activation, BinaryOp, ConvAttrs, Epilogue, GemmAttrs, LrnAttrs, MaxPoolStage, Op, Padding,
    PoolAttrs, PoolKind,
};
pub use shape::{
    broadcast_shapes, conv_output_size, count_range, pool_output_size, resolve_padding,
};
pub use tensor::{element_count, SharedBytes, Tensor};
