use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use kestrel_graph::{Graph, Op, Tensor, ValueId, ValueKind};
use kestrel_kernels as k;

use crate::error::RuntimeError;
use crate::exec::{self, Operand};
use crate::plan::MemoryPlan;

/// Largest tensor a run may allocate, in elements (1 GiB of f32). Shapes come from the inputs
/// a caller passes and from attributes in the model file, so this bounds what a hostile input
/// or model can make us allocate. The largest activation of the classic nets is VGG's first
/// (64 x 224 x 224 per image), so this still leaves room for batches of a few hundred images.
const MAX_TENSOR_ELEMENTS: usize = 1 << 28;

/// A graph ready to run.
#[derive(Debug)]
pub struct Session {
    graph: Graph,
    /// The threads every run executes on; kernels split their output channels across them.
    pool: rayon::ThreadPool,
    /// Per node, a convolution's constant weights packed for the selected kernels, done once
    /// here so that no run repacks them.
    packed_conv_weights: Vec<Option<k::PackedConvWeights<'static>>>,
    /// The memory plan and arena of the last run, reused while the input shapes stay the same.
    prepared: Mutex<Option<Prepared>>,
}

/// The outputs of a run, plus any intermediate values the caller asked to keep.
#[derive(Debug)]
pub struct RunOutput {
    pub outputs: Vec<Tensor>,
    pub kept: HashMap<ValueId, Tensor>,
}

impl Session {
    /// A session running on every core of the machine.
    pub fn new(graph: Graph) -> Result<Session, RuntimeError> {
        Session::with_threads(graph, default_threads())
    }

    /// A session whose runs use `threads` threads (at least 1). One thread runs every kernel
    /// on a single worker with no splitting.
    pub fn with_threads(graph: Graph, threads: usize) -> Result<Session, RuntimeError> {
        graph.validate()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("kestrel-{i}"))
            .build()
            .map_err(|e| RuntimeError::Threads(e.to_string()))?;
        let packed_conv_weights = pack_conv_weights(&graph);
        Ok(Session {
            graph,
            pool,
            packed_conv_weights,
            prepared: Mutex::new(None),
        })
    }

    /// Threads each run uses.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
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
        profile: Option<&mut Vec<Duration>>,
    ) -> Result<RunOutput, RuntimeError> {
        self.pool
            .install(|| self.run_on_pool(inputs, keep, profile))
    }

    fn run_on_pool(
        &self,
        inputs: Vec<Tensor>,
        keep: &[ValueId],
        profile: Option<&mut Vec<Duration>>,
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
        let input_shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        // Take the cached plan and arena out of the lock, so that concurrent runs on one
        // session each get an arena (the second one plans its own) instead of waiting.
        let cached = self
            .prepared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut prepared = match cached {
            Some(p) if p.input_shapes == input_shapes && p.keep == keep => p,
            _ => self.prepare(input_shapes, keep)?,
        };
        let result = self.execute(&mut prepared, &inputs, keep, profile);
        *self.prepared.lock().unwrap_or_else(PoisonError::into_inner) = Some(prepared);
        result
    }

    /// Shapes, memory plan and arena for runs on inputs of `input_shapes`.
    fn prepare(
        &self,
        input_shapes: Vec<Vec<usize>>,
        keep: &[ValueId],
    ) -> Result<Prepared, RuntimeError> {
        let graph = &self.graph;
        let shape_refs: Vec<&[usize]> = input_shapes.iter().map(Vec::as_slice).collect();
        let shapes = graph.infer_shapes(&shape_refs)?;
        self.check_sizes(&shapes)?;
        let keep: Vec<ValueId> = keep
            .iter()
            .copied()
            .filter(|id| id.0 < graph.values.len())
            .collect();
        let plan = MemoryPlan::new(graph, &shapes, &keep);
        log::debug!(
            "memory plan for inputs {input_shapes:?}: {} bytes ({} with a buffer per value), \
             {} concat(s) in place",
            plan.arena_bytes(),
            plan.separate_bytes(),
            plan.concats_in_place()
        );
        let arena = Arena::new(plan.arena_len());
        Ok(Prepared {
            input_shapes,
            keep,
            shapes,
            plan,
            arena,
        })
    }

    fn execute(
        &self,
        prepared: &mut Prepared,
        inputs: &[Tensor],
        keep: &[ValueId],
        mut profile: Option<&mut Vec<Duration>>,
    ) -> Result<RunOutput, RuntimeError> {
        let graph = &self.graph;
        let Prepared {
            shapes,
            plan,
            arena,
            ..
        } = prepared;
        let arena = arena.floats_mut();
        for (&id, tensor) in graph.inputs.iter().zip(inputs) {
            let slot = plan.slot(id).expect("graph inputs are planned");
            arena[slot.range()].copy_from_slice(tensor.data());
        }

        let base = arena.as_mut_ptr();
        let max_inputs = graph.nodes.iter().map(|n| n.inputs.len()).max();
        let mut operands: Vec<Operand<'_>> = Vec::with_capacity(max_inputs.unwrap_or(0));
        for (index, node) in graph.nodes.iter().enumerate() {
            if plan.is_in_place(index) {
                if let Some(times) = profile.as_deref_mut() {
                    times.push(Duration::ZERO);
                }
                continue;
            }
            let started = profile.is_some().then(Instant::now);
            let out_slot = plan.slot(node.output).expect("node outputs are planned");
            operands.clear();
            for &input in &node.inputs {
                let operand = match plan.slot(input) {
                    None => Operand::of(
                        graph
                            .constant(input)
                            .expect("unplanned values are constants"),
                    ),
                    Some(slot) => {
                        // The plan never places a node's output over one of its inputs; the
                        // mutable output slice below relies on it, so check rather than trust.
                        if slot.overlaps(&out_slot) {
                            return Err(RuntimeError::Internal(format!(
                                "node '{}': the memory plan places its output over input '{}'",
                                node.name,
                                graph.value(input).name
                            )));
                        }
                        // SAFETY: the slot lies inside the arena (the plan sized it to hold
                        // every slot), and nothing writes to it while this node runs: the
                        // only mutable slice is the output's, which does not overlap it.
                        let data =
                            unsafe { std::slice::from_raw_parts(base.add(slot.offset), slot.len) };
                        Operand {
                            shape: &shapes[input.0],
                            data,
                        }
                    }
                };
                operands.push(operand);
            }
            // SAFETY: the output slot lies inside the arena and overlaps none of the input
            // slices (checked above); no other reference to this range exists during the call.
            let out =
                unsafe { std::slice::from_raw_parts_mut(base.add(out_slot.offset), out_slot.len) };
            let packed = self.packed_conv_weights[index].as_ref();
            exec::execute(&node.op, &operands, packed, &shapes[node.output.0], out).map_err(
                |message| RuntimeError::Node {
                    node: node.name.clone(),
                    op: node.op.name(),
                    message,
                },
            )?;
            if let (Some(times), Some(started)) = (profile.as_deref_mut(), started) {
                times.push(started.elapsed());
            }
        }
        drop(operands);

        let read = |id: ValueId| -> Tensor {
            match plan.slot(id) {
                Some(slot) => Tensor::new(shapes[id.0].clone(), arena[slot.range()].to_vec())
                    .expect("a slot holds its value's elements"),
                None => graph
                    .constant(id)
                    .expect("unplanned values are constants")
                    .clone(),
            }
        };
        let outputs = graph.outputs.iter().map(|&id| read(id)).collect();
        let kept = keep
            .iter()
            .filter(|id| id.0 < graph.values.len())
            .map(|&id| (id, read(id)))
            .collect();
        Ok(RunOutput { outputs, kept })
    }

    /// The memory plan of a run on inputs of `input_shapes`: arena size, sharing, Concats
    /// written in place.
    pub fn memory_plan(&self, input_shapes: &[&[usize]]) -> Result<MemoryPlan, RuntimeError> {
        let shapes = self.graph.infer_shapes(input_shapes)?;
        Ok(MemoryPlan::new(&self.graph, &shapes, &[]))
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

/// Packs the constant weights of every convolution for the selected kernels. The layout's
/// orientation follows the nominal shapes (free input dimensions at 1); a run on other spatial
/// sizes still uses the packed weights. A convolution whose weights are computed, or whose
/// nominal shapes do not make a valid geometry, gets `None` and runs on its raw weights.
fn pack_conv_weights(graph: &Graph) -> Vec<Option<k::PackedConvWeights<'static>>> {
    let isa = k::selected_isa();
    let nominal_inputs: Vec<&[usize]> = graph
        .inputs
        .iter()
        .map(|&id| graph.value(id).shape.as_slice())
        .collect();
    let Ok(shapes) = graph.infer_shapes(&nominal_inputs) else {
        return vec![None; graph.nodes.len()];
    };
    let mut packed_bytes = 0usize;
    let packed: Vec<_> = graph
        .nodes
        .iter()
        .map(|node| {
            let Op::Conv(attrs) = &node.op else {
                return None;
            };
            let weights = graph.constant(*node.inputs.get(1)?)?;
            let x_shape = &shapes[node.inputs.first()?.0];
            let out_shape = &shapes[node.output.0];
            if x_shape.len() != 4 || out_shape.len() != 4 {
                return None;
            }
            if attrs.strides.contains(&0) || attrs.dilations.contains(&0) || attrs.groups == 0 {
                return None;
            }
            let geometry = exec::conv_geometry(attrs, x_shape, out_shape);
            let weights_len = [
                geometry.out_channels,
                geometry.in_channels / geometry.groups,
                geometry.kernel_h,
                geometry.kernel_w,
            ]
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
            let shape_ok = geometry.in_channels.is_multiple_of(geometry.groups)
                && geometry.out_channels.is_multiple_of(geometry.groups)
                && weights_len == Some(weights.data().len());
            if !shape_ok {
                return None;
            }
            let packed = k::pack_conv_weights_f32(isa, &geometry, weights.data());
            packed_bytes += 4 * packed.as_slice().len();
            Some(packed)
        })
        .collect();
    log::debug!(
        "packed the weights of {} convolution(s) for {isa} kernels: {packed_bytes} bytes",
        packed.iter().flatten().count()
    );
    packed
}

/// Every core the operating system lets this process use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What a run needs for one set of input shapes, kept between runs.
#[derive(Debug)]
struct Prepared {
    input_shapes: Vec<Vec<usize>>,
    keep: Vec<ValueId>,
    shapes: Vec<Vec<usize>>,
    plan: MemoryPlan,
    arena: Arena,
}

/// The memory every activation of a run lives in, starting on a 64-byte boundary.
#[derive(Debug)]
struct Arena {
    storage: Vec<f32>,
    start: usize,
    len: usize,
}

impl Arena {
    /// Floats of slack that let the start move to a 64-byte boundary.
    const SLACK: usize = 16;

    fn new(len: usize) -> Arena {
        let storage = vec![0.0f32; len + Arena::SLACK];
        let start = storage.as_ptr().align_offset(64).min(Arena::SLACK);
        Arena {
            storage,
            start,
            len,
        }
    }

    fn floats_mut(&mut self) -> &mut [f32] {
        &mut self.storage[self.start..self.start + self.len]
    }
}
