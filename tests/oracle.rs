//! tract as the fp32 oracle: running an ONNX model with it, comparing Kestrel's outputs with
//! its outputs, and finding the first layer where the two engines part ways.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use kestrel_graph::{Graph, Op, Tensor, ValueId, ValueKind};
use kestrel_runtime::Session;
use tract_onnx::prelude::{
    Datum, Framework, InferenceFact, InferenceModelExt, IntoRunnable, OutletId, TValue, TVec,
};

/// An ONNX model as a file or as bytes built by a test.
#[derive(Clone, Copy)]
pub enum Onnx<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

impl Onnx<'_> {
    pub fn import(self) -> Result<Graph, kestrel_onnx::ImportError> {
        match self {
            Onnx::File(path) => kestrel_onnx::import_file(path),
            Onnx::Bytes(bytes) => kestrel_onnx::import_bytes(bytes, None),
        }
    }

    fn describe(self) -> String {
        match self {
            Onnx::File(path) => path.display().to_string(),
            Onnx::Bytes(bytes) => format!("in-memory model of {} bytes", bytes.len()),
        }
    }
}

type Tract<T> = Result<T, String>;

fn tract_err(e: impl std::fmt::Display) -> String {
    format!("tract: {e:#}")
}

fn to_tract(t: &Tensor) -> Tract<TValue> {
    tract_onnx::prelude::Tensor::from_shape(t.shape(), t.data())
        .map(TValue::from)
        .map_err(tract_err)
}

fn from_tract(t: &tract_onnx::prelude::Tensor) -> Tract<Tensor> {
    let t = t.cast_to::<f32>().map_err(tract_err)?;
    let view = t.to_plain_array_view::<f32>().map_err(tract_err)?;
    let data: Vec<f32> = view.iter().copied().collect();
    Tensor::new(t.shape().to_vec(), data).ok_or_else(|| "tract: inconsistent tensor".into())
}

/// Runs the model with tract on `inputs` (whose shapes fix any symbolic dimension) and returns
/// the values named in `names` that tract knows, by name. Names tract does not know (values it
/// folded away or never had) are left out, unless `strict`, which makes them an error.
pub fn tract_run(
    model: Onnx,
    inputs: &[Tensor],
    names: &[String],
    strict: bool,
) -> Tract<HashMap<String, Tensor>> {
    let onnx = tract_onnx::onnx();
    let mut inference = match model {
        Onnx::File(path) => onnx.model_for_path(path),
        Onnx::Bytes(bytes) => onnx.model_for_read(&mut &bytes[..]),
    }
    .map_err(tract_err)?;
    for (i, t) in inputs.iter().enumerate() {
        let fact = InferenceFact::dt_shape(f32::datum_type(), t.shape());
        inference.set_input_fact(i, fact).map_err(tract_err)?;
    }
    let mut found = Vec::new();
    let mut outlets: Vec<OutletId> = Vec::new();
    let labels: HashMap<&str, OutletId> = inference
        .outlet_labels
        .iter()
        .map(|(o, l)| (l.as_str(), *o))
        .collect();
    for name in names {
        match labels.get(name.as_str()) {
            Some(&outlet) => {
                found.push(name.clone());
                outlets.push(outlet);
            }
            None if strict => return Err(format!("tract has no value named '{name}'")),
            None => {}
        }
    }
    inference
        .select_output_outlets(&outlets)
        .map_err(tract_err)?;
    let plan = inference
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(tract_err)?;
    let values: TVec<TValue> = inputs.iter().map(to_tract).collect::<Tract<_>>()?;
    let outputs = plan.run(values).map_err(tract_err)?;
    found
        .into_iter()
        .zip(outputs)
        .map(|(name, t)| Ok((name, from_tract(&t)?)))
        .collect()
}

/// Runs a model with tract and returns its declared outputs in order.
pub fn tract_outputs(model: Onnx, inputs: &[Tensor]) -> Tract<Vec<Tensor>> {
    let plan = tract_onnx::onnx();
    let mut inference = match model {
        Onnx::File(path) => plan.model_for_path(path),
        Onnx::Bytes(bytes) => plan.model_for_read(&mut &bytes[..]),
    }
    .map_err(tract_err)?;
    for (i, t) in inputs.iter().enumerate() {
        let fact = InferenceFact::dt_shape(f32::datum_type(), t.shape());
        inference.set_input_fact(i, fact).map_err(tract_err)?;
    }
    let plan = inference
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(tract_err)?;
    let values: TVec<TValue> = inputs.iter().map(to_tract).collect::<Tract<_>>()?;
    let outputs = plan.run(values).map_err(tract_err)?;
    outputs.iter().map(|t| from_tract(t)).collect()
}

/// How one Kestrel tensor compares with tract's.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub name: String,
    pub max_abs_err: f32,
    /// What the tolerance is relative to: the largest |value| of the reference.
    pub scale: f32,
    pub tolerance: f32,
    /// Set when the shapes differ (then the errors are meaningless).
    pub shape_mismatch: Option<(Vec<usize>, Vec<usize>)>,
}

impl Comparison {
    /// Compares `got` with `want`, allowing `rel_tol` times the largest |want|.
    pub fn new(name: &str, got: &Tensor, want: &Tensor, rel_tol: f32) -> Comparison {
        Comparison::with_tolerance(name, got, want, |scale| rel_tol * scale)
    }

    pub fn with_tolerance(
        name: &str,
        got: &Tensor,
        want: &Tensor,
        tolerance: impl Fn(f32) -> f32,
    ) -> Comparison {
        let scale = crate::max_abs(want.data());
        if got.shape() != want.shape() {
            return Comparison {
                name: name.to_string(),
                max_abs_err: f32::INFINITY,
                scale,
                tolerance: tolerance(scale),
                shape_mismatch: Some((got.shape().to_vec(), want.shape().to_vec())),
            };
        }
        Comparison {
            name: name.to_string(),
            max_abs_err: crate::max_abs_diff(got.data(), want.data()),
            scale,
            tolerance: tolerance(scale),
            shape_mismatch: None,
        }
    }

    pub fn ok(&self) -> bool {
        self.shape_mismatch.is_none() && self.max_abs_err <= self.tolerance
    }

    /// Error relative to the scale.
    pub fn relative(&self) -> f32 {
        self.max_abs_err / self.scale.max(f32::MIN_POSITIVE)
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((got, want)) = &self.shape_mismatch {
            return write!(
                f,
                "'{}': Kestrel shape {got:?}, tract shape {want:?}",
                self.name
            );
        }
        write!(
            f,
            "'{}': max |kestrel - tract| = {:.3e} (max |tract| = {:.3e}, relative {:.2e}, \
             tolerance {:.3e}){}",
            self.name,
            self.max_abs_err,
            self.scale,
            self.relative(),
            self.tolerance,
            if self.ok() { "" } else { "  <-- FAILS" }
        )
    }
}

/// Relative tolerance of whole-model comparisons: 1e-4 of the largest logit.
pub const MODEL_REL_TOL: f32 = 1e-4;

/// The result of comparing every output of a model (and the logits under each softmax).
pub struct ModelReport {
    pub model: String,
    pub comparisons: Vec<Comparison>,
    /// Kestrel's outputs, in the graph's order.
    pub outputs: Vec<Tensor>,
    /// The first diverging layer, filled in only when a comparison failed.
    pub divergence: Option<String>,
}

impl ModelReport {
    pub fn ok(&self) -> bool {
        self.comparisons.iter().all(Comparison::ok)
    }

    /// Largest relative error over the comparisons.
    pub fn worst_relative(&self) -> f32 {
        self.comparisons
            .iter()
            .map(Comparison::relative)
            .fold(0.0, f32::max)
    }

    /// Panics with every comparison and the divergence diagnosis unless all agree.
    pub fn assert_ok(&self) {
        eprintln!("{self}");
        assert!(
            self.ok(),
            "Kestrel and tract disagree on {}:\n{self}",
            self.model
        );
    }
}

impl std::fmt::Display for ModelReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}:", self.model)?;
        for c in &self.comparisons {
            writeln!(f, "  {c}")?;
        }
        if let Some(d) = &self.divergence {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

/// The value a softmax output normalises, if `id` is one.
fn softmax_input(graph: &Graph, id: ValueId) -> Option<ValueId> {
    match graph.producer(id) {
        Some(node) if matches!(node.op, Op::Softmax { .. }) => Some(node.inputs[0]),
        _ => None,
    }
}

/// Runs `model` with Kestrel and with tract on `inputs` and compares every output. Softmax
/// outputs are compared as probabilities (to `1e-4 * max(1, largest logit)`) and their logits
/// are compared too, relative to the largest logit. On a mismatch the report names the first
/// layer where Kestrel leaves tract.
pub fn compare_with_tract(model: Onnx, inputs: Vec<Tensor>) -> ModelReport {
    let label = model.describe();
    let graph = model
        .import()
        .unwrap_or_else(|e| panic!("Kestrel cannot import {label}: {e}"));
    let session = Session::new(graph.clone())
        .unwrap_or_else(|e| panic!("Kestrel cannot prepare {label}: {e}"));
    let logits: Vec<ValueId> = graph
        .outputs
        .iter()
        .filter_map(|&o| softmax_input(&graph, o))
        .collect();
    let run = session
        .run_keeping(inputs.clone(), &logits)
        .unwrap_or_else(|e| panic!("Kestrel cannot run {label}: {e}"));

    let name = |id: ValueId| graph.value(id).name.clone();
    let mut names: Vec<String> = graph.outputs.iter().map(|&o| name(o)).collect();
    names.extend(logits.iter().map(|&l| name(l)));
    let mut reference = tract_run(model, &inputs, &names, false)
        .unwrap_or_else(|e| panic!("tract cannot run {label}: {e}"));
    // The declared outputs must always be compared; look them up strictly.
    for output in &graph.outputs {
        assert!(
            reference.contains_key(&name(*output)),
            "tract has no output named '{}' in {label}",
            name(*output)
        );
    }

    let mut comparisons = Vec::new();
    for (&id, got) in graph.outputs.iter().zip(&run.outputs) {
        let want = &reference[&name(id)];
        match softmax_input(&graph, id) {
            Some(logit_id) => {
                let got_logits = &run.kept[&logit_id];
                let largest = reference
                    .get(&name(logit_id))
                    .map_or(1.0, |t| crate::max_abs(t.data()))
                    .max(1.0);
                comparisons.push(Comparison::with_tolerance(&name(id), got, want, |_| {
                    MODEL_REL_TOL * largest
                }));
                if let Some(want_logits) = reference.remove(&name(logit_id)) {
                    let label = format!("{} (logits under softmax)", name(logit_id));
                    comparisons.push(Comparison::new(
                        &label,
                        got_logits,
                        &want_logits,
                        MODEL_REL_TOL,
                    ));
                }
            }
            None => comparisons.push(Comparison::new(&name(id), got, want, MODEL_REL_TOL)),
        }
    }
    let mut report = ModelReport {
        model: label,
        comparisons,
        outputs: run.outputs,
        divergence: None,
    };
    if !report.ok() {
        report.divergence = Some(first_divergence(model, &session, &inputs, MODEL_REL_TOL));
    }
    report
}

/// Runs both engines keeping every intermediate value tract also has, and names the first
/// Kestrel node (in execution order) whose output differs from tract's by more than `rel_tol`
/// of that tensor's largest value, with the errors of that node's inputs for context.
pub fn first_divergence(model: Onnx, session: &Session, inputs: &[Tensor], rel_tol: f32) -> String {
    let graph = session.graph();
    let node_values: Vec<ValueId> = graph.nodes.iter().map(|n| n.output).collect();
    let names: Vec<String> = node_values
        .iter()
        .map(|&v| graph.value(v).name.clone())
        .collect();
    let reference = match tract_run(model, inputs, &names, false) {
        Ok(r) => r,
        Err(e) => return format!("layer-by-layer comparison impossible: {e}"),
    };
    let kept = match session.run_keeping(inputs.to_vec(), &node_values) {
        Ok(r) => r.kept,
        Err(e) => return format!("layer-by-layer comparison impossible: {e}"),
    };
    let compare = |id: ValueId| -> Option<Comparison> {
        let value = graph.value(id);
        let want = reference.get(&value.name)?;
        let got = match &value.kind {
            ValueKind::Constant(t) => t,
            _ => kept.get(&id)?,
        };
        Some(Comparison::new(&value.name, got, want, rel_tol))
    };

    let mut compared = 0;
    let mut worst: Option<(String, Comparison)> = None;
    for node in &graph.nodes {
        let Some(c) = compare(node.output) else {
            continue;
        };
        compared += 1;
        if !c.ok() {
            let mut msg = format!(
                "first divergence at node '{}' ({}), after {compared} matching layers: {c}",
                node.name,
                node.op.name()
            );
            for &input in &node.inputs {
                match compare(input) {
                    Some(ci) => write!(msg, "\n      input {ci}").unwrap(),
                    None => {
                        let v = graph.value(input);
                        write!(
                            msg,
                            "\n      input '{}' {:?}: not in tract",
                            v.name, v.shape
                        )
                        .unwrap()
                    }
                }
            }
            return msg;
        }
        if worst
            .as_ref()
            .is_none_or(|(_, w)| c.relative() > w.relative())
        {
            worst = Some((node.name.clone(), c));
        }
    }
    match worst {
        Some((node, c)) => format!(
            "no single layer exceeds the tolerance ({compared} compared); the largest relative \
             error is at node '{node}': {c}"
        ),
        None => "no intermediate value of Kestrel's graph is known to tract".into(),
    }
}
