use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use kestrel_graph::{Dim, ValueKind};

use crate::model::load_graph;
use crate::npy;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (.onnx or compiled .kst).
    model: PathBuf,
    /// An input as NAME=FILE.npy (float32); a bare FILE.npy when the graph has one input.
    #[arg(long = "input", short = 'i', required = true)]
    inputs: Vec<String>,
    /// Folder for the outputs, one NAME.npy per graph output.
    #[arg(long, short = 'o')]
    output_dir: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let graph = load_graph(&args.model)?;
    let names: Vec<String> = graph
        .inputs
        .iter()
        .map(|&id| graph.value(id).name.clone())
        .collect();
    let mut given: Vec<Option<kestrel_graph::Tensor>> = vec![None; names.len()];
    for spec in &args.inputs {
        let (name, file) = match spec.split_once('=') {
            Some((n, f)) => (n.to_string(), f),
            None if names.len() == 1 => (names[0].clone(), spec.as_str()),
            None => bail!(
                "--input {spec:?}: write NAME=FILE.npy; the graph's inputs are {}",
                names.join(", ")
            ),
        };
        let Some(index) = names.iter().position(|n| *n == name) else {
            bail!(
                "--input {name:?}: the graph has no such input (its inputs: {})",
                names.join(", ")
            );
        };
        if given[index].is_some() {
            bail!("--input {name:?} is given twice");
        }
        let tensor = npy::read(file.as_ref())?;
        check_shape(&graph, index, tensor.shape())?;
        given[index] = Some(tensor);
    }
    let mut inputs = Vec::with_capacity(names.len());
    for (name, tensor) in names.iter().zip(given) {
        match tensor {
            Some(t) => inputs.push(t),
            None => bail!("input {name:?} is missing: pass --input {name}=FILE.npy"),
        }
    }
    let outputs_names: Vec<String> = graph
        .outputs
        .iter()
        .map(|&id| graph.value(id).name.clone())
        .collect();
    let mut files = std::collections::HashMap::new();
    for name in &outputs_names {
        if let Some(other) = files
            .insert(file_name(name), name)
            .filter(|&other| other != name)
        {
            bail!(
                "outputs {other:?} and {name:?} would both be written to {}.npy",
                file_name(name)
            );
        }
    }
    let session = crate::model::new_session(graph)?;
    let outputs = session.run(inputs)?;
    std::fs::create_dir_all(&args.output_dir)
        .with_context(|| format!("cannot create {}", args.output_dir.display()))?;
    for (name, tensor) in outputs_names.iter().zip(&outputs) {
        let path = args.output_dir.join(format!("{}.npy", file_name(name)));
        npy::write(&path, tensor)?;
        println!("{} {:?} -> {}", name, tensor.shape(), path.display());
    }
    Ok(())
}

/// Checks a tensor against the declared dimensions of input `index`.
fn check_shape(graph: &kestrel_graph::Graph, index: usize, shape: &[usize]) -> Result<()> {
    let value = graph.value(graph.inputs[index]);
    let ValueKind::Input { dims } = &value.kind else {
        return Ok(());
    };
    let fits = dims.len() == shape.len()
        && dims
            .iter()
            .zip(shape)
            .all(|(d, &s)| !matches!(d, Dim::Fixed(f) if *f != s));
    if !fits {
        let declared: Vec<String> = dims.iter().map(Dim::to_string).collect();
        bail!(
            "input {:?}: the file has shape {shape:?}, the graph expects [{}]",
            value.name,
            declared.join(", ")
        );
    }
    Ok(())
}

/// A tensor name as a file name: path separators and other awkward characters become `_`.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
