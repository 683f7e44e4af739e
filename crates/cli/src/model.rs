//! Loading a model file and reading what its input expects.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};
use kestrel_graph::{Dim, Graph, ValueKind};
use kestrel_optimizer::Report;
use kestrel_runtime::Session;

use crate::internal::Internal;

pub struct Model {
    pub session: Session,
    /// What the optimizer did, unless `--no-optimize` was given or the model is compiled.
    pub optimized: Option<Report>,
    /// Whether the model came from a compiled `.kst` file (optimized when it was compiled).
    pub compiled: bool,
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
        let (graph, optimized) = load_graph_with_report(path)?;
        let session =
            new_session(graph).with_context(|| format!("{}: invalid graph", path.display()))?;
        Ok(Model {
            session,
            optimized,
            compiled: is_compiled(path),
        })
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

/// Whether loaded graphs go through the optimizer; `--no-optimize` turns it off for the whole
/// process, to compare against the graph as imported.
static OPTIMIZE: AtomicBool = AtomicBool::new(true);

pub fn disable_optimization() {
    OPTIMIZE.store(false, Ordering::Relaxed);
}

/// Threads a session runs on; 0 means every core.
static THREADS: AtomicUsize = AtomicUsize::new(0);

pub fn set_threads(threads: usize) {
    THREADS.store(threads, Ordering::Relaxed);
}

/// A session on the thread count `--threads` asked for (every core by default).
pub fn new_session(graph: Graph) -> Result<Session, kestrel_runtime::RuntimeError> {
    match THREADS.load(Ordering::Relaxed) {
        0 => Session::new(graph),
        n => Session::with_threads(graph, n),
    }
}

/// The model's graph, optimized unless `--no-optimize` was given.
pub fn load_graph(path: &Path) -> Result<Graph> {
    Ok(load_graph_with_report(path)?.0)
}

/// Whether `path` is a compiled `.kst` graph: by its magic bytes, else by its extension (so a
/// damaged `.kst` file still gets the `.kst` loader's diagnosis).
pub fn is_compiled(path: &Path) -> bool {
    kestrel_format::is_kst_file(path) || path.extension().is_some_and(|e| e == "kst")
}

/// The model's graph and, when it was optimized now, what the optimizer did. A compiled
/// `.kst` graph was optimized when it was compiled and is returned as stored, its weights
/// still in the file's memory map.
pub fn load_graph_with_report(path: &Path) -> Result<(Graph, Option<Report>)> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        // A directory, FIFO or device: reading one would fail late, block or never end.
        bail!("{}: not a regular file", path.display());
    }
    if is_compiled(path) {
        return Ok((kestrel_format::load_file(path)?, None));
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let graph = match ext {
        "onnx" => kestrel_onnx::import_file(path).with_context(|| path.display().to_string())?,
        _ => bail!(
            "{}: unknown model format (expected a .onnx or .kst file)",
            path.display()
        ),
    };
    if !OPTIMIZE.load(Ordering::Relaxed) {
        return Ok((graph, None));
    }
    // The importer validated the graph, so an optimizer failure is a bug, not bad input.
    let (graph, report) = kestrel_optimizer::optimize(&graph)
        .context(Internal::context("the optimizer broke a valid graph"))
        .with_context(|| format!("{}: optimizing the graph", path.display()))?;
    Ok((graph, Some(report)))
}
