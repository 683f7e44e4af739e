use std::collections::HashMap;
use std::time::{Duration, Instant};

use kestrel_graph::{Graph, Tensor, ValueId, ValueKind};

use crate::error::RuntimeError;
use crate::exec;

/// Largest tensor a run may allocate, in elements (1 GiB of f32). Shapes come from the inputs
/// a caller passes and from attributes in the model file, so this bounds what a hostile input
/// or model can make us allocate. The largest activation of the classic nets is VGG's first
/// (64 x 224 x 224 per image), so this still leaves room for batches of a few hundred images.
const MAX_TENSOR_ELEMENTS: usize = 1 << 28;

/// A graph ready to run.
#[derive(Debug)]
pub struct Session {
    graph: Graph,
    /// For each value, the index of the last node that reads it (`None` if no node does).
    last_reader: Vec<Option<usize>>,
}

/// The outputs of a run, plus any intermediate values the caller asked to keep.
#[derive(Debug)]
pub struct RunOutput {
    pub outputs: Vec<Tensor>,
    pub kept: HashMap<ValueId, Tensor>,
}

impl Session {
    pub fn new(graph: Graph) -> Result<Session, RuntimeError> {
        graph.validate()?;
        let mut last_reader = vec![None; graph.values.len()];
        for (i, node) in graph.nodes.iter().enumerate() {
            for input in &node.inputs {
                last_reader[input.0] = Some(i);
            }
        }
        Ok(Session { graph, last_reader })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Runs the graph on `inputs` (in the order of the graph's inputs) and returns its outputs.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        Ok(self.run_keeping(inputs, &[])?.outputs)
    }

    /// Like [`Session::run`], and also returns the values listed in `keep` (any value of the
    /// graph: the feature map a CAM needs, or every layer for a layer-by-layer comparison).
    pub fn run_keeping(
        &self,
        inputs: Vec<Tensor>,
        keep: &[ValueId],
    ) -> Result<RunOutput, RuntimeError> {
        self.run_inner(inputs, keep, None)
    }

    /// Like [`Session::run`], and also returns how long each node took, in node order.
    pub fn run_profiled(
        &self,
        inputs: Vec<Tensor>,
    ) -> Result<(Vec<Tensor>, Vec<Duration>), RuntimeError> {
        let mut times = Vec::with_capacity(self.graph.nodes.len());
        let outputs = self.run_inner(inputs, &[], Some(&mut times))?.outputs;
        Ok((outputs, times))
    }

    fn run_inner(
        &self,
        inputs: Vec<Tensor>,
        keep: &[ValueId],
        mut profile: Option<&mut Vec<Duration>>,
    ) -> Result<RunOutput, RuntimeError> {
        let graph = &self.graph;
        if inputs.len() != graph.inputs.len() {
            let names: Vec<&str> = graph
                .inputs
                .iter()
                .map(|&id| graph.value(id).name.as_str())
                .collect();
            return Err(RuntimeError::Input {
                name: names.join(", "),
                message: format!(
                    "the graph takes {} input(s), got {}",
                    names.len(),
                    inputs.len()
                ),
            });
        }
        let input_shapes: Vec<&[usize]> = inputs.iter().map(Tensor::shape).collect();
        let shapes = graph.infer_shapes(&input_shapes)?;
        self.check_sizes(&shapes)?;

        let mut pinned = vec![false; graph.values.len()];
        for &id in keep.iter().chain(&graph.outputs) {
            if let Some(p) = pinned.get_mut(id.0) {
                *p = true;
            }
        }
        let mut slots: Vec<Option<Tensor>> = vec![None; graph.values.len()];
        for (&id, tensor) in graph.inputs.iter().zip(inputs) {
            slots[id.0] = Some(tensor);
        }

        for (index, node) in graph.nodes.iter().enumerate() {
            let started = profile.is_some().then(Instant::now);
            let out_shape = &shapes[node.output.0];
            let output = if node.op.is_view() {
                let source = node.inputs[0];
                let movable = !pinned[source.0]
                    && self.last_reader[source.0] == Some(index)
                    && slots[source.0].is_some();
                let tensor = if movable {
                    slots[source.0].take().expect("checked above")
                } else {
                    value(graph, &slots, source).clone()
                };
                tensor.reshaped(out_shape.clone())
            } else {
                let args: Vec<&Tensor> = node
                    .inputs
                    .iter()
                    .map(|&id| value(graph, &slots, id))
                    .collect();
                exec::execute(&node.op, &args, out_shape)
                    .map_err(|message| RuntimeError::Node {
                        node: node.name.clone(),
                        op: node.op.name(),
                        message,
                    })
                    .map(Some)?
            };
            let output = output.ok_or_else(|| RuntimeError::Node {
                node: node.name.clone(),
                op: node.op.name(),
                message: format!("cannot view its input as {out_shape:?}"),
            })?;
            slots[node.output.0] = Some(output);
            for &input in &node.inputs {
                if !pinned[input.0] && self.last_reader[input.0] == Some(index) {
                    slots[input.0] = None;
                }
            }
            if let (Some(times), Some(started)) = (profile.as_deref_mut(), started) {
                times.push(started.elapsed());
            }
        }

        let outputs = graph
            .outputs
            .iter()
            .map(|&id| take_or_clone(graph, &mut slots, id, keep))
            .collect();
        let kept = keep
            .iter()
            .filter(|id| id.0 < graph.values.len())
            .map(|&id| (id, value(graph, &slots, id).clone()))
            .collect();
        Ok(RunOutput { outputs, kept })
    }

    fn check_sizes(&self, shapes: &[Vec<usize>]) -> Result<(), RuntimeError> {
        for (value, shape) in self.graph.values.iter().zip(shapes) {
            let elements = shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= MAX_TENSOR_ELEMENTS);
            if elements.is_some() {
                continue;
            }
            let message = format!(
                "its output {shape:?} would exceed the limit of {MAX_TENSOR_ELEMENTS} elements \
                 per tensor"
            );
            return Err(match &value.kind {
                ValueKind::Node(n) => {
                    let node = self.graph.node(*n);
                    RuntimeError::Node {
                        node: node.name.clone(),
                        op: node.op.name(),
                        message,
                    }
                }
                _ => RuntimeError::Input {
                    name: value.name.clone(),
                    message: format!(
                        "shape {shape:?} exceeds the limit of {MAX_TENSOR_ELEMENTS} elements"
                    ),
                },
            });
        }
        Ok(())
    }
}

fn value<'a>(graph: &'a Graph, slots: &'a [Option<Tensor>], id: ValueId) -> &'a Tensor {
    match &graph.value(id).kind {
        ValueKind::Constant(tensor) => tensor,
        // Validation guarantees every value is produced before it is read, and values are
        // only freed after their last reader.
        _ => slots[id.0].as_ref().expect("value read after it was freed"),
    }
}

fn take_or_clone(
    graph: &Graph,
    slots: &mut [Option<Tensor>],
    id: ValueId,
    keep: &[ValueId],
) -> Tensor {
    let shared = keep.contains(&id) || graph.outputs.iter().filter(|&&o| o == id).count() > 1;
    match (&graph.value(id).kind, shared) {
        (ValueKind::Constant(tensor), _) => tensor.clone(),
        (_, false) => slots[id.0].take().expect("graph outputs are never freed"),
        (_, true) => slots[id.0].clone().expect("graph outputs are never freed"),
    }
}
