//! Decoding of ONNX `TensorProto` payloads into constants, with every size checked first.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use tract_onnx::pb::TensorProto;

use crate::fold::{ConstData, ConstTensor};
use crate::ImportError;

// ONNX TensorProto.DataType codes.
const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT8: i32 = 3;
const UINT16: i32 = 4;
const INT16: i32 = 5;
const INT32: i32 = 6;
const INT64: i32 = 7;
const BOOL: i32 = 9;
const FLOAT16: i32 = 10;
const DOUBLE: i32 = 11;
const UINT32: i32 = 12;
const UINT64: i32 = 13;

/// Bytes per element of the data types Kestrel reads, or `None` for the others.
fn element_size(data_type: i32) -> Option<usize> {
    Some(match data_type {
        UINT8 | INT8 | BOOL => 1,
        UINT16 | INT16 | FLOAT16 => 2,
        FLOAT | INT32 | UINT32 => 4,
        INT64 | DOUBLE | UINT64 => 8,
        _ => return None,
    })
}

fn is_float(data_type: i32) -> bool {
    matches!(data_type, FLOAT | FLOAT16 | DOUBLE)
}

pub(crate) fn decode_tensor(
    t: &TensorProto,
    model_dir: Option<&Path>,
) -> Result<ConstTensor, ImportError> {
    let err = |message: String| ImportError::Tensor {
        name: t.name.clone(),
        message,
    };
    let size = element_size(t.data_type)
        .ok_or_else(|| err(format!("unsupported element type code {}", t.data_type)))?;
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| err(format!("negative dimension {d}"))))
        .collect::<Result<Vec<usize>, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| err(format!("shape {shape:?} overflows")))?;
    let byte_len = count
        .checked_mul(size)
        .ok_or_else(|| err(format!("shape {shape:?} overflows")))?;

    let external = t.data_location == Some(1);
    let data = if external {
        let bytes = read_external(t, model_dir, byte_len).map_err(err)?;
        from_raw(t.data_type, &bytes)
    } else if !t.raw_data.is_empty() || count == 0 {
        if t.raw_data.len() != byte_len {
            return Err(err(format!(
                "shape {shape:?} needs {byte_len} bytes of data, the file holds {}",
                t.raw_data.len()
            )));
        }
        from_raw(t.data_type, &t.raw_data)
    } else {
        let (present, data) = match t.data_type {
            FLOAT => (t.float_data.len(), ConstData::F32(t.float_data.clone())),
            DOUBLE => (
                t.double_data.len(),
                ConstData::F32(t.double_data.iter().map(|&x| x as f32).collect()),
            ),
            FLOAT16 => (
                t.int32_data.len(),
                ConstData::F32(
                    t.int32_data
                        .iter()
                        .map(|&x| half::f16::from_bits(x as u16).to_f32())
                        .collect(),
                ),
            ),
            INT64 => (t.int64_data.len(), ConstData::I64(t.int64_data.clone())),
            UINT64 => (
                t.uint64_data.len(),
                ConstData::I64(t.uint64_data.iter().map(|&x| x as i64).collect()),
            ),
            _ => (
                t.int32_data.len(),
                ConstData::I64(t.int32_data.iter().map(|&x| x as i64).collect()),
            ),
        };
        if present != count {
            return Err(err(format!(
                "shape {shape:?} needs {count} values, the file holds {present}"
            )));
        }
        data
    };
    debug_assert_eq!(is_float(t.data_type), matches!(data, ConstData::F32(_)));
    Ok(ConstTensor { shape, data })
}

fn from_raw(data_type: i32, bytes: &[u8]) -> ConstData {
    fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        bytes
            .chunks_exact(N)
            .map(|c| c.try_into().expect("chunk of N bytes"))
    }
    match data_type {
        FLOAT => ConstData::F32(chunks::<4>(bytes).map(f32::from_le_bytes).collect()),
        DOUBLE => ConstData::F32(
            chunks::<8>(bytes)
                .map(|b| f64::from_le_bytes(b) as f32)
                .collect(),
        ),
        FLOAT16 => ConstData::F32(
            chunks::<2>(bytes)
                .map(|b| half::f16::from_le_bytes(b).to_f32())
                .collect(),
        ),
        UINT8 | BOOL => ConstData::I64(bytes.iter().map(|&b| b as i64).collect()),
        INT8 => ConstData::I64(bytes.iter().map(|&b| b as i8 as i64).collect()),
        UINT16 => ConstData::I64(
            chunks::<2>(bytes)
                .map(|b| u16::from_le_bytes(b) as i64)
                .collect(),
        ),
        INT16 => ConstData::I64(
            chunks::<2>(bytes)
                .map(|b| i16::from_le_bytes(b) as i64)
                .collect(),
        ),
        INT32 => ConstData::I64(
            chunks::<4>(bytes)
                .map(|b| i32::from_le_bytes(b) as i64)
                .collect(),
        ),
        UINT32 => ConstData::I64(
            chunks::<4>(bytes)
                .map(|b| u32::from_le_bytes(b) as i64)
                .collect(),
        ),
        _ => ConstData::I64(chunks::<8>(bytes).map(i64::from_le_bytes).collect()),
    }
}

/// Reads an external-data tensor, which must live inside the model's folder.
fn read_external(
    t: &TensorProto,
    model_dir: Option<&Path>,
    byte_len: usize,
) -> Result<Vec<u8>, String> {
    let entry = |key: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    };
    let location = entry("location").ok_or("external data without a location")?;
    let number = |key: &str| -> Result<Option<u64>, String> {
        entry(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("external data {key} '{v}' is not a number"))
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    if let Some(length) = number("length")? {
        if length != byte_len as u64 {
            return Err(format!(
                "external data length {length} does not match the shape ({byte_len} bytes)"
            ));
        }
    }
    let relative = Path::new(location);
    let escapes = relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes {
        return Err(format!(
            "external data location '{location}' leaves the model's folder; only relative paths inside it are allowed"
        ));
    }
    let dir = model_dir.ok_or("external data needs the model's folder, which is unknown here")?;
    let path = dir.join(relative);
    // The name stays inside the folder; a symbolic link on the way must not lead out of it.
    let cannot_open =
        |e: std::io::Error| format!("cannot open external data {}: {e}", path.display());
    let real = std::fs::canonicalize(&path).map_err(cannot_open)?;
    let real_dir = std::fs::canonicalize(dir).map_err(cannot_open)?;
    if !real.starts_with(&real_dir) {
        return Err(format!(
            "external data location '{location}' resolves to {}, outside the model's folder",
            real.display()
        ));
    }
    // A directory would fail late, a FIFO or device could block or never end.
    if !std::fs::metadata(&real).map_err(cannot_open)?.is_file() {
        return Err(format!(
            "external data {} is not a regular file",
            path.display()
        ));
    }
    let mut file = std::fs::File::open(&real).map_err(cannot_open)?;
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    if offset
        .checked_add(byte_len as u64)
        .is_none_or(|end| end > file_len)
    {
        return Err(format!(
            "external data {} holds {file_len} bytes, the tensor needs {byte_len} at offset {offset}",
            path.display()
        ));
    }
    let mut bytes = vec![0u8; byte_len];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| format!("reading external data {}: {e}", path.display()))?;
    Ok(bytes)
}
