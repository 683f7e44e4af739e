//! The static memory plan: where every activation of a run lives in one arena.
//!
//! A plan is made once for a set of input shapes and reused by every run with those shapes,
//! so a run allocates nothing but the outputs it returns. Values whose lifetimes (from the
//! node that writes them to the last node that reads them) do not overlap share memory.
//!
//! Some values need no memory of their own:
//! - a view (Flatten, Reshape, Squeeze, Unsqueeze, Identity) is its input's memory read with
//!   another shape, and a channel slice of one image is a window of its input's;
//! - the inputs of a Concat along a contiguous axis are written by their producers straight
//!   into their slice of the concatenated buffer, so the Concat copies nothing.
//!
//! Such values are *members* of a *block*: one region with one lifetime, the union of its
//! members'. Blocks are then placed greedily, largest first, at the lowest offset that no block
//! alive at the same time occupies (the "greedy by size" strategy of mobile runtimes, which
//! lands close to the lower bound of peak live memory on CNNs).

use kestrel_graph::{Graph, Op, ValueId, ValueKind};

/// Offsets are multiples of this many floats (64 bytes: a cache line, and an aligned load for
/// every vector width the kernels use).
const ALIGN_FLOATS: usize = 16;

/// Where one value lives in the arena, in floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub offset: usize,
    pub len: usize,
}

impl Slot {
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }

    pub fn overlaps(&self, other: &Slot) -> bool {
        self.len > 0 && other.len > 0 && self.offset < other.end() && other.offset < self.end()
    }

    fn end(&self) -> usize {
        self.offset + self.len
    }
}

/// The arena layout of every value of a graph for one set of input shapes.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    /// Per value: its place in the arena, or `None` for constants (read where they are).
    slots: Vec<Option<Slot>>,
    /// Per node: whether its output is already in place when its inputs are (a view, or a
    /// Concat whose inputs were written into it), so running it does nothing.
    in_place: Vec<bool>,
    arena_len: usize,
    separate_len: usize,
    concats_in_place: usize,
    slices_in_place: usize,
}

impl MemoryPlan {
    /// Plans `graph` for the value shapes `shapes` (from shape inference). `pinned` values
    /// (the graph outputs and any the caller keeps) live until the end of the run.
    pub fn new(graph: &Graph, shapes: &[Vec<usize>], pinned: &[ValueId]) -> MemoryPlan {
        let values = graph.values.len();
        let len_of = |v: usize| shapes[v].iter().product::<usize>();
        let is_constant = |v: usize| matches!(graph.values[v].kind, ValueKind::Constant(_));

        // Lifetimes in node steps: graph inputs are written before node 0 (step 0), node i
        // writes at step i + 1, and pinned values are read after the last node.
        let end = graph.nodes.len() + 1;
        let mut first = vec![0usize; values];
        let mut last = vec![0usize; values];
        for (i, node) in graph.nodes.iter().enumerate() {
            first[node.output.0] = i + 1;
            last[node.output.0] = last[node.output.0].max(i + 1);
            for input in &node.inputs {
                last[input.0] = last[input.0].max(i + 1);
            }
        }
        for id in pinned.iter().chain(&graph.outputs) {
            if let Some(l) = last.get_mut(id.0) {
                *l = end;
            }
        }

        // Each value starts as its own block; members record their parent and offset in it.
        let mut parent: Vec<usize> = (0..values).collect();
        let mut offset_in_parent = vec![0usize; values];
        let mut in_place = vec![false; graph.nodes.len()];
        let mut concats_in_place = 0;
        let mut slices_in_place = 0;
        let produced_by_node: Vec<bool> = (0..values)
            .map(|v| matches!(graph.values[v].kind, ValueKind::Node(_)))
            .collect();
        let pinned_value = |v: usize| pinned.iter().chain(&graph.outputs).any(|id| id.0 == v);

        for (i, node) in graph.nodes.iter().enumerate() {
            let out = node.output.0;
            if node.op.is_view() && !is_constant(node.inputs[0].0) {
                parent[out] = node.inputs[0].0;
                in_place[i] = true;
                continue;
            }
            if let Op::ChannelSlice { start, .. } = node.op {
                // One image's channels are contiguous, so the slice is a window of its input;
                // a slice that a Concat reads is copied instead, straight into its place there.
                let source = node.inputs[0].0;
                let shape = &shapes[source];
                let feeds_concat = graph
                    .consumers(node.output)
                    .any(|c| matches!(c.op, Op::Concat { .. }));
                if shape.first() == Some(&1) && !is_constant(source) && !feeds_concat {
                    parent[out] = source;
                    offset_in_parent[out] = start * shape[2..].iter().product::<usize>();
                    in_place[i] = true;
                    slices_in_place += 1;
                }
                continue;
            }
            let Op::Concat { axis } = node.op else {
                continue;
            };
            let shape = &shapes[out];
            let contiguous = shape[..axis.min(shape.len())].iter().product::<usize>() == 1;
            let mut distinct = node.inputs.clone();
            distinct.sort();
            distinct.dedup();
            let placeable = |v: usize| produced_by_node[v] && parent[v] == v && !pinned_value(v);
            if !contiguous
                || distinct.len() != node.inputs.len()
                || !node.inputs.iter().all(|id| placeable(id.0))
            {
                continue;
            }
            let inner: usize = shape[axis + 1..].iter().product();
            let mut offset = 0;
            for input in &node.inputs {
                parent[input.0] = out;
                offset_in_parent[input.0] = offset;
                offset += shapes[input.0][axis] * inner;
            }
            in_place[i] = true;
            concats_in_place += 1;
        }

        // Resolve every value to its block root and offset within it; a block lives from its
        // first member's write to its last member's read.
        let mut root = vec![0usize; values];
        let mut offset_in_root = vec![0usize; values];
        for v in 0..values {
            let (mut r, mut off) = (v, 0);
            while parent[r] != r {
                off += offset_in_parent[r];
                r = parent[r];
            }
            root[v] = r;
            offset_in_root[v] = off;
        }
        let mut block_first = vec![usize::MAX; values];
        let mut block_last = vec![0usize; values];
        let mut separate_len = 0;
        for v in (0..values).filter(|&v| !is_constant(v)) {
            let r = root[v];
            block_first[r] = block_first[r].min(first[v]);
            block_last[r] = block_last[r].max(last[v]);
            if r == v {
                separate_len += len_of(v);
            }
        }

        // Largest blocks first, each at the lowest aligned offset free for its lifetime.
        let mut blocks: Vec<usize> = (0..values)
            .filter(|&v| !is_constant(v) && root[v] == v)
            .collect();
        blocks.sort_by_key(|&v| (std::cmp::Reverse(len_of(v)), v));
        let mut placed: Vec<(usize, Slot)> = Vec::with_capacity(blocks.len());
        let mut block_slot = vec![None; values];
        let mut arena_len = 0;
        for &b in &blocks {
            let len = len_of(b);
            let alive_together = |other: usize| {
                block_first[b] <= block_last[other] && block_first[other] <= block_last[b]
            };
            let mut busy: Vec<Slot> = placed
                .iter()
                .filter(|(other, _)| alive_together(*other))
                .map(|&(_, slot)| slot)
                .collect();
            busy.sort_by_key(|s| s.offset);
            let mut offset = 0;
            for slot in &busy {
                let candidate = Slot { offset, len };
                if !candidate.overlaps(slot) {
                    if offset + len <= slot.offset {
                        break;
                    }
                    continue;
                }
                offset = slot.end().next_multiple_of(ALIGN_FLOATS);
            }
            let slot = Slot { offset, len };
            arena_len = arena_len.max(slot.end());
            placed.push((b, slot));
            block_slot[b] = Some(slot);
        }

        let slots = (0..values)
            .map(|v| {
                if is_constant(v) {
                    return None;
                }
                let block = block_slot[root[v]].expect("every block is placed");
                Some(Slot {
                    offset: block.offset + offset_in_root[v],
                    len: len_of(v),
                })
            })
            .collect();
        MemoryPlan {
            slots,
            in_place,
            arena_len,
            separate_len,
            concats_in_place,
            slices_in_place,
        }
    }

    /// Where `value` lives, or `None` for a constant.
    pub fn slot(&self, value: ValueId) -> Option<Slot> {
        self.slots.get(value.0).copied().flatten()
    }

    /// Whether node `index` has nothing to do: its output is already in place.
    pub fn is_in_place(&self, index: usize) -> bool {
        self.in_place[index]
    }

    /// Floats the arena holds.
    pub fn arena_len(&self) -> usize {
        self.arena_len
    }

    /// Bytes the arena holds.
    pub fn arena_bytes(&self) -> usize {
        self.arena_len * std::mem::size_of::<f32>()
    }

    /// Bytes the activations would take with a buffer each and no reuse.
    pub fn separate_bytes(&self) -> usize {
        self.separate_len * std::mem::size_of::<f32>()
    }

    /// Channel slices read in place, as windows of their input.
    pub fn slices_in_place(&self) -> usize {
        self.slices_in_place
    }

    /// Concats whose inputs are written straight into the concatenated buffer.
    pub fn concats_in_place(&self) -> usize {
        self.concats_in_place
    }
}
