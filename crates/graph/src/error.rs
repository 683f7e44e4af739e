use thiserror::Error;

/// An inconsistency in a graph: a shape an operator cannot accept, or a broken reference.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum GraphError {
    #[error("node '{node}' ({op}): {message}")]
    Node {
        node: String,
        op: &'static str,
        message: String,
    },
    #[error("input '{name}': {message}")]
    Input { name: String, message: String },
    #[error("{0}")]
    Invalid(String),
}
