//! Kestrel's runtime: executes a [`Graph`](kestrel_graph::Graph) in fp32 on the kernels crate.
//!
//! A [`Session`] owns a validated graph and a pool of worker threads. The first run on a set of
//! input shapes infers every value's shape (so a symbolic batch can change between runs) and
//! makes a static [`MemoryPlan`]: all activations in one arena, reused by every later run with
//! those shapes, so runs allocate no activation memory. Nodes execute in order, each kernel
//! splitting its work across the threads.

mod error;
mod exec;
mod plan;
mod session;

pub use error::RuntimeError;
pub use plan::{MemoryPlan, Slot};
pub use session::{default_threads, RunOutput, Session};
