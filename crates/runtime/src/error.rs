use kestrel_graph::GraphError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The inputs given to a run do not fit the graph.
    #[error("input '{name}': {message}")]
    Input { name: String, message: String },
    /// The graph itself is inconsistent, or its shapes do not work for these inputs.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A node cannot run on the shapes it was given.
    #[error("node '{node}' ({op}): {message}")]
    Node {
        node: String,
        op: &'static str,
        message: String,
    },
    /// The worker threads could not be started.
    #[error("cannot start the worker threads: {0}")]
    Threads(String),
    /// A broken invariant of the runtime itself: a bug, not a problem with the input.
    #[error("internal error: {0}")]
    Internal(String),
}
