use std::fmt;

use crate::error::GraphError;
use crate::op::Op;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// One dimension of a graph input as declared by the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    /// A free dimension (such as a symbolic batch), nominally 1.
    Free(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(d) => write!(f, "{d}"),
            Dim::Free(name) => f.write_str(name),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    /// A graph input with its declared dimensions.
    Input { dims: Vec<Dim> },
    /// Weights or another tensor known before the run.
    Constant(Tensor),
    /// The output of the node with this id.
    Node(NodeId),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    /// Shape on a nominal run (free input dimensions at 1).
    pub shape: Vec<usize>,
    pub kind: ValueKind,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
}

/// A computation graph whose nodes are kept in topological order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

impl Graph {
    /// The shape of each graph input, with every free dimension (a symbolic batch) set to
    /// `free`.
    pub fn input_shapes(&self, free: usize) -> Vec<Vec<usize>> {
        self.inputs
            .iter()
            .map(|&id| {
                let value = self.value(id);
                match &value.kind {
                    ValueKind::Input { dims } => dims
                        .iter()
                        .map(|d| match d {
                            Dim::Fixed(n) => *n,
                            Dim::Free(_) => free,
                        })
                        .collect(),
                    _ => value.shape.clone(),
                }
            })
            .collect()
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.0]
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    pub fn constant(&self, id: ValueId) -> Option<&Tensor> {
        match &self.values[id.0].kind {
            ValueKind::Constant(t) => Some(t),
            _ => None,
        }
    }

    /// The node producing `id`, if it is not an input or a constant.
    pub fn producer(&self, id: ValueId) -> Option<&Node> {
        match self.values[id.0].kind {
            ValueKind::Node(n) => Some(&self.nodes[n.0]),
            _ => None,
        }
    }

    /// The nodes reading `id`.
    pub fn consumers(&self, id: ValueId) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| n.inputs.contains(&id))
    }

    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name).map(ValueId)
    }

    pub fn add_input(&mut self, name: impl Into<String>, dims: Vec<Dim>) -> ValueId {
        let shape = dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Free(_) => 1,
            })
            .collect();
        let id = self.push_value(name.into(), shape, ValueKind::Input { dims });
        self.inputs.push(id);
        id
    }

    pub fn add_constant(&mut self, name: impl Into<String>, tensor: Tensor) -> ValueId {
        let shape = tensor.shape().to_vec();
        self.push_value(name.into(), shape, ValueKind::Constant(tensor))
    }

    /// Appends a node after checking its inputs' shapes, and returns its output value.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<ValueId>,
        output_name: impl Into<String>,
    ) -> Result<ValueId, GraphError> {
        let name = name.into();
        if let Some(bad) = inputs.iter().find(|i| i.0 >= self.values.len()) {
            return Err(GraphError::Invalid(format!(
                "node '{name}' reads unknown value {bad:?}"
            )));
        }
        let shapes: Vec<&[usize]> = inputs.iter().map(|i| &self.values[i.0].shape[..]).collect();
        let shape = op
            .output_shape(&shapes)
            .map_err(|message| GraphError::Node {
                node: name.clone(),
                op: op.name(),
                message,
            })?;
        let node_id = NodeId(self.nodes.len());
        let output = self.push_value(output_name.into(), shape, ValueKind::Node(node_id));
        self.nodes.push(Node {
            name,
            op,
            inputs,
            output,
        });
        Ok(output)
    }

    fn push_value(&mut self, name: String, shape: Vec<usize>, kind: ValueKind) -> ValueId {
        self.values.push(Value { name, shape, kind });
        ValueId(self.values.len() - 1)
    }

    /// Concrete shapes of every value for these input shapes: checks the inputs against their
    /// declared dimensions, then applies each operator's shape rule in order.
    pub fn infer_shapes(&self, input_shapes: &[&[usize]]) -> Result<Vec<Vec<usize>>, GraphError> {
        if input_shapes.len() != self.inputs.len() {
            return Err(GraphError::Invalid(format!(
                "the graph takes {} inputs, got {}",
                self.inputs.len(),
                input_shapes.len()
            )));
        }
        let mut shapes: Vec<Vec<usize>> = self.values.iter().map(|v| v.shape.clone()).collect();
        for (&id, &shape) in self.inputs.iter().zip(input_shapes) {
            let value = &self.values[id.0];
            if let ValueKind::Input { dims } = &value.kind {
                check_input_dims(&value.name, dims, shape)?;
            }
            shapes[id.0] = shape.to_vec();
        }
        for node in &self.nodes {
            let ins: Vec<&[usize]> = node.inputs.iter().map(|i| &shapes[i.0][..]).collect();
            let out = node
                .op
                .output_shape(&ins)
                .map_err(|message| GraphError::Node {
                    node: node.name.clone(),
                    op: node.op.name(),
                    message,
                })?;
            shapes[node.output.0] = out;
        }
        Ok(shapes)
    }

    /// Checks the structural invariants: every reference in range, nodes in topological order,
    /// each node the producer of its output, outputs produced.
    pub fn validate(&self) -> Result<(), GraphError> {
        let n_values = self.values.len();
        let mut defined: Vec<bool> = self
            .values
            .iter()
            .map(|v| !matches!(v.kind, ValueKind::Node(_)))
            .collect();
        for (i, node) in self.nodes.iter().enumerate() {
            for input in &node.inputs {
                if input.0 >= n_values || !defined[input.0] {
                    return Err(GraphError::Invalid(format!(
                        "node '{}' reads a value that is not yet defined",
                        node.name
                    )));
                }
            }
            let out = node.output.0;
            if out >= n_values || self.values[out].kind != ValueKind::Node(NodeId(i)) {
                return Err(GraphError::Invalid(format!(
                    "node '{}' has an inconsistent output",
                    node.name
                )));
            }
            defined[out] = true;
        }
        for &id in self.inputs.iter().chain(&self.outputs) {
            if id.0 >= n_values || !defined[id.0] {
                return Err(GraphError::Invalid(
                    "a graph input or output is undefined".into(),
                ));
            }
        }
        Ok(())
    }
}

fn check_input_dims(name: &str, dims: &[Dim], shape: &[usize]) -> Result<(), GraphError> {
    let declared = || {
        dims.iter()
            .map(Dim::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mismatch = shape.len() != dims.len()
        || dims
            .iter()
            .zip(shape)
            .any(|(d, &s)| matches!(d, Dim::Fixed(f) if *f != s));
    if mismatch {
        return Err(GraphError::Input {
            name: name.to_string(),
            message: format!("expected shape [{}], got {shape:?}", declared()),
        });
    }
    Ok(())
}
