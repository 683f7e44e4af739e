//! Kestrel's runtime: executes a [`Graph`](kestrel_graph::Graph) in fp32 on the kernels crate.
//!
//! A [`Session`] owns a validated graph. Each run infers concrete shapes from the inputs (so a
//! symbolic batch can change between runs), executes the nodes in order, and frees every
//! activation after its last reader. Views (Flatten, Reshape, Squeeze, Unsqueeze, Identity)
//! move their input's buffer instead of copying it when they are its last reader.

mod error;
mod exec;
mod session;

pub use error::RuntimeError;
pub use session::{RunOutput, Session};
