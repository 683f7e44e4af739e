//! Writing a graph as `.kst`: the graph description, then every constant's data as one
//! 64-byte-aligned blob of the weights section.

use std::path::Path;

use kestrel_graph::{Activation, BinaryOp, Dim, Graph, Op, Padding, PoolKind, Tensor, ValueKind};

use crate::{FormatError, ALIGN, DTYPE_F16, DTYPE_F32, FLAG_F16, HEADER_LEN, MAGIC, VERSION};

/// How to write a `.kst` file.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions {
    /// Store weights as f16: half the size, widened (copied) to f32 at load.
    pub f16_weights: bool,
}

/// Writes `graph` to `path` and returns the file's size in bytes.
pub fn write_file(graph: &Graph, path: &Path, options: WriteOptions) -> Result<u64, FormatError> {
    let file = path.display().to_string();
    let bytes = encode(graph, options).map_err(|message| FormatError::Unsupported {
        file: file.clone(),
        message,
    })?;
    std::fs::write(path, &bytes).map_err(|source| FormatError::Io { file, source })?;
    Ok(bytes.len() as u64)
}

/// The `.kst` encoding of `graph`, in memory.
pub fn to_bytes(graph: &Graph, options: WriteOptions) -> Result<Vec<u8>, FormatError> {
    encode(graph, options).map_err(|message| FormatError::Unsupported {
        file: "<memory>".into(),
        message,
    })
}

fn encode(graph: &Graph, options: WriteOptions) -> Result<Vec<u8>, String> {
    // Refuse what the loader would refuse, so a written file always loads.
    crate::read::check_graph(graph)?;

    // Lay the blobs out first: the description records their absolute offsets, which depend
    // on the description's own length, so encode it once with placeholder offsets to size it.
    if options.f16_weights {
        check_f16_range(graph)?;
    }
    let dtype_size = if options.f16_weights { 2 } else { 4 };
    let constants: Vec<&Tensor> = graph
        .values
        .iter()
        .filter_map(|v| match &v.kind {
            ValueKind::Constant(t) => Some(t),
            _ => None,
        })
        .collect();
    let sized = describe(graph, options, &vec![0; constants.len()]);
    let weights_offset = align(HEADER_LEN + sized.len());
    let mut offsets = Vec::with_capacity(constants.len());
    let mut end = weights_offset;
    for t in &constants {
        let start = align(end);
        offsets.push(start as u64);
        end = start + t.len() * dtype_size;
    }
    let description = describe(graph, options, &offsets);
    debug_assert_eq!(description.len(), sized.len());

    let mut out = vec![0u8; HEADER_LEN];
    out.extend_from_slice(&description);
    for (t, &offset) in constants.iter().zip(&offsets) {
        out.resize(offset as usize, 0);
        if options.f16_weights {
            for &v in t.data() {
                out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
            }
        } else {
            for &v in t.data() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out.resize(align(out.len().max(weights_offset)), 0);
    let total = out.len();
    let checksum = crc32fast::hash(&out[HEADER_LEN..]);

    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    let flags = if options.f16_weights { FLAG_F16 } else { 0 };
    header.extend_from_slice(&flags.to_le_bytes());
    header.extend_from_slice(&(total as u64).to_le_bytes());
    header.extend_from_slice(&checksum.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    for field in [
        HEADER_LEN,
        description.len(),
        weights_offset,
        total - weights_offset,
    ] {
        header.extend_from_slice(&(field as u64).to_le_bytes());
    }
    out[..HEADER_LEN].copy_from_slice(&header);
    Ok(out)
}

fn align(n: usize) -> usize {
    n.next_multiple_of(ALIGN)
}

/// The graph description with the constants' blobs at `offsets` (in value order).
fn describe(graph: &Graph, options: WriteOptions, offsets: &[u64]) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    let mut blobs = offsets.iter();
    w.count(graph.values.len());
    for value in &graph.values {
        w.str(&value.name);
        w.usizes(&value.shape);
        match &value.kind {
            ValueKind::Input { dims } => {
                w.u8(0);
                w.count(dims.len());
                for d in dims {
                    match d {
                        Dim::Fixed(n) => {
                            w.u8(0);
                            w.usize(*n);
                        }
                        Dim::Free(name) => {
                            w.u8(1);
                            w.str(name);
                        }
                    }
                }
            }
            ValueKind::Constant(t) => {
                w.u8(1);
                w.u8(if options.f16_weights {
                    DTYPE_F16
                } else {
                    DTYPE_F32
                });
                w.u64(*blobs.next().expect("one offset per constant"));
                w.usize(t.len());
            }
            ValueKind::Node(n) => {
                w.u8(2);
                w.usize(n.0);
            }
        }
    }
    w.count(graph.nodes.len());
    for node in &graph.nodes {
        w.str(&node.name);
        op(&mut w, &node.op);
        w.count(node.inputs.len());
        for i in &node.inputs {
            w.usize(i.0);
        }
        w.usize(node.output.0);
    }
    for ids in [&graph.inputs, &graph.outputs] {
        w.count(ids.len());
        for i in ids {
            w.usize(i.0);
        }
    }
    w.0
}

fn op(w: &mut Writer, op: &Op) {
    match op {
        Op::Conv(a) => {
            w.u8(0);
            w.pair(a.kernel);
            w.pair(a.strides);
            w.pair(a.dilations);
            padding(w, &a.padding);
            w.usize(a.groups);
            w.bool(a.epilogue.residual);
            match a.epilogue.activation {
                None => w.u8(0),
                Some(Activation::Relu) => w.u8(1),
                Some(Activation::Clip { min, max }) => {
                    w.u8(2);
                    w.f32(min);
                    w.f32(max);
                }
            }
            match &a.epilogue.pool {
                None => w.u8(0),
                Some(p) => {
                    w.u8(1);
                    w.pair(p.kernel);
                    w.pair(p.strides);
                    w.pair(p.dilations);
                    padding(w, &p.padding);
                    w.bool(p.ceil_mode);
                }
            }
        }
        Op::Pool(a) => {
            w.u8(1);
            match a.kind {
                PoolKind::Max => w.u8(0),
                PoolKind::Average { count_include_pad } => {
                    w.u8(1);
                    w.bool(count_include_pad);
                }
            }
            w.pair(a.kernel);
            w.pair(a.strides);
            w.pair(a.dilations);
            padding(w, &a.padding);
            w.bool(a.ceil_mode);
        }
        Op::GlobalAveragePool => w.u8(2),
        Op::ReduceMean { axes, keep_dims } => {
            w.u8(3);
            w.usizes(axes);
            w.bool(*keep_dims);
        }
        Op::Relu => w.u8(4),
        Op::Clip { min, max } => {
            w.u8(5);
            w.f32(*min);
            w.f32(*max);
        }
        Op::Sigmoid => w.u8(6),
        Op::Lrn(a) => {
            w.u8(7);
            w.usize(a.size);
            w.f32(a.alpha);
            w.f32(a.beta);
            w.f32(a.bias);
        }
        Op::BatchNorm { epsilon } => {
            w.u8(8);
            w.f32(*epsilon);
        }
        Op::Binary(b) => {
            w.u8(9);
            w.u8(match b {
                BinaryOp::Add => 0,
                BinaryOp::Sub => 1,
                BinaryOp::Mul => 2,
                BinaryOp::Div => 3,
                BinaryOp::Max => 4,
                BinaryOp::Min => 5,
                BinaryOp::Pow => 6,
            });
        }
        Op::Concat { axis } => {
            w.u8(10);
            w.usize(*axis);
        }
        Op::Gemm(a) => {
            w.u8(11);
            w.f32(a.alpha);
            w.f32(a.beta);
            w.bool(a.trans_a);
            w.bool(a.trans_b);
        }
        Op::MatMul => w.u8(12),
        Op::Flatten { axis } => {
            w.u8(13);
            w.usize(*axis);
        }
        Op::Reshape { shape, allow_zero } => {
            w.u8(14);
            w.count(shape.len());
            for &d in shape {
                w.u64(d as u64);
            }
            w.bool(*allow_zero);
        }
        Op::Transpose { perm } => {
            w.u8(15);
            w.usizes(perm);
        }
        Op::Softmax { axis, coerce_2d } => {
            w.u8(16);
            w.usize(*axis);
            w.bool(*coerce_2d);
        }
        Op::Pad { pads, value } => {
            w.u8(17);
            w.usizes(pads);
            w.f32(*value);
        }
        Op::Squeeze { axes } => {
            w.u8(18);
            w.usizes(axes);
        }
        Op::Unsqueeze { axes } => {
            w.u8(19);
            w.usizes(axes);
        }
        Op::Identity => w.u8(20),
        Op::ChannelSlice { start, end } => {
            w.u8(21);
            w.usize(*start);
            w.usize(*end);
        }
    }
}

fn padding(w: &mut Writer, p: &Padding) {
    match p {
        Padding::Explicit { begin, end } => {
            w.u8(0);
            w.pair(*begin);
            w.pair(*end);
        }
        Padding::SameUpper => w.u8(1),
        Padding::SameLower => w.u8(2),
    }
}

/// Little-endian primitives of the graph description.
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn usize(&mut self, v: usize) {
        self.u64(v as u64);
    }

    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// A length prefix. Counts are u32: no graph has four billion of anything.
    fn count(&mut self, n: usize) {
        let n = u32::try_from(n).expect("fewer than 2^32 items");
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.count(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn usizes(&mut self, v: &[usize]) {
        self.count(v.len());
        for &x in v {
            self.usize(x);
        }
    }

    fn pair(&mut self, v: [usize; 2]) {
        self.usize(v[0]);
        self.usize(v[1]);
    }
}

/// Refuses f16 storage when a finite weight lies beyond f16's range (65504): it would turn
/// into infinity and then NaN in the output, silently.
fn check_f16_range(graph: &Graph) -> Result<(), String> {
    for value in &graph.values {
        let ValueKind::Constant(t) = &value.kind else {
            continue;
        };
        if let Some(&v) = t
            .data()
            .iter()
            .find(|v| v.is_finite() && v.abs() > f32::from(half::f16::MAX))
        {
            return Err(format!(
                "constant '{}' holds {v}, beyond the f16 range of +-65504; store the weights as \
                 f32 (without --f16)",
                value.name
            ));
        }
    }
    Ok(())
}
