//! Translation of an ONNX graph, node by node, into Kestrel's IR.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use kestrel_graph::{
    count_range, BinaryOp, ConvAttrs, Dim, Epilogue, GemmAttrs, Graph, LrnAttrs, Op, Padding,
    PoolAttrs, PoolKind, ValueId,
};
use tract_onnx::pb::tensor_shape_proto::dimension;
use tract_onnx::pb::type_proto;
use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, ValueInfoProto};

use crate::attributes::Attributes;
use crate::fold::{self, ConstData, ConstTensor};
use crate::tensor_proto::decode_tensor;
use crate::ImportError;

/// What a name in the ONNX graph stands for during import.
#[derive(Clone)]
enum Known {
    /// A runtime value of the IR graph.
    Value(ValueId),
    /// A constant, materialised in the IR only if a runtime operator reads it.
    Const(Rc<ConstTensor>),
}

struct Importer<'m> {
    graph: Graph,
    known: HashMap<String, Known>,
    materialised: HashMap<String, ValueId>,
    opset: i64,
    model_dir: Option<&'m Path>,
}

const ONNX_FLOAT: i32 = 1;

/// Every operator the importer translates or folds. Checked before anything else, so a model
/// built around an operator Kestrel does not run (a quantized one, say) is refused for that
/// operator, not for a symptom of it such as its integer input.
const KNOWN_OPS: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Div",
    "Dropout",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "Identity",
    "LRN",
    "MatMul",
    "Max",
    "MaxPool",
    "Min",
    "Mul",
    "Pad",
    "Pow",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Squeeze",
    "Sub",
    "Sum",
    "Transpose",
    "Unsqueeze",
];

/// The first node whose operator is not in [`KNOWN_OPS`] or not in the default domain.
fn first_unknown_op(graph: &GraphProto) -> Option<ImportError> {
    graph.node.iter().enumerate().find_map(|(index, node)| {
        let default_domain = node.domain.is_empty() || node.domain == "ai.onnx";
        if default_domain && KNOWN_OPS.contains(&node.op_type.as_str()) {
            return None;
        }
        let op = if default_domain {
            node.op_type.clone()
        } else {
            format!("{}.{}", node.domain, node.op_type)
        };
        Some(ImportError::UnsupportedOp {
            node: node_name(node, index),
            op,
        })
    })
}

/// The node's name, else its first output's, else its operator and position.
fn node_name(node: &NodeProto, index: usize) -> String {
    if !node.name.is_empty() {
        node.name.clone()
    } else if let Some(out) = node.output.first().filter(|o| !o.is_empty()) {
        out.clone()
    } else {
        format!("{}#{index}", node.op_type)
    }
}

pub(crate) fn translate_model(
    model: &ModelProto,
    model_dir: Option<&Path>,
) -> Result<Graph, ImportError> {
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version);
    let proto = model
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::Model("the model holds no graph".into()))?;
    if let Some(unknown) = first_unknown_op(proto) {
        return Err(unknown);
    }
    let mut cx = Importer {
        graph: Graph::default(),
        known: HashMap::new(),
        materialised: HashMap::new(),
        opset,
        model_dir,
    };
    for t in &proto.initializer {
        let c = decode_tensor(t, model_dir)?;
        cx.known.insert(t.name.clone(), Known::Const(Rc::new(c)));
    }
    for input in &proto.input {
        if !cx.known.contains_key(&input.name) {
            let dims = input_dims(input)?;
            let id = cx.graph.add_input(input.name.clone(), dims);
            cx.known.insert(input.name.clone(), Known::Value(id));
        }
    }
    for (index, node) in proto.node.iter().enumerate() {
        cx.translate_node(node, index)?;
    }
    if proto.output.is_empty() {
        return Err(ImportError::Model("the graph declares no outputs".into()));
    }
    for output in &proto.output {
        let id = cx.runtime_value(&output.name).map_err(|message| {
            ImportError::Model(format!("graph output '{}': {message}", output.name))
        })?;
        cx.graph.outputs.push(id);
    }
    cx.graph.validate()?;
    log::info!(
        "imported {} nodes, {} inputs, {} outputs (opset {opset})",
        cx.graph.nodes.len(),
        cx.graph.inputs.len(),
        cx.graph.outputs.len()
    );
    Ok(cx.graph)
}

fn input_dims(input: &ValueInfoProto) -> Result<Vec<Dim>, ImportError> {
    let err =
        |message: &str| ImportError::Model(format!("graph input '{}': {message}", input.name));
    let Some(type_proto::Value::TensorType(tensor)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(err("is not a tensor"));
    };
    if tensor.elem_type != ONNX_FLOAT {
        return Err(err(&format!(
            "has element type code {}; only float32 inputs are supported",
            tensor.elem_type
        )));
    }
    let shape = tensor
        .shape
        .as_ref()
        .ok_or_else(|| err("declares no shape"))?;
    shape
        .dim
        .iter()
        .enumerate()
        .map(|(i, d)| match &d.value {
            Some(dimension::Value::DimValue(v)) if *v >= 0 => Ok(Dim::Fixed(*v as usize)),
            Some(dimension::Value::DimValue(v)) => Err(err(&format!("has negative dimension {v}"))),
            Some(dimension::Value::DimParam(p)) if !p.is_empty() => Ok(Dim::Free(p.clone())),
            _ => Ok(Dim::Free(format!("d{i}"))),
        })
        .collect()
}

/// Converts attribute integers to sizes, refusing negative values.
fn sizes<const N: usize>(values: &[i64], what: &str) -> Result<[usize; N], String> {
    if values.len() != N {
        return Err(format!(
            "{what} has {} entries, expected {N} (only 2-D is supported)",
            values.len()
        ));
    }
    let mut out = [0; N];
    for (o, &v) in out.iter_mut().zip(values) {
        *o = usize::try_from(v).map_err(|_| format!("{what} has negative entry {v}"))?;
    }
    Ok(out)
}

fn positive<const N: usize>(values: [usize; N], what: &str) -> Result<[usize; N], String> {
    if values.contains(&0) {
        Err(format!("{what} {values:?} must be positive"))
    } else {
        Ok(values)
    }
}

fn normalize_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} is out of range for rank {rank}"))
    }
}

/// A node being translated: its attributes, named inputs, and error context.
struct NodeCx<'a> {
    name: String,
    op_type: &'a str,
    attrs: Attributes<'a>,
    inputs: Vec<Option<Known>>,
}

impl NodeCx<'_> {
    fn err(&self, message: impl Into<String>) -> ImportError {
        ImportError::Node {
            node: self.name.clone(),
            op: self.op_type.to_string(),
            message: message.into(),
        }
    }

    fn input(&self, i: usize) -> Result<&Known, ImportError> {
        self.inputs.get(i).and_then(|k| k.as_ref()).ok_or_else(|| {
            self.err(format!(
                "input {i} is missing ({} given)",
                self.inputs.len()
            ))
        })
    }

    fn has_input(&self, i: usize) -> bool {
        matches!(self.inputs.get(i), Some(Some(_)))
    }

    fn constant(&self, i: usize) -> Result<Rc<ConstTensor>, ImportError> {
        match self.input(i)? {
            Known::Const(c) => Ok(c.clone()),
            Known::Value(_) => Err(self.err(format!(
                "input {i} must be a constant; computing it at run time is not supported"
            ))),
        }
    }

    fn all_const(&self) -> bool {
        self.inputs
            .iter()
            .flatten()
            .all(|k| matches!(k, Known::Const(_)))
    }

    fn expect_inputs(&self, min: usize, max: usize) -> Result<(), ImportError> {
        let n = self.inputs.len();
        if n < min || n > max {
            return Err(self.err(format!("takes {} inputs, got {n}", count_range(min, max))));
        }
        for i in 0..min {
            self.input(i)?;
        }
        Ok(())
    }
}

impl Importer<'_> {
    fn runtime_value(&mut self, name: &str) -> Result<ValueId, String> {
        match self.known.get(name) {
            Some(Known::Value(id)) => Ok(*id),
            Some(Known::Const(c)) => {
                if let Some(id) = self.materialised.get(name) {
                    return Ok(*id);
                }
                let id = self.graph.add_constant(name, c.to_tensor());
                self.materialised.insert(name.to_string(), id);
                Ok(id)
            }
            None => Err(format!("'{name}' is not produced by any node")),
        }
    }

    fn shape_of(&self, known: &Known) -> Vec<usize> {
        match known {
            Known::Value(id) => self.graph.value(*id).shape.clone(),
            Known::Const(c) => c.shape.clone(),
        }
    }

    fn translate_node(&mut self, node: &NodeProto, index: usize) -> Result<(), ImportError> {
        let name = node_name(node, index);
        let mut inputs = Vec::with_capacity(node.input.len());
        for input in &node.input {
            if input.is_empty() {
                inputs.push(None);
                continue;
            }
            let known = self
                .known
                .get(input)
                .cloned()
                .ok_or_else(|| ImportError::Node {
                    node: name.clone(),
                    op: node.op_type.clone(),
                    message: format!(
                    "reads '{input}', which is no graph input, initializer or earlier node's output"
                ),
                })?;
            inputs.push(Some(known));
        }
        let cx = NodeCx {
            name,
            op_type: &node.op_type,
            attrs: Attributes::new(node),
            inputs,
        };
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(ImportError::UnsupportedOp {
                node: cx.name,
                op: format!("{}.{}", node.domain, node.op_type),
            });
        }
        let output = node
            .output
            .first()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| cx.err("has no output"))?
            .clone();
        if let Some(extra) = node.output.iter().skip(1).find(|o| !o.is_empty()) {
            // Dropout's mask is never read at inference; other second outputs are unsupported.
            if node.op_type != "Dropout" {
                return Err(cx.err(format!("its extra output '{extra}' is not supported")));
            }
        }
        if self.known.contains_key(&output) || self.materialised.contains_key(&output) {
            return Err(cx.err(format!(
                "writes '{output}', which a graph input, initializer or earlier node already \
                 defines (every tensor must have one producer)"
            )));
        }
        // Dropout in training mode drops activations at random; only inference is defined.
        if let (true, Some(mode)) = (
            node.op_type == "Dropout",
            cx.inputs.get(2).and_then(Option::as_ref),
        ) {
            let training = match mode {
                Known::Const(c) => c.as_i64s().iter().any(|&v| v != 0),
                Known::Value(_) => true,
            };
            if training {
                return Err(
                    cx.err("training_mode is set (or computed); only inference Dropout runs")
                );
            }
        }

        if let Some(folded) = self.fold(&cx)? {
            self.known.insert(output, Known::Const(Rc::new(folded)));
            return Ok(());
        }
        if matches!(node.op_type.as_str(), "Sum" | "Max" | "Min") && node.input.len() > 2 {
            return self.variadic(&cx, &node.input, output);
        }
        let (op, operands) = self.runtime_op(&cx)?;
        let mut ids = Vec::with_capacity(operands.len());
        for i in operands {
            let input_name = &node.input[i];
            ids.push(self.runtime_value(input_name).map_err(|m| cx.err(m))?);
        }
        let id = self
            .graph
            .add_node(cx.name.clone(), op, ids, output.clone())?;
        self.known.insert(output, Known::Value(id));
        Ok(())
    }

    /// Sum, Max and Min of three or more inputs, as a chain of two-input nodes: the first
    /// named after the ONNX node, the others `name#2`, `name#3`, ..., the last writing `output`.
    fn variadic(
        &mut self,
        cx: &NodeCx,
        inputs: &[String],
        output: String,
    ) -> Result<(), ImportError> {
        let op = Op::Binary(match cx.op_type {
            "Sum" => BinaryOp::Add,
            "Max" => BinaryOp::Max,
            _ => BinaryOp::Min,
        });
        if inputs.iter().any(String::is_empty) {
            return Err(cx.err("has an empty input name"));
        }
        let mut acc = self.runtime_value(&inputs[0]).map_err(|m| cx.err(m))?;
        for (i, input) in inputs.iter().enumerate().skip(1) {
            let rhs = self.runtime_value(input).map_err(|m| cx.err(m))?;
            let last = i + 1 == inputs.len();
            let (name, out) = if i == 1 {
                (cx.name.clone(), format!("{output}#1"))
            } else {
                (format!("{}#{i}", cx.name), format!("{output}#{i}"))
            };
            let out = if last { output.clone() } else { out };
            acc = self.graph.add_node(name, op.clone(), vec![acc, rhs], out)?;
        }
        self.known.insert(output, Known::Value(acc));
        Ok(())
    }

    /// Evaluates the node at import time when it only does arithmetic on constants or shapes.
    fn fold(&self, cx: &NodeCx) -> Result<Option<ConstTensor>, ImportError> {
        let a = &cx.attrs;
        let folded = match cx.op_type {
            "Constant" => {
                if let Some(t) = a.tensor("value") {
                    decode_tensor(t, self.model_dir)?
                } else if let Some(v) = a.floats("value_floats") {
                    ConstTensor {
                        shape: vec![v.len()],
                        data: ConstData::F32(v.to_vec()),
                    }
                } else if a.has("value_float") {
                    ConstTensor {
                        shape: vec![],
                        data: ConstData::F32(vec![a.float_or("value_float", 0.0)]),
                    }
                } else if let Some(v) = a.ints("value_ints") {
                    ConstTensor::i64s(vec![v.len()], v.to_vec())
                } else if let Some(v) = a.int("value_int") {
                    ConstTensor::i64s(vec![], vec![v])
                } else {
                    return Err(cx.err("has no supported value attribute"));
                }
            }
            "Shape" => {
                cx.expect_inputs(1, 1)?;
                let shape = self.shape_of(cx.input(0)?);
                let rank = shape.len() as i64;
                let clampi = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
                let start = clampi(a.int_or("start", 0));
                let end = clampi(a.int_or("end", rank)).max(start);
                let dims: Vec<i64> = shape[start..end].iter().map(|&d| d as i64).collect();
                ConstTensor::i64s(vec![dims.len()], dims)
            }
            _ if !cx.all_const() || cx.inputs.is_empty() => return Ok(None),
            "Identity" | "Dropout" => (*cx.constant(0)?).clone(),
            "Cast" => {
                let c = cx.constant(0)?;
                let to = a.int_or("to", ONNX_FLOAT as i64) as i32;
                let data = if matches!(to, 1 | 10 | 11) {
                    ConstData::F32(c.as_f32s())
                } else {
                    ConstData::I64(c.as_i64s())
                };
                ConstTensor {
                    shape: c.shape.clone(),
                    data,
                }
            }
            "Gather" => {
                cx.expect_inputs(2, 2)?;
                let data = cx.constant(0)?;
                let axis =
                    normalize_axis(a.int_or("axis", 0), data.shape.len()).map_err(|m| cx.err(m))?;
                fold::gather(&data, &*cx.constant(1)?, axis).map_err(|m| cx.err(m))?
            }
            "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" | "Transpose" | "Concat" | "Add"
            | "Sub" | "Mul" | "Div" | "Pow" => {
                // The runtime operator's own translation checks the attributes; evaluate it here.
                let (op, _) = self.runtime_op(cx)?;
                let c = cx.constant(0)?;
                match op {
                    Op::Transpose { perm } => fold::transpose(&c, &perm),
                    Op::Concat { axis } => {
                        let parts: Vec<Rc<ConstTensor>> = (0..cx.inputs.len())
                            .map(|i| cx.constant(i))
                            .collect::<Result<_, _>>()?;
                        let refs: Vec<&ConstTensor> = parts.iter().map(|p| &**p).collect();
                        fold::concat(&refs, axis).map_err(|m| cx.err(m))?
                    }
                    Op::Binary(_) => {
                        fold::binary(cx.op_type, &c, &*cx.constant(1)?).map_err(|m| cx.err(m))?
                    }
                    view => {
                        let shape = view.output_shape(&[&c.shape]).map_err(|m| cx.err(m))?;
                        c.reshaped(shape)
                    }
                }
            }
            "ConstantOfShape" => {
                let shape: Vec<usize> = cx
                    .constant(0)?
                    .as_i64s()
                    .iter()
                    .map(|&d| {
                        usize::try_from(d).map_err(|_| cx.err(format!("negative dimension {d}")))
                    })
                    .collect::<Result<_, _>>()?;
                let count = shape
                    .iter()
                    .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                    .filter(|&n| n <= MAX_CONSTANT_ELEMENTS)
                    .ok_or_else(|| cx.err(format!("shape {shape:?} is too large")))?;
                let value = match a.tensor("value") {
                    Some(t) => decode_tensor(t, self.model_dir)?,
                    None => ConstTensor {
                        shape: vec![1],
                        data: ConstData::F32(vec![0.0]),
                    },
                };
                let data = match value.data {
                    ConstData::F32(v) => {
                        ConstData::F32(vec![v.first().copied().unwrap_or(0.0); count])
                    }
                    ConstData::I64(v) => {
                        ConstData::I64(vec![v.first().copied().unwrap_or(0); count])
                    }
                };
                ConstTensor { shape, data }
            }
            "Slice" => {
                let data = cx.constant(0)?;
                let rank = data.shape.len();
                let (starts, ends, axes, steps) = if self.opset < 10 {
                    let get = |n| a.ints(n).map(|v| v.to_vec());
                    (
                        get("starts").unwrap_or_default(),
                        get("ends").unwrap_or_default(),
                        get("axes"),
                        None,
                    )
                } else {
                    let opt = |i| -> Result<Option<Vec<i64>>, ImportError> {
                        Ok(if cx.has_input(i) {
                            Some(cx.constant(i)?.as_i64s())
                        } else {
                            None
                        })
                    };
                    (
                        cx.constant(1)?.as_i64s(),
                        cx.constant(2)?.as_i64s(),
                        opt(3)?,
                        opt(4)?,
                    )
                };
                let axes: Vec<usize> = match axes {
                    Some(ax) => ax
                        .iter()
                        .map(|&x| normalize_axis(x, rank))
                        .collect::<Result<_, _>>()
                        .map_err(|m| cx.err(m))?,
                    None => (0..starts.len()).collect(),
                };
                if starts.len() != axes.len()
                    || ends.len() != axes.len()
                    || axes.iter().any(|&x| x >= rank)
                {
                    return Err(cx.err("starts, ends and axes disagree"));
                }
                fold::slice(&data, &starts, &ends, &axes, &steps.unwrap_or_default())
                    .map_err(|m| cx.err(m))?
            }
            _ => return Ok(None),
        };
        if folded.len() > MAX_CONSTANT_ELEMENTS {
            return Err(cx.err("folded constant is too large"));
        }
        Ok(Some(folded))
    }

    /// The IR operator for a node, and which of its ONNX inputs it reads, in order.
    fn runtime_op(&self, cx: &NodeCx) -> Result<(Op, Vec<usize>), ImportError> {
        let a = &cx.attrs;
        let e = |m: String| cx.err(m);
        let rank0 = || cx.input(0).map(|k| self.shape_of(k).len());
        let unary = |op: Op| -> Result<(Op, Vec<usize>), ImportError> {
            cx.expect_inputs(1, 1)?;
            Ok((op, vec![0]))
        };
        Ok(match cx.op_type {
            "Conv" => {
                cx.expect_inputs(2, 3)?;
                let w = self.shape_of(cx.input(1)?);
                if w.len() != 4 {
                    return Err(e(format!(
                        "weights have shape {w:?}; only 2-D convolutions (4-D weights) are supported"
                    )));
                }
                let kernel = match a.ints("kernel_shape") {
                    Some(k) => {
                        positive(sizes(k, "kernel_shape").map_err(e)?, "kernel_shape").map_err(e)?
                    }
                    None => [w[2], w[3]],
                };
                let groups = a.int_or("group", 1);
                let groups = usize::try_from(groups)
                    .ok()
                    .filter(|&g| g > 0)
                    .ok_or_else(|| e(format!("group {groups} must be positive")))?;
                let (strides, dilations, padding) = self.window(cx, true)?;
                let inputs = if cx.has_input(2) {
                    vec![0, 1, 2]
                } else {
                    vec![0, 1]
                };
                (
                    Op::Conv(ConvAttrs {
                        epilogue: Epilogue::default(),
                        kernel,
                        strides,
                        dilations,
                        padding,
                        groups,
                    }),
                    inputs,
                )
            }
            "MaxPool" | "AveragePool" => {
                cx.expect_inputs(1, 1)?;
                let kernel = a
                    .ints("kernel_shape")
                    .ok_or_else(|| cx.err("has no kernel_shape"))?;
                let kernel = positive(sizes(kernel, "kernel_shape").map_err(e)?, "kernel_shape")
                    .map_err(e)?;
                let (strides, dilations, padding) = self.window(cx, cx.op_type == "MaxPool")?;
                let kind = if cx.op_type == "MaxPool" {
                    PoolKind::Max
                } else {
                    PoolKind::Average {
                        count_include_pad: a.int_or("count_include_pad", 0) != 0,
                    }
                };
                let ceil_mode = a.int_or("ceil_mode", 0) != 0;
                (
                    Op::Pool(PoolAttrs {
                        kind,
                        kernel,
                        strides,
                        dilations,
                        padding,
                        ceil_mode,
                    }),
                    vec![0],
                )
            }
            "GlobalAveragePool" => unary(Op::GlobalAveragePool)?,
            "ReduceMean" => {
                let rank = rank0()?;
                let axes = if self.opset >= 18 && cx.has_input(1) {
                    cx.constant(1)?.as_i64s()
                } else {
                    a.ints("axes").map(|v| v.to_vec()).unwrap_or_default()
                };
                let mut axes: Vec<usize> = axes
                    .iter()
                    .map(|&x| normalize_axis(x, rank))
                    .collect::<Result<_, _>>()
                    .map_err(e)?;
                if axes.is_empty() {
                    axes = (0..rank).collect();
                }
                (
                    Op::ReduceMean {
                        axes,
                        keep_dims: a.int_or("keepdims", 1) != 0,
                    },
                    vec![0],
                )
            }
            "Relu" => unary(Op::Relu)?,
            "Sigmoid" => unary(Op::Sigmoid)?,
            "Clip" => {
                let (min, max) = if self.opset < 11 {
                    (
                        a.float_or("min", f32::NEG_INFINITY),
                        a.float_or("max", f32::INFINITY),
                    )
                } else {
                    let bound = |i: usize, default: f32| -> Result<f32, ImportError> {
                        if !cx.has_input(i) {
                            return Ok(default);
                        }
                        cx.constant(i)?
                            .scalar_f32()
                            .ok_or_else(|| cx.err("bounds must be scalars"))
                    };
                    (bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?)
                };
                (Op::Clip { min, max }, vec![0])
            }
            "LRN" => {
                let size = a.int("size").ok_or_else(|| cx.err("has no size"))?;
                let size = usize::try_from(size)
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| e(format!("size {size} must be positive")))?;
                unary(Op::Lrn(LrnAttrs {
                    size,
                    alpha: a.float_or("alpha", 1e-4),
                    beta: a.float_or("beta", 0.75),
                    bias: a.float_or("bias", 1.0),
                }))?
            }
            "BatchNormalization" => {
                cx.expect_inputs(5, 5)?;
                if a.int_or("training_mode", 0) != 0 {
                    return Err(cx.err("training mode is not supported"));
                }
                (
                    Op::BatchNorm {
                        epsilon: a.float_or("epsilon", 1e-5),
                    },
                    vec![0, 1, 2, 3, 4],
                )
            }
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" => {
                let op = match cx.op_type {
                    "Add" | "Sum" => BinaryOp::Add,
                    "Sub" => BinaryOp::Sub,
                    "Mul" => BinaryOp::Mul,
                    "Div" => BinaryOp::Div,
                    "Pow" => BinaryOp::Pow,
                    "Max" => BinaryOp::Max,
                    _ => BinaryOp::Min,
                };
                if matches!(cx.op_type, "Max" | "Min" | "Sum") && cx.inputs.len() == 1 {
                    unary(Op::Identity)?
                } else {
                    cx.expect_inputs(2, 2)?;
                    if self.opset < 7 && a.int_or("broadcast", 0) != 0 && a.has("axis") {
                        return Err(cx.err("legacy broadcasting with an axis is not supported"));
                    }
                    (Op::Binary(op), vec![0, 1])
                }
            }
            "Concat" => {
                cx.expect_inputs(1, usize::MAX)?;
                for i in 0..cx.inputs.len() {
                    cx.input(i)?;
                }
                let axis = a.int("axis").ok_or_else(|| cx.err("has no axis"))?;
                let axis = normalize_axis(axis, rank0()?).map_err(e)?;
                (Op::Concat { axis }, (0..cx.inputs.len()).collect())
            }
            "Gemm" => {
                cx.expect_inputs(2, 3)?;
                let attrs = GemmAttrs {
                    alpha: a.float_or("alpha", 1.0),
                    beta: a.float_or("beta", 1.0),
                    trans_a: a.int_or("transA", 0) != 0,
                    trans_b: a.int_or("transB", 0) != 0,
                };
                let inputs = if cx.has_input(2) {
                    vec![0, 1, 2]
                } else {
                    vec![0, 1]
                };
                (Op::Gemm(attrs), inputs)
            }
            "MatMul" => {
                cx.expect_inputs(2, 2)?;
                let (ra, rb) = (rank0()?, self.shape_of(cx.input(1)?).len());
                if ra < 2 || rb < 2 {
                    return Err(e(format!(
                        "operands of rank {ra} and {rb}: 1-D MatMul is not supported"
                    )));
                }
                (Op::MatMul, vec![0, 1])
            }
            "Flatten" => {
                let rank = rank0()?;
                let axis = a.int_or("axis", 1);
                let axis = if axis == rank as i64 {
                    rank
                } else {
                    normalize_axis(axis, rank).map_err(e)?
                };
                unary(Op::Flatten { axis })?
            }
            "Reshape" => {
                let shape = if self.opset < 5 {
                    cx.expect_inputs(1, 1)?;
                    a.ints("shape")
                        .ok_or_else(|| cx.err("has no shape"))?
                        .to_vec()
                } else {
                    cx.expect_inputs(2, 2)?;
                    cx.constant(1)?.as_i64s()
                };
                let allow_zero = a.int_or("allowzero", 0) != 0;
                (Op::Reshape { shape, allow_zero }, vec![0])
            }
            "Transpose" => {
                let rank = rank0()?;
                let perm = match a.ints("perm") {
                    Some(p) => p
                        .iter()
                        .map(|&x| normalize_axis(x, rank))
                        .collect::<Result<_, _>>()
                        .map_err(e)?,
                    None => (0..rank).rev().collect(),
                };
                unary(Op::Transpose { perm })?
            }
            "Softmax" => {
                let rank = rank0()?;
                let legacy = self.opset < 13;
                let axis = a.int_or("axis", if legacy { 1 } else { -1 });
                let axis = normalize_axis(axis, rank).map_err(e)?;
                unary(Op::Softmax {
                    axis,
                    coerce_2d: legacy,
                })?
            }
            "Pad" => {
                let rank = rank0()?;
                let mode = a.string("mode").unwrap_or_else(|| "constant".into());
                if mode != "constant" {
                    return Err(e(format!(
                        "mode '{mode}' is not supported, only 'constant'"
                    )));
                }
                let (pads, value) = if self.opset < 11 {
                    let pads = a
                        .ints("pads")
                        .or(a.ints("paddings"))
                        .ok_or_else(|| cx.err("has no pads"))?;
                    (pads.to_vec(), a.float_or("value", 0.0))
                } else {
                    if cx.has_input(3) {
                        return Err(cx.err("the axes input is not supported"));
                    }
                    let value = if cx.has_input(2) {
                        cx.constant(2)?
                            .scalar_f32()
                            .ok_or_else(|| cx.err("constant_value must be a scalar"))?
                    } else {
                        0.0
                    };
                    (cx.constant(1)?.as_i64s(), value)
                };
                if pads.len() != 2 * rank {
                    return Err(e(format!("{} pads for rank {rank}", pads.len())));
                }
                let pads = pads
                    .iter()
                    .map(|&p| {
                        usize::try_from(p)
                            .map_err(|_| e(format!("negative pad {p} (cropping) is not supported")))
                    })
                    .collect::<Result<_, _>>()?;
                (Op::Pad { pads, value }, vec![0])
            }
            "Squeeze" | "Unsqueeze" => {
                let axes = if self.opset >= 13 && cx.has_input(1) {
                    cx.constant(1)?.as_i64s()
                } else {
                    a.ints("axes").map(|v| v.to_vec()).unwrap_or_default()
                };
                let in_rank = rank0()?;
                let rank = if cx.op_type == "Squeeze" {
                    in_rank
                } else {
                    in_rank + axes.len()
                };
                let mut axes: Vec<usize> = axes
                    .iter()
                    .map(|&x| normalize_axis(x, rank))
                    .collect::<Result<_, _>>()
                    .map_err(e)?;
                axes.sort_unstable();
                if cx.op_type == "Squeeze" {
                    if axes.is_empty() {
                        let shape = self.shape_of(cx.input(0)?);
                        axes = (0..in_rank).filter(|&i| shape[i] == 1).collect();
                    }
                    (Op::Squeeze { axes }, vec![0])
                } else {
                    (Op::Unsqueeze { axes }, vec![0])
                }
            }
            "Identity" | "Dropout" => (Op::Identity, vec![0]),
            "Cast" if a.int_or("to", 0) == ONNX_FLOAT as i64 => unary(Op::Identity)?,
            _ => {
                return Err(ImportError::UnsupportedOp {
                    node: cx.name.clone(),
                    op: cx.op_type.to_string(),
                })
            }
        })
    }

    /// Strides, dilations and padding shared by Conv and the pools.
    fn window(
        &self,
        cx: &NodeCx,
        has_dilations: bool,
    ) -> Result<([usize; 2], [usize; 2], Padding), ImportError> {
        let a = &cx.attrs;
        let e = |m: String| cx.err(m);
        let strides = match a.ints("strides") {
            Some(s) => positive(sizes(s, "strides").map_err(e)?, "strides").map_err(e)?,
            None => [1, 1],
        };
        let dilations = match a.ints("dilations").filter(|_| has_dilations) {
            Some(d) => positive(sizes(d, "dilations").map_err(e)?, "dilations").map_err(e)?,
            None => [1, 1],
        };
        let auto_pad = a.string("auto_pad").unwrap_or_default();
        let padding = match auto_pad.as_str() {
            "" | "NOTSET" => match a.ints("pads") {
                Some(p) => {
                    let p: [usize; 4] = sizes(p, "pads").map_err(e)?;
                    Padding::Explicit {
                        begin: [p[0], p[1]],
                        end: [p[2], p[3]],
                    }
                }
                None => Padding::NONE,
            },
            "VALID" => Padding::NONE,
            "SAME_UPPER" => Padding::SameUpper,
            "SAME_LOWER" => Padding::SameLower,
            other => return Err(e(format!("unknown auto_pad '{other}'"))),
        };
        Ok((strides, dilations, padding))
    }
}

/// Largest constant that shape arithmetic may create (256 Mi elements, 1 GiB of f32).
const MAX_CONSTANT_ELEMENTS: usize = 1 << 28;
