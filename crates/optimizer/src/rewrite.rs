//! Rebuilding a graph after a pass has decided what to change.
//!
//! A pass never edits a graph in place. It records, per node of the original, whether the node
//! stays, is absorbed into a later node, or is replaced by a fused node; [`Rewrite::apply`]
//! then builds a fresh graph in one walk. A fused node is emitted at the position of the *last*
//! node it absorbs and takes that node's output value (and so its name): every input the fused
//! node reads is defined before that position, and every consumer of the group comes after it.
//! A pass may also insert a new node before an original one ([`Rewrite::insert_before`]), for a
//! node that several rewritten nodes read.

use std::collections::HashMap;

use kestrel_graph::{
    ConvAttrs, Graph, GraphError, Node, NodeId, Op, Tensor, Value, ValueId, ValueKind,
};

/// The changes one pass makes to a graph.
pub(crate) struct Rewrite<'g> {
    /// The original graph plus the constants the pass created.
    graph: Graph,
    original: &'g Graph,
    absorbed: Vec<bool>,
    replaced: HashMap<NodeId, Replacement>,
    /// Values that vanish, and the value that now stands for each.
    alias: HashMap<ValueId, ValueId>,
    /// New nodes to emit just before an original node, with the placeholder value each
    /// stands for.
    inserted: HashMap<NodeId, Vec<(Replacement, ValueId)>>,
}

struct Replacement {
    name: String,
    op: Op,
    inputs: Vec<ValueId>,
}

impl<'g> Rewrite<'g> {
    pub fn new(original: &'g Graph) -> Rewrite<'g> {
        Rewrite {
            graph: original.clone(),
            original,
            absorbed: vec![false; original.nodes.len()],
            replaced: HashMap::new(),
            alias: HashMap::new(),
            inserted: HashMap::new(),
        }
    }

    /// Adds node `name` computing `op` over `inputs` just before node `at` (so its inputs must
    /// be defined before `at`), and returns its output, named `output_name`, for rewritten
    /// nodes to read.
    pub fn insert_before(
        &mut self,
        at: NodeId,
        name: String,
        op: Op,
        inputs: Vec<ValueId>,
        output_name: String,
    ) -> ValueId {
        // A placeholder naming no real node: `apply` maps it to the inserted node's output,
        // and reading it before then fails as reading an undefined value.
        self.graph.values.push(Value {
            name: output_name,
            shape: Vec::new(),
            kind: ValueKind::Node(NodeId(usize::MAX)),
        });
        let placeholder = ValueId(self.graph.values.len() - 1);
        self.inserted
            .entry(at)
            .or_default()
            .push((Replacement { name, op, inputs }, placeholder));
        placeholder
    }

    /// A new constant, for a fused node's inputs.
    pub fn constant(&mut self, name: String, tensor: Tensor) -> ValueId {
        self.graph.add_constant(name, tensor)
    }

    /// Drops `node`; its output becomes another name for `stands_for`.
    pub fn remove(&mut self, node: NodeId, stands_for: ValueId) {
        self.absorbed[node.0] = true;
        self.alias
            .insert(self.original.node(node).output, stands_for);
    }

    /// Replaces node `at` by `op` over `inputs`, named `name`, and drops the nodes in `absorbed`
    /// (which must all come before `at` and be read only inside the group).
    pub fn fuse(
        &mut self,
        at: NodeId,
        name: String,
        op: Op,
        inputs: Vec<ValueId>,
        absorbed: &[NodeId],
    ) {
        for n in absorbed {
            debug_assert!(
                n.0 < at.0,
                "a fused node sits at the last node of its group"
            );
            self.absorbed[n.0] = true;
        }
        self.replaced.insert(at, Replacement { name, op, inputs });
    }

    /// Whether `node` is already part of a rewrite (a pattern must not claim it twice).
    pub fn touched(&self, node: NodeId) -> bool {
        self.absorbed[node.0] || self.replaced.contains_key(&node)
    }

    /// Builds the rewritten graph: inputs first, in their order and with their declared
    /// dimensions, then the surviving nodes in order, copying only the constants they read.
    pub fn apply(self) -> Result<Graph, GraphError> {
        let source = &self.graph;
        let mut out = Graph::default();
        let mut map: HashMap<ValueId, ValueId> = HashMap::new();
        for &id in &source.inputs {
            let value = source.value(id);
            let ValueKind::Input { dims } = &value.kind else {
                return Err(GraphError::Invalid(format!(
                    "graph input '{}' is not an input",
                    value.name
                )));
            };
            map.insert(id, out.add_input(value.name.clone(), dims.clone()));
        }
        let resolve = |mut id: ValueId| {
            while let Some(&next) = self.alias.get(&id) {
                id = next;
            }
            id
        };
        // Maps `inputs` into `out`, copying the constants they read on first use.
        let map_inputs = |name: &str,
                          inputs: &[ValueId],
                          out: &mut Graph,
                          map: &mut HashMap<ValueId, ValueId>|
         -> Result<Vec<ValueId>, GraphError> {
            let mut new_inputs = Vec::with_capacity(inputs.len());
            for &input in inputs {
                let id = resolve(input);
                let new_id = match map.get(&id) {
                    Some(&new_id) => new_id,
                    None => {
                        let value = source.value(id);
                        let ValueKind::Constant(t) = &value.kind else {
                            return Err(GraphError::Invalid(format!(
                                "node '{name}' reads '{}' before it is defined",
                                value.name
                            )));
                        };
                        let new_id = out.add_constant(value.name.clone(), t.clone());
                        map.insert(id, new_id);
                        new_id
                    }
                };
                new_inputs.push(new_id);
            }
            Ok(new_inputs)
        };
        for (i, node) in source.nodes.iter().enumerate().take(self.absorbed.len()) {
            for (new, placeholder) in self.inserted.get(&NodeId(i)).into_iter().flatten() {
                let inputs = map_inputs(&new.name, &new.inputs, &mut out, &mut map)?;
                let output_name = source.value(*placeholder).name.clone();
                let output = out.add_node(new.name.clone(), new.op.clone(), inputs, output_name)?;
                map.insert(*placeholder, output);
            }
            if self.absorbed[i] {
                continue;
            }
            let (name, op, inputs) = match self.replaced.get(&NodeId(i)) {
                Some(r) => (r.name.clone(), r.op.clone(), r.inputs.clone()),
                None => (node.name.clone(), node.op.clone(), node.inputs.clone()),
            };
            let new_inputs = map_inputs(&name, &inputs, &mut out, &mut map)?;
            let output_name = source.value(node.output).name.clone();
            map.insert(
                node.output,
                out.add_node(name, op, new_inputs, output_name)?,
            );
        }
        for &id in &source.outputs {
            let id = resolve(id);
            let new_id = match map.get(&id) {
                Some(&new_id) => new_id,
                None => match &source.value(id).kind {
                    ValueKind::Constant(t) => {
                        out.add_constant(source.value(id).name.clone(), t.clone())
                    }
                    _ => {
                        return Err(GraphError::Invalid(
                            "a graph output is no longer produced".into(),
                        ))
                    }
                },
            };
            out.outputs.push(new_id);
        }
        out.validate()?;
        Ok(out)
    }
}

/// The single node reading `value`, if exactly one node reads it and it is not a graph output.
pub(crate) fn sole_consumer(graph: &Graph, value: ValueId) -> Option<NodeId> {
    if graph.outputs.contains(&value) {
        return None;
    }
    let mut readers = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.inputs.contains(&value));
    let (first, node) = readers.next()?;
    // A node reading the value twice (x + x) counts as two uses.
    let uses = node.inputs.iter().filter(|&&i| i == value).count();
    (readers.next().is_none() && uses == 1).then_some(NodeId(first))
}

/// The id of the node producing `value`, if a node does.
pub(crate) fn producer_id(graph: &Graph, value: ValueId) -> Option<NodeId> {
    match graph.value(value).kind {
        ValueKind::Node(n) => Some(n),
        _ => None,
    }
}

/// The Conv producing `value`, when `reader` is the only node reading `value` (so fusing the two
/// loses nothing) and no earlier match of the same pass has claimed the Conv: where every conv
/// fusion starts.
pub(crate) fn conv_read_only_by<'g>(
    graph: &'g Graph,
    rewrite: &Rewrite,
    value: ValueId,
    reader: NodeId,
) -> Option<(NodeId, &'g Node, &'g ConvAttrs)> {
    let conv_id = producer_id(graph, value)?;
    let conv = graph.node(conv_id);
    let Op::Conv(attrs) = &conv.op else {
        return None;
    };
    (sole_consumer(graph, value) == Some(reader) && !rewrite.touched(conv_id))
        .then_some((conv_id, conv, attrs))
}
