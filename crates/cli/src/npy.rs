//! `.npy` tensors in and out (float32, C order).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{bail, Context, Result};
use kestrel_graph::Tensor;
use npyz::WriterBuilder;

/// Reads a float32 (or float64, converted) C-order array. The header's shape is checked against
/// the bytes present before the data is read.
pub fn read(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("{}: not a valid .npy file", path.display()))?;
    if npy.order() != npyz::Order::C {
        bail!("{}: Fortran-order arrays are not supported", path.display());
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let dtype = npy.dtype().descr();
    let width = match dtype.as_str() {
        "'<f4'" => 4,
        "'<f8'" => 8,
        other => bail!(
            "{}: dtype {other} is not supported (use float32)",
            path.display()
        ),
    };
    match count.and_then(|c| c.checked_mul(width)) {
        Some(need) if need <= bytes.len() => {}
        _ => bail!(
            "{}: shape {shape:?} needs more data than the file holds",
            path.display()
        ),
    }
    let truncated = || format!("{}: the file ends before its data does", path.display());
    let data: Vec<f32> = if width == 4 {
        npy.into_vec::<f32>().with_context(truncated)?
    } else {
        npy.into_vec::<f64>()
            .with_context(truncated)?
            .into_iter()
            .map(|v| v as f32)
            .collect()
    };
    Tensor::new(shape.clone(), data)
        .with_context(|| format!("{}: data does not match shape {shape:?}", path.display()))
}

pub fn write(path: &Path, tensor: &Tensor) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(BufWriter::new(file))
        .begin_nd()?;
    writer.extend(tensor.data().iter().copied())?;
    writer.finish()?;
    Ok(())
}
