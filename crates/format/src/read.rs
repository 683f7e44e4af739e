//! Loading a `.kst` file: map it, validate everything, decode the graph description and point
//! the `f32` constants into the map.
//!
//! The description is a sequence of little-endian fields: `u8` tags and booleans (0 or 1),
//! `u32` counts before every list and string, `u64` sizes, ids and offsets, `f32` attributes,
//! UTF-8 strings. In order: the values (name, shape, kind: 0 = input with its dims, each
//! 0 + u64 or 1 + name; 1 = constant with dtype, blob offset and element count; 2 = node
//! output with the node id), the nodes (name, operator tag and attributes as `write.rs` lays
//! them out, input ids, output id), the graph input ids and the graph output ids.

use std::path::Path;
use std::sync::Arc;

use kestrel_graph::{
    element_count, Activation, BinaryOp, ConvAttrs, Dim, Epilogue, GemmAttrs, Graph, LrnAttrs,
    MaxPoolStage, Node, NodeId, Op, Padding, PoolAttrs, PoolKind, SharedBytes, Tensor, Value,
    ValueId, ValueKind,
};
use memmap2::Mmap;

use crate::{FormatError, ALIGN, DTYPE_F16, DTYPE_F32, FLAG_F16, HEADER_LEN, MAGIC, VERSION};

/// A read-only memory map of a `.kst` file, shared by the tensors that borrow from it.
struct MappedFile(Mmap);

// SAFETY: an `Mmap` maps one fixed range for its whole life and `deref` returns that range on
// every call; the map is read-only, so Rust code cannot change the bytes. (Another process
// rewriting the file underneath is the caveat every memory-mapped loader shares; see
// `load_file`.)
unsafe impl SharedBytes for MappedFile {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// An owned copy of a file's bytes, 64-byte aligned like a map, for [`load_bytes`].
struct AlignedBytes {
    blocks: Vec<Block>,
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; ALIGN]);

impl AlignedBytes {
    fn copy_of(bytes: &[u8]) -> AlignedBytes {
        let mut blocks = vec![Block([0; ALIGN]); bytes.len().div_ceil(ALIGN)];
        for (block, chunk) in blocks.iter_mut().zip(bytes.chunks(ALIGN)) {
            block.0[..chunk.len()].copy_from_slice(chunk);
        }
        AlignedBytes {
            blocks,
            len: bytes.len(),
        }
    }
}

// SAFETY: the blocks are never resized or written after construction, so the slice is the
// same on every call.
unsafe impl SharedBytes for AlignedBytes {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `Block` is `repr(C)` around a byte array, so it has no padding and the
        // vector's buffer is `blocks.len() * ALIGN` initialised bytes, at least `len`.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast(), self.len) }
    }
}

/// Maps the `.kst` file at `path` and returns its graph, with `f32` weights borrowed from the
/// map (the map lives as long as any tensor of the graph, or a clone of one).
///
/// The file must not be modified while the graph is in use: like every memory-mapped loader,
/// a file truncated underneath would fault on access, and one rewritten would change the
/// weights.
pub fn load_file(path: &Path) -> Result<Graph, FormatError> {
    let file_name = path.display().to_string();
    let io = |source| FormatError::Io {
        file: file_name.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        return Err(corrupt(&file_name, "the file is empty".into()));
    }
    // SAFETY: the map is read-only and outlives every slice taken from it (tensors hold an
    // `Arc` to it). Its contents may change if another process writes the file, which is
    // documented above; the graph is validated once, from the bytes as they were then.
    let map = unsafe { Mmap::map(&file) }.map_err(io)?;
    decode(Arc::new(MappedFile(map)), &file_name)
}

/// Decodes a `.kst` file held in memory; `name` names it in errors. The bytes are copied once
/// into a 64-byte-aligned buffer that the graph's weights then borrow from.
pub fn load_bytes(bytes: &[u8], name: &str) -> Result<Graph, FormatError> {
    decode(Arc::new(AlignedBytes::copy_of(bytes)), name)
}

fn corrupt(file: &str, message: String) -> FormatError {
    FormatError::Corrupt {
        file: file.to_string(),
        message,
    }
}

fn decode(source: Arc<dyn SharedBytes>, file: &str) -> Result<Graph, FormatError> {
    if cfg!(target_endian = "big") {
        return Err(FormatError::BigEndian { file: file.into() });
    }
    let header = check_header(source.bytes(), file)?;
    let bytes = source.bytes();
    let graph = (|| {
        let description = &bytes[header.graph.0..header.graph.1];
        let mut reader = Reader {
            bytes: description,
            pos: 0,
        };
        let blobs = Blobs {
            source: &source,
            f16: header.f16,
            start: header.weights.0,
            end: header.weights.1,
        };
        let graph = read_graph(&mut reader, &blobs)?;
        if reader.pos != description.len() {
            return Err(format!(
                "graph description: {} unexpected bytes after the outputs",
                description.len() - reader.pos
            ));
        }
        check_graph(&graph)?;
        Ok(graph)
    })()
    .map_err(|message| corrupt(file, message))?;
    Ok(graph)
}

/// The validated header: byte ranges of the two sections, and the weights' dtype.
struct Header {
    graph: (usize, usize),
    weights: (usize, usize),
    f16: bool,
}

fn check_header(bytes: &[u8], file: &str) -> Result<Header, FormatError> {
    let fail = |message: String| Err(corrupt(file, message));
    if bytes.is_empty() {
        return fail("the file is empty".into());
    }
    if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
        return fail(format!("truncated to {} bytes", bytes.len()));
    }
    if !bytes.starts_with(&MAGIC) {
        return fail("wrong magic bytes (not a compiled Kestrel graph)".into());
    }
    if bytes.len() < HEADER_LEN {
        return fail(format!(
            "truncated to {} bytes, shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        ));
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let version = u32_at(8);
    if version != VERSION {
        let (age, fix) = if version > VERSION {
            ("newer", "update Kestrel to load it")
        } else {
            ("older", "recompile the model with `kestrel compile`")
        };
        return Err(FormatError::Version {
            file: file.into(),
            found: version,
            age,
            fix,
        });
    }
    let flags = u32_at(12);
    if flags & !FLAG_F16 != 0 {
        return fail(format!("unknown flags {flags:#x}"));
    }
    let total = u64_at(16);
    if total != bytes.len() as u64 {
        return fail(format!(
            "the header says {total} bytes but the file has {} (truncated or extended)",
            bytes.len()
        ));
    }
    let stored = u32_at(24);
    let actual = crc32fast::hash(&bytes[HEADER_LEN..]);
    if stored != actual {
        return fail(format!(
            "checksum mismatch (header {stored:#010x}, contents {actual:#010x}): the file is \
             corrupt"
        ));
    }
    if u32_at(28) != 0 {
        return fail("reserved header bytes are not zero".into());
    }
    let section = |at: usize, what: &str| -> Result<(usize, usize), FormatError> {
        let (offset, len) = (u64_at(at), u64_at(at + 8));
        match offset.checked_add(len) {
            Some(end) if offset >= HEADER_LEN as u64 && end <= total => {
                Ok((offset as usize, end as usize))
            }
            _ => Err(corrupt(
                file,
                format!(
                    "the {what} ({len} bytes at offset {offset}) lies outside the file's \
                     {total} bytes"
                ),
            )),
        }
    };
    let graph = section(32, "graph description")?;
    let weights = section(48, "weights section")?;
    if !weights.0.is_multiple_of(ALIGN) {
        return fail(format!(
            "the weights section at offset {} is not {ALIGN}-byte aligned",
            weights.0
        ));
    }
    Ok(Header {
        graph,
        weights,
        f16: flags & FLAG_F16 != 0,
    })
}

/// Where constants' data comes from.
struct Blobs<'a> {
    source: &'a Arc<dyn SharedBytes>,
    f16: bool,
    start: usize,
    end: usize,
}

impl Blobs<'_> {
    fn tensor(
        &self,
        shape: &[usize],
        dtype: u8,
        offset: u64,
        count: u64,
    ) -> Result<Tensor, String> {
        let expected = if self.f16 { DTYPE_F16 } else { DTYPE_F32 };
        if dtype != expected {
            return Err(format!(
                "dtype {dtype} disagrees with the header's weight type {expected}"
            ));
        }
        let elements = element_count(shape).ok_or_else(|| format!("shape {shape:?} overflows"))?;
        if count != elements as u64 {
            return Err(format!(
                "shape {shape:?} has {elements} elements but its blob holds {count}"
            ));
        }
        let size = if self.f16 { 2 } else { 4 };
        let in_bounds = (count.checked_mul(size))
            .and_then(|n| n.checked_add(offset))
            .is_some_and(|end| offset >= self.start as u64 && end <= self.end as u64);
        if !in_bounds {
            return Err(format!(
                "blob of {count} elements at offset {offset} lies outside the weights section \
                 ({}..{})",
                self.start, self.end
            ));
        }
        if !offset.is_multiple_of(ALIGN as u64) {
            return Err(format!(
                "blob at offset {offset} is not {ALIGN}-byte aligned"
            ));
        }
        let offset = offset as usize;
        if self.f16 {
            // Kernels compute in f32: widening copies, into a buffer of twice the blob's size.
            let blob = &self.source.bytes()[offset..offset + elements * 2];
            let data = blob
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect();
            return Tensor::new(shape.to_vec(), data).ok_or_else(|| "blob size mismatch".into());
        }
        Tensor::from_shared(shape.to_vec(), Arc::clone(self.source), offset)
            .ok_or_else(|| format!("blob at offset {offset} cannot be read in place"))
    }
}

fn read_graph(r: &mut Reader, blobs: &Blobs) -> Result<Graph, String> {
    let mut graph = Graph::default();
    // The smallest value is an input with an empty name, shape and dims list: 13 bytes.
    let n_values = r.count(13, "values")?;
    graph.values.reserve(n_values);
    for i in 0..n_values {
        let value = read_value(r, blobs).map_err(|e| format!("value {i}: {e}"))?;
        graph.values.push(value);
    }
    // The smallest node: empty name, a tag-only operator, no inputs, its output id.
    let n_nodes = r.count(17, "nodes")?;
    graph.nodes.reserve(n_nodes);
    for i in 0..n_nodes {
        let node = read_node(r).map_err(|e| format!("node {i}: {e}"))?;
        graph.nodes.push(node);
    }
    graph.inputs = r.ids("graph inputs")?;
    graph.outputs = r.ids("graph outputs")?;
    Ok(graph)
}

fn read_value(r: &mut Reader, blobs: &Blobs) -> Result<Value, String> {
    let name = r.str()?;
    let shape = r.usizes("shape")?;
    let kind = match r.u8()? {
        0 => {
            let n = r.count(9, "dims")?;
            let mut dims = Vec::with_capacity(n);
            for _ in 0..n {
                dims.push(match r.u8()? {
                    0 => Dim::Fixed(r.usize()?),
                    1 => Dim::Free(r.str()?),
                    t => return Err(format!("'{name}': unknown dimension tag {t}")),
                });
            }
            ValueKind::Input { dims }
        }
        1 => {
            let dtype = r.u8()?;
            let offset = r.u64()?;
            let count = r.u64()?;
            let tensor = blobs
                .tensor(&shape, dtype, offset, count)
                .map_err(|e| format!("'{name}': {e}"))?;
            ValueKind::Constant(tensor)
        }
        2 => ValueKind::Node(NodeId(r.usize()?)),
        t => return Err(format!("'{name}': unknown value kind {t}")),
    };
    Ok(Value { name, shape, kind })
}

fn read_node(r: &mut Reader) -> Result<Node, String> {
    let name = r.str()?;
    let op = read_op(r).map_err(|e| format!("'{name}': {e}"))?;
    let inputs = r.ids("inputs").map_err(|e| format!("'{name}': {e}"))?;
    let output = ValueId(r.usize()?);
    Ok(Node {
        name,
        op,
        inputs,
        output,
    })
}

fn read_op(r: &mut Reader) -> Result<Op, String> {
    Ok(match r.u8()? {
        0 => {
            let kernel = r.pair()?;
            let strides = r.pair()?;
            let dilations = r.pair()?;
            let padding = read_padding(r)?;
            let groups = r.usize()?;
            let residual = r.bool()?;
            let activation = match r.u8()? {
                0 => None,
                1 => Some(Activation::Relu),
                2 => Some(Activation::Clip {
                    min: r.f32()?,
                    max: r.f32()?,
                }),
                t => return Err(format!("unknown activation tag {t}")),
            };
            let pool = match r.u8()? {
                0 => None,
                1 => Some(MaxPoolStage {
                    kernel: r.pair()?,
                    strides: r.pair()?,
                    dilations: r.pair()?,
                    padding: read_padding(r)?,
                    ceil_mode: r.bool()?,
                }),
                t => return Err(format!("unknown conv pool tag {t}")),
            };
            Op::Conv(ConvAttrs {
                kernel,
                strides,
                dilations,
                padding,
                groups,
                epilogue: Epilogue {
                    residual,
                    activation,
                    pool,
                },
            })
        }
        1 => {
            let kind = match r.u8()? {
                0 => PoolKind::Max,
                1 => PoolKind::Average {
                    count_include_pad: r.bool()?,
                },
                t => return Err(format!("unknown pool kind {t}")),
            };
            Op::Pool(PoolAttrs {
                kind,
                kernel: r.pair()?,
                strides: r.pair()?,
                dilations: r.pair()?,
                padding: read_padding(r)?,
                ceil_mode: r.bool()?,
            })
        }
        2 => Op::GlobalAveragePool,
        3 => Op::ReduceMean {
            axes: r.usizes("axes")?,
            keep_dims: r.bool()?,
        },
        4 => Op::Relu,
        5 => Op::Clip {
            min: r.f32()?,
            max: r.f32()?,
        },
        6 => Op::Sigmoid,
        7 => Op::Lrn(LrnAttrs {
            size: r.usize()?,
            alpha: r.f32()?,
            beta: r.f32()?,
            bias: r.f32()?,
        }),
        8 => Op::BatchNorm { epsilon: r.f32()? },
        9 => Op::Binary(match r.u8()? {
            0 => BinaryOp::Add,
            1 => BinaryOp::Sub,
            2 => BinaryOp::Mul,
            3 => BinaryOp::Div,
            4 => BinaryOp::Max,
            5 => BinaryOp::Min,
            6 => BinaryOp::Pow,
            t => return Err(format!("unknown binary operator {t}")),
        }),
        10 => Op::Concat { axis: r.usize()? },
        11 => Op::Gemm(GemmAttrs {
            alpha: r.f32()?,
            beta: r.f32()?,
            trans_a: r.bool()?,
            trans_b: r.bool()?,
        }),
        12 => Op::MatMul,
        13 => Op::Flatten { axis: r.usize()? },
        14 => {
            let n = r.count(8, "reshape target")?;
            let mut shape = Vec::with_capacity(n);
            for _ in 0..n {
                shape.push(r.u64()? as i64);
            }
            Op::Reshape {
                shape,
                allow_zero: r.bool()?,
            }
        }
        15 => Op::Transpose {
            perm: r.usizes("perm")?,
        },
        16 => Op::Softmax {
            axis: r.usize()?,
            coerce_2d: r.bool()?,
        },
        17 => Op::Pad {
            pads: r.usizes("pads")?,
            value: r.f32()?,
        },
        18 => Op::Squeeze {
            axes: r.usizes("axes")?,
        },
        19 => Op::Unsqueeze {
            axes: r.usizes("axes")?,
        },
        20 => Op::Identity,
        21 => Op::ChannelSlice {
            start: r.usize()?,
            end: r.usize()?,
        },
        t => return Err(format!("unknown operator tag {t}")),
    })
}

fn read_padding(r: &mut Reader) -> Result<Padding, String> {
    Ok(match r.u8()? {
        0 => Padding::Explicit {
            begin: r.pair()?,
            end: r.pair()?,
        },
        1 => Padding::SameUpper,
        2 => Padding::SameLower,
        t => return Err(format!("unknown padding tag {t}")),
    })
}

/// The invariants a runnable graph needs beyond its encoding, shared with the writer: every
/// reference in range, nodes in topological order, each value's kind consistent with the
/// node or input list that names it, and shape inference reproducing every stored shape.
pub(crate) fn check_graph(graph: &Graph) -> Result<(), String> {
    graph.validate().map_err(|e| e.to_string())?;
    let n_values = graph.values.len();
    let mut is_input = vec![false; n_values];
    for &id in &graph.inputs {
        let value = &graph.values[id.0];
        if !matches!(value.kind, ValueKind::Input { .. }) || is_input[id.0] {
            return Err(format!(
                "graph input '{}' is not an input value, or is listed twice",
                value.name
            ));
        }
        is_input[id.0] = true;
    }
    for (i, value) in graph.values.iter().enumerate() {
        let name = &value.name;
        if element_count(&value.shape).is_none() {
            return Err(format!("value '{name}': shape {:?} overflows", value.shape));
        }
        match &value.kind {
            ValueKind::Input { dims } => {
                if !is_input[i] {
                    return Err(format!(
                        "value '{name}' is an input the graph does not list"
                    ));
                }
                let nominal: Vec<usize> = dims
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => *n,
                        Dim::Free(_) => 1,
                    })
                    .collect();
                if nominal != value.shape {
                    return Err(format!(
                        "input '{name}': shape {:?} does not match its dimensions",
                        value.shape
                    ));
                }
            }
            ValueKind::Constant(t) => {
                if t.shape() != value.shape {
                    return Err(format!(
                        "constant '{name}': tensor shape {:?} differs from the value's {:?}",
                        t.shape(),
                        value.shape
                    ));
                }
            }
            ValueKind::Node(n) => {
                if graph.nodes.get(n.0).map(|node| node.output) != Some(ValueId(i)) {
                    return Err(format!(
                        "value '{name}' claims to be the output of node {}, which does not \
                         produce it",
                        n.0
                    ));
                }
            }
        }
    }
    let input_shapes: Vec<&[usize]> = graph
        .inputs
        .iter()
        .map(|&id| &graph.values[id.0].shape[..])
        .collect();
    let shapes = graph
        .infer_shapes(&input_shapes)
        .map_err(|e| format!("shape inference fails: {e}"))?;
    for (value, shape) in graph.values.iter().zip(&shapes) {
        if value.shape != *shape {
            return Err(format!(
                "value '{}': stored shape {:?} but shape inference gives {shape:?}",
                value.name, value.shape
            ));
        }
    }
    Ok(())
}

/// Bounds-checked little-endian reads from the graph description.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "graph description ends early (needs {n} bytes at {}, has {})",
                self.pos,
                self.bytes.len() - self.pos
            ));
        };
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn bool(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("invalid boolean {b}")),
        }
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn usize(&mut self) -> Result<usize, String> {
        let v = self.u64()?;
        usize::try_from(v).map_err(|_| format!("size {v} does not fit this target"))
    }

    fn f32(&mut self) -> Result<f32, String> {
        Ok(f32::from_le_bytes(self.array()?))
    }

    /// A list length, refused when `min_item` bytes per item would not fit in what is left:
    /// no allocation is ever larger than the description justifies.
    fn count(&mut self, min_item: usize, what: &str) -> Result<usize, String> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        let left = self.bytes.len() - self.pos;
        if n.saturating_mul(min_item) > left {
            return Err(format!(
                "{n} {what} cannot fit in the {left} bytes left of the graph description"
            ));
        }
        Ok(n)
    }

    fn str(&mut self) -> Result<String, String> {
        let n = self.count(1, "string bytes")?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a name is not valid UTF-8".into())
    }

    fn usizes(&mut self, what: &str) -> Result<Vec<usize>, String> {
        let n = self.count(8, what)?;
        (0..n).map(|_| self.usize()).collect()
    }

    fn ids(&mut self, what: &str) -> Result<Vec<ValueId>, String> {
        Ok(self.usizes(what)?.into_iter().map(ValueId).collect())
    }

    fn pair(&mut self) -> Result<[usize; 2], String> {
        Ok([self.usize()?, self.usize()?])
    }
}
