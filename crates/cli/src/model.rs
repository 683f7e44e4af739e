//! Loading a model file and reading what its input expects.

use std::path::Path;

use anyhow::{bail, Context, Result};
use kestrel_graph::{Dim, Graph, ValueKind};
use kestrel_runtime::Session;

pub struct Model {
    pub session: Session,
}

/// What an image classifier's single input looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInput {
    pub width: u32,
    pub height: u32,
    pub channels_last: bool,
}

impl Model {
    pub fn load(path: &Path) -> Result<Model> {
        let graph = load_graph(path)?;
        let session =
            Session::new(graph).with_context(|| format!("{}: invalid graph", path.display()))?;
        Ok(Model { session })
    }

    pub fn graph(&self) -> &Graph {
        self.session.graph()
    }

    /// The image geometry of the model's input: NCHW `[N, 3, H, W]` or NHWC `[N, H, W, 3]`.
    pub fn image_input(&self) -> Result<ImageInput> {
        let graph = self.graph();
        if graph.inputs.len() != 1 {
            bail!(
                "the model takes {} inputs; image commands need exactly one image input \
                 (use `kestrel run` for other graphs)",
                graph.inputs.len()
            );
        }
        let value = graph.value(graph.inputs[0]);
        let ValueKind::Input { dims } = &value.kind else {
            bail!("input '{}' is not a graph input", value.name);
        };
        let fixed = |d: &Dim| match d {
            Dim::Fixed(n) => Some(*n),
            Dim::Free(_) => None,
        };
        let declared = || {
            dims.iter()
                .map(Dim::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if dims.len() != 4 {
            bail!(
                "input '{}' has shape [{}], not an image batch",
                value.name,
                declared()
            );
        }
        let size = |d: &Dim| {
            fixed(d)
                .and_then(|n| u32::try_from(n).ok())
                .with_context(|| {
                    format!(
                        "input '{}' has shape [{}]: its height and width must be fixed",
                        value.name,
                        declared()
                    )
                })
        };
        match (fixed(&dims[1]), fixed(&dims[3])) {
            (Some(3), _) => Ok(ImageInput {
                height: size(&dims[2])?,
                width: size(&dims[3])?,
                channels_last: false,
            }),
            (_, Some(3)) => Ok(ImageInput {
                height: size(&dims[1])?,
                width: size(&dims[2])?,
                channels_last: true,
            }),
            _ => bail!(
                "input '{}' has shape [{}]: expected 3 colour channels (NCHW or NHWC)",
                value.name,
                declared()
            ),
        }
    }
}

/// Reads an ONNX model into Kestrel's IR.
pub fn load_graph(path: &Path) -> Result<Graph> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "onnx" => kestrel_onnx::import_file(path).with_context(|| path.display().to_string()),
        _ => bail!(
            "{}: unknown model format (expected a .onnx file)",
            path.display()
        ),
    }
}
