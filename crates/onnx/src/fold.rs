//! Constants known at import time, and the evaluation of the small shape-arithmetic operators
//! that exporters emit (`Shape`, `Gather`, `Concat`, `Unsqueeze`, ...), so that they fold away.

use kestrel_graph::{broadcast_shapes, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ConstData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ConstTensor {
    pub shape: Vec<usize>,
    pub data: ConstData,
}

impl ConstTensor {
    pub fn i64s(shape: Vec<usize>, values: Vec<i64>) -> ConstTensor {
        ConstTensor {
            shape,
            data: ConstData::I64(values),
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            ConstData::F32(v) => v.len(),
            ConstData::I64(v) => v.len(),
        }
    }

    /// The values as integers (floats truncated), as shape-like inputs need them.
    pub fn as_i64s(&self) -> Vec<i64> {
        match &self.data {
            ConstData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            ConstData::I64(v) => v.clone(),
        }
    }

    pub fn as_f32s(&self) -> Vec<f32> {
        match &self.data {
            ConstData::F32(v) => v.clone(),
            ConstData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    pub fn to_tensor(&self) -> Tensor {
        Tensor::new(self.shape.clone(), self.as_f32s()).expect("constant length matches shape")
    }

    pub fn scalar_f32(&self) -> Option<f32> {
        (self.len() == 1).then(|| self.as_f32s()[0])
    }

    pub fn reshaped(&self, shape: Vec<usize>) -> ConstTensor {
        ConstTensor {
            shape,
            data: self.data.clone(),
        }
    }

    /// Applies `pick` (source index for each destination index) to the data.
    fn gathered(&self, shape: Vec<usize>, pick: impl Fn(usize) -> usize) -> ConstTensor {
        let n: usize = shape.iter().product();
        let data = match &self.data {
            ConstData::F32(v) => ConstData::F32((0..n).map(|i| v[pick(i)]).collect()),
            ConstData::I64(v) => ConstData::I64((0..n).map(|i| v[pick(i)]).collect()),
        };
        ConstTensor { shape, data }
    }
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Flat index into a tensor of `shape` for the broadcast position `index` of `out_shape`.
fn broadcast_source(index: usize, out_shape: &[usize], shape: &[usize]) -> usize {
    let out_strides = strides(out_shape);
    let src_strides = strides(shape);
    let offset = out_shape.len() - shape.len();
    let mut src = 0;
    for (axis, (&os, &len)) in out_strides.iter().zip(out_shape).enumerate() {
        let coord = (index / os) % len.max(1);
        if axis >= offset && shape[axis - offset] != 1 {
            src += coord * src_strides[axis - offset];
        }
    }
    src
}

pub(crate) fn binary(op: &str, a: &ConstTensor, b: &ConstTensor) -> Result<ConstTensor, String> {
    let shape = broadcast_shapes(&a.shape, &b.shape)?;
    let n: usize = shape.iter().product();
    let ia = |i| broadcast_source(i, &shape, &a.shape);
    let ib = |i| broadcast_source(i, &shape, &b.shape);
    let data = match (&a.data, &b.data) {
        (ConstData::I64(x), ConstData::I64(y)) => {
            let f = |p: i64, q: i64| -> Result<i64, String> {
                Ok(match op {
                    "Add" => p.wrapping_add(q),
                    "Sub" => p.wrapping_sub(q),
                    "Mul" => p.wrapping_mul(q),
                    "Div" if q != 0 => p.wrapping_div(q),
                    "Div" => return Err("integer division by zero".into()),
                    "Max" => p.max(q),
                    "Min" => p.min(q),
                    _ => return Err(format!("cannot fold integer {op}")),
                })
            };
            ConstData::I64(
                (0..n)
                    .map(|i| f(x[ia(i)], y[ib(i)]))
                    .collect::<Result<_, _>>()?,
            )
        }
        _ => {
            let (x, y) = (a.as_f32s(), b.as_f32s());
            let f = |p: f32, q: f32| -> Result<f32, String> {
                Ok(match op {
                    "Add" => p + q,
                    "Sub" => p - q,
                    "Mul" => p * q,
                    "Div" => p / q,
                    "Max" => p.max(q),
                    "Min" => p.min(q),
                    "Pow" => p.powf(q),
                    _ => return Err(format!("cannot fold {op}")),
                })
            };
            ConstData::F32(
                (0..n)
                    .map(|i| f(x[ia(i)], y[ib(i)]))
                    .collect::<Result<_, _>>()?,
            )
        }
    };
    Ok(ConstTensor { shape, data })
}

pub(crate) fn transpose(t: &ConstTensor, perm: &[usize]) -> ConstTensor {
    let shape: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
    let in_strides = strides(&t.shape);
    let out_strides = strides(&shape);
    t.gathered(shape.clone(), |i| {
        perm.iter()
            .enumerate()
            .map(|(axis, &p)| (i / out_strides[axis]) % shape[axis] * in_strides[p])
            .sum()
    })
}

pub(crate) fn concat(parts: &[&ConstTensor], axis: usize) -> Result<ConstTensor, String> {
    let first = parts[0];
    let mut shape = first.shape.clone();
    shape[axis] = parts.iter().map(|p| p.shape[axis]).sum();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let all_int = parts.iter().all(|p| matches!(p.data, ConstData::I64(_)));
    let mut ints = Vec::new();
    let mut floats = Vec::new();
    for o in 0..outer {
        for p in parts {
            let chunk = p.shape[axis] * inner;
            let range = o * chunk..(o + 1) * chunk;
            if all_int {
                ints.extend_from_slice(&p.as_i64s()[range]);
            } else {
                floats.extend_from_slice(&p.as_f32s()[range]);
            }
        }
    }
    let data = if all_int {
        ConstData::I64(ints)
    } else {
        ConstData::F32(floats)
    };
    Ok(ConstTensor { shape, data })
}

/// `Gather` along `axis` with integer `indices` (negative ones count from the end).
pub(crate) fn gather(
    t: &ConstTensor,
    indices: &ConstTensor,
    axis: usize,
) -> Result<ConstTensor, String> {
    let len = t.shape[axis] as i64;
    let idx = indices
        .as_i64s()
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + len } else { i };
            (0..len)
                .contains(&j)
                .then_some(j as usize)
                .ok_or(format!("index {i} out of range"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let inner: usize = t.shape[axis + 1..].iter().product();
    let mut shape = t.shape[..axis].to_vec();
    shape.extend(&indices.shape);
    shape.extend(&t.shape[axis + 1..]);
    let n_idx = idx.len();
    Ok(t.gathered(shape, |i| {
        let o = i / (n_idx * inner);
        let k = (i / inner) % n_idx;
        let r = i % inner;
        (o * t.shape[axis] + idx[k]) * inner + r
    }))
}

/// `Slice` of a constant along the given axes, ONNX semantics (clamped, negative from the end).
pub(crate) fn slice(
    t: &ConstTensor,
    starts: &[i64],
    ends: &[i64],
    axes: &[usize],
    steps: &[i64],
) -> Result<ConstTensor, String> {
    let mut ranges: Vec<(i64, i64, i64)> = t.shape.iter().map(|&d| (0, d as i64, 1)).collect();
    for (k, &axis) in axes.iter().enumerate() {
        let dim = t.shape[axis] as i64;
        let step = steps.get(k).copied().unwrap_or(1);
        if step == 0 {
            return Err("slice step 0".into());
        }
        let clamp = |v: i64, lo: i64, hi: i64| v.clamp(lo, hi);
        let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (lo, hi) = if step > 0 { (0, dim) } else { (-1, dim - 1) };
        ranges[axis] = (
            clamp(norm(starts[k]), lo, hi),
            clamp(norm(ends[k]), lo, hi),
            step,
        );
    }
    let shape: Vec<usize> = ranges
        .iter()
        .map(|&(s, e, st)| {
            let n = if st > 0 {
                (e - s + st - 1) / st
            } else {
                (s - e - st - 1) / -st
            };
            n.max(0) as usize
        })
        .collect();
    let in_strides = strides(&t.shape);
    let out_strides = strides(&shape);
    Ok(t.gathered(shape.clone(), |i| {
        (0..shape.len())
            .map(|a| {
                let c = (i / out_strides[a]) % shape[a];
                (ranges[a].0 + c as i64 * ranges[a].2) as usize * in_strides[a]
            })
            .sum()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_chain_folds() {
        let shape = ConstTensor::i64s(vec![4], vec![2, 3, 4, 5]);
        let first = gather(&shape, &ConstTensor::i64s(vec![], vec![0]), 0).unwrap();
        assert_eq!(first.shape, Vec::<usize>::new());
        let target = concat(
            &[
                &first.reshaped(vec![1]),
                &ConstTensor::i64s(vec![1], vec![-1]),
            ],
            0,
        )
        .unwrap();
        assert_eq!(target.as_i64s(), vec![2, -1]);
    }

    #[test]
    fn transpose_and_slice() {
        let t = ConstTensor::i64s(vec![2, 3], vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(transpose(&t, &[1, 0]).as_i64s(), vec![0, 3, 1, 4, 2, 5]);
        let s = slice(&t, &[1], &[i64::MAX], &[1], &[1]).unwrap();
        assert_eq!(s.as_i64s(), vec![1, 2, 4, 5]);
        let r = slice(&t, &[-1], &[i64::MIN], &[1], &[-1]).unwrap();
        assert_eq!(r.as_i64s(), vec![2, 1, 0, 5, 4, 3]);
    }

    #[test]
    fn broadcast_binary() {
        let a = ConstTensor::i64s(vec![2, 1], vec![1, 2]);
        let b = ConstTensor::i64s(vec![3], vec![10, 20, 30]);
        assert_eq!(
            binary("Mul", &a, &b).unwrap().as_i64s(),
            vec![10, 20, 30, 20, 40, 60]
        );
    }
}
