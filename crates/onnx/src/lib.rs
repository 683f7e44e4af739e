//! ONNX import: reads a model with tract-onnx's protobuf definitions and translates it into
//! Kestrel's graph IR.
//!
//! Shape computations that ONNX exporters leave in graphs (`Shape -> Gather -> Concat ->
//! Reshape` and friends) are folded here, so the IR only holds operators the runtime executes.
//! Tensor payloads are decoded by this crate, which checks every declared size against the bytes
//! actually present before allocating anything.

mod attributes;
mod fold;
mod tensor_proto;
mod translate;

use std::path::{Path, PathBuf};

use kestrel_graph::{Graph, GraphError};
use prost::Message;
use thiserror::Error;
use tract_onnx::pb::ModelProto;

#[derive(Debug, Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a valid ONNX model ({0}); the file may be truncated or not ONNX at all")]
    Decode(String),
    #[error("node '{node}': unsupported operator {op}")]
    UnsupportedOp { node: String, op: String },
    #[error("node '{node}' ({op}): {message}")]
    Node {
        node: String,
        op: String,
        message: String,
    },
    #[error("tensor '{name}': {message}")]
    Tensor { name: String, message: String },
    #[error("{0}")]
    Model(String),
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// Largest model file the importer reads (protobuf itself caps messages at 2 GiB).
const MAX_MODEL_BYTES: u64 = 2 << 30;

/// Imports the ONNX model at `path`. External tensor data is read from the model's folder.
pub fn import_file(path: &Path) -> Result<Graph, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_MODEL_BYTES {
        return Err(ImportError::Model(format!(
            "{} is {len} bytes, larger than any valid ONNX protobuf",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let dir = path.parent().map(|d| {
        if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        }
    });
    import_bytes(&bytes, dir)
}

/// Imports an ONNX model held in memory. `model_dir` is where external data may be found;
/// without it, a model with external data is refused.
pub fn import_bytes(bytes: &[u8], model_dir: Option<&Path>) -> Result<Graph, ImportError> {
    let model = ModelProto::decode(bytes).map_err(|e| ImportError::Decode(e.to_string()))?;
    translate::translate_model(&model, model_dir)
}
