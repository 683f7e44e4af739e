//! The compiled Kestrel graph file, `.kst`: an optimized [`Graph`] written once, then
//! memory-mapped and run with its weights used in place.
//!
//! Boards load models far more often than they import them, so the file holds the graph the
//! optimizer already produced, in Kestrel's own IR, and the weights exactly as the kernels read
//! them. Loading maps the file, validates it, decodes the small graph description and points
//! every `f32` constant into the map: no weight is parsed or copied. This crate depends on the
//! IR alone (not on the ONNX importer), so a binary that only runs `.kst` files stays small.
//!
//! # Layout
//!
//! All integers are little-endian.
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..8 | magic `KSTGRAPH` |
//! | 8..12 | format version (u32), [`VERSION`] |
//! | 12..16 | flags (u32): bit 0 = weights stored as f16 |
//! | 16..24 | total file length (u64) |
//! | 24..28 | CRC-32 of every byte after the header (u32) |
//! | 28..32 | reserved, zero |
//! | 32..48 | graph description: offset, length (u64 each) |
//! | 48..64 | weights section: offset, length (u64 each) |
//!
//! The graph description (see `read.rs` for the exact encoding) lists the values (name,
//! nominal shape, kind), the nodes (name, operator with all its attributes, inputs, output),
//! the graph inputs with their declared dimensions and the outputs. A constant refers to its
//! blob in the weights section by absolute file offset, element count and dtype; every blob
//! starts on a 64-byte boundary, so in a page-aligned map it is aligned for any SIMD load.
//!
//! # Validation
//!
//! A loaded file is checked completely before anything uses it: magic, version, flags, length,
//! checksum, every offset and length in bounds and aligned, every element count (checked
//! multiplication) matching its blob, every reference in range, nodes in topological order,
//! and shape inference reproducing every stored shape. A truncated, corrupt or hostile file
//! gives a [`FormatError`] naming the file and the problem, never a panic, and nothing is
//! allocated beyond what the file's own size justifies.
//!
//! # Versioning
//!
//! [`VERSION`] changes whenever the encoding changes; a file of any other version is refused
//! with an error saying whether it is older or newer than this build, and the fix (recompile
//! the model, or update Kestrel). Files are cheap to regenerate from the ONNX model, so there
//! is no migration.
//!
//! # f16 weights
//!
//! [`WriteOptions::f16_weights`] halves the file. Kernels compute in `f32`, so f16 weights are
//! widened into owned buffers at load: that load copies and allocates twice the blob size.

mod read;
mod write;

use std::path::Path;

use thiserror::Error;

pub use read::{load_bytes, load_file};
pub use write::{to_bytes, write_file, WriteOptions};

/// The first eight bytes of every `.kst` file.
pub const MAGIC: [u8; 8] = *b"KSTGRAPH";

/// The format version this build writes and reads. Version 2 added the convolution's max-pool
/// stage and the ChannelSlice operator.
pub const VERSION: u32 = 2;

/// Bytes in the fixed header.
pub const HEADER_LEN: usize = 64;

/// Alignment of the weights section and of every blob in it.
pub const ALIGN: usize = 64;

/// Header flag: weights are stored as IEEE half floats.
pub const FLAG_F16: u32 = 1;

/// Element types of a stored blob.
pub(crate) const DTYPE_F32: u8 = 0;
pub(crate) const DTYPE_F16: u8 = 1;

/// Why a `.kst` file could not be written or loaded. Every message names the file.
#[derive(Debug, Error)]
pub enum FormatError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not a valid .kst file: {message}")]
    Corrupt { file: String, message: String },
    #[error(
        "{file}: .kst format version {found} is {age} than the version {VERSION} this build \
         reads; {fix}"
    )]
    Version {
        file: String,
        found: u32,
        age: &'static str,
        fix: &'static str,
    },
    #[error("{file}: cannot write this graph as .kst: {message}")]
    Unsupported { file: String, message: String },
    #[error("{file}: .kst files store little-endian weights; this target is big-endian")]
    BigEndian { file: String },
}

/// Whether `bytes` start like a `.kst` file.
pub fn has_magic(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Whether the file at `path` starts with the `.kst` magic bytes (false if it cannot be read).
pub fn is_kst_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && has_magic(&head)
}
