use std::fmt;
use std::sync::Arc;

/// Immutable bytes that tensors can borrow their data from, such as a memory-mapped model
/// file. Tensors keep an `Arc` to the owner, so the bytes live as long as any tensor reading
/// them, and cloning such a tensor copies no data.
///
/// # Safety
///
/// `bytes` must return the same slice (same address, same length) on every call for as long
/// as the value lives, and the bytes must not change: tensors check alignment and bounds once,
/// when they are built, and then read the bytes as `f32`s without checking again.
pub unsafe trait SharedBytes: Send + Sync {
    fn bytes(&self) -> &[u8];
}

// SAFETY: a `Vec` behind a shared reference cannot be resized or written, so its slice is the
// same on every call.
unsafe impl SharedBytes for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// Where a tensor's elements live.
#[derive(Clone)]
enum Storage {
    Owned(Vec<f32>),
    /// `len` little-endian `f32`s at byte `offset` of `bytes`, checked in bounds and 4-byte
    /// aligned when the tensor was built.
    Shared {
        bytes: Arc<dyn SharedBytes>,
        offset: usize,
        len: usize,
    },
}

/// A dense, row-major `f32` tensor. Its data is either owned or borrowed from shared bytes
/// (weights used in place from a memory-mapped `.kst` file); writing to borrowed data first
/// copies it.
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Storage,
}

impl Tensor {
    /// Builds a tensor, or returns `None` when `data` does not hold exactly the elements that
    /// `shape` declares.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Option<Tensor> {
        let len = element_count(&shape)?;
        (len == data.len()).then_some(Tensor {
            shape,
            data: Storage::Owned(data),
        })
    }

    /// A tensor reading its elements in place from `bytes[offset..]`, without copying them.
    /// Returns `None` when the element count of `shape` does not fit in `bytes` from
    /// `offset`, when that address is not aligned for `f32`, or on a big-endian target (the
    /// bytes are little-endian).
    pub fn from_shared(
        shape: Vec<usize>,
        bytes: Arc<dyn SharedBytes>,
        offset: usize,
    ) -> Option<Tensor> {
        if cfg!(target_endian = "big") {
            return None;
        }
        let len = element_count(&shape)?;
        let end = len.checked_mul(4)?.checked_add(offset)?;
        let slice = bytes.bytes();
        if end > slice.len() || !(slice.as_ptr() as usize + offset).is_multiple_of(4) {
            return None;
        }
        Some(Tensor {
            shape,
            data: Storage::Shared { bytes, offset, len },
        })
    }

    pub fn zeros(shape: Vec<usize>) -> Tensor {
        let len = shape.iter().product();
        Tensor {
            shape,
            data: Storage::Owned(vec![0.0; len]),
        }
    }

    pub fn scalar(value: f32) -> Tensor {
        Tensor {
            shape: vec![],
            data: Storage::Owned(vec![value]),
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[f32] {
        match &self.data {
            Storage::Owned(data) => data,
            Storage::Shared { bytes, offset, len } => {
                let slice = bytes.bytes();
                // SAFETY: `from_shared` checked that `len` f32s from `offset` lie inside
                // `slice` and that their address is 4-byte aligned, and `SharedBytes`
                // promises the same immutable slice on every call. Every bit pattern is a
                // valid f32, and the target is little-endian like the bytes.
                unsafe { std::slice::from_raw_parts(slice.as_ptr().add(*offset).cast(), *len) }
            }
        }
    }

    /// The data for writing; borrowed data is copied into an owned buffer first.
    pub fn data_mut(&mut self) -> &mut [f32] {
        if let Storage::Shared { .. } = self.data {
            self.data = Storage::Owned(self.data().to_vec());
        }
        match &mut self.data {
            Storage::Owned(data) => data,
            Storage::Shared { .. } => unreachable!("converted to owned above"),
        }
    }

    /// Whether the data is borrowed from shared bytes rather than owned.
    pub fn is_shared(&self) -> bool {
        matches!(self.data, Storage::Shared { .. })
    }

    pub fn into_data(self) -> Vec<f32> {
        match self.data {
            Storage::Owned(data) => data,
            Storage::Shared { .. } => self.data().to_vec(),
        }
    }

    pub fn len(&self) -> usize {
        self.data().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Same data under another shape with the same element count.
    pub fn reshaped(self, shape: Vec<usize>) -> Option<Tensor> {
        (element_count(&shape)? == self.len()).then_some(Tensor {
            shape,
            data: self.data,
        })
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Tensor) -> bool {
        self.shape == other.shape && self.data() == other.data()
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.shape)
            .field("data", &self.data())
            .finish()
    }
}

/// Product of the dimensions, or `None` on overflow.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(values: &[f32]) -> Arc<dyn SharedBytes> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Arc::new(bytes)
    }

    #[test]
    fn shared_data_reads_in_place_and_copies_on_write() {
        let bytes = shared(&[1.0, 2.0, 3.0, 4.0]);
        let base = bytes.bytes().as_ptr() as usize;
        if !base.is_multiple_of(4) {
            return; // The allocator gave an unaligned buffer; nothing to check here.
        }
        let mut t = Tensor::from_shared(vec![2, 2], bytes.clone(), 0).unwrap();
        assert!(t.is_shared());
        assert_eq!(t.data().as_ptr() as usize, base);
        assert_eq!(
            t,
            Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap()
        );
        let view = t.clone().reshaped(vec![4]).unwrap();
        assert!(view.is_shared());
        t.data_mut()[0] = 9.0;
        assert!(!t.is_shared());
        assert_eq!(t.data(), [9.0, 2.0, 3.0, 4.0]);
        assert_eq!(view.data(), [1.0, 2.0, 3.0, 4.0]);
        let tail = Tensor::from_shared(vec![1], bytes.clone(), 12).unwrap();
        assert_eq!(tail.data(), [4.0]);
    }

    #[test]
    fn shared_data_must_fit_and_be_aligned() {
        let bytes = shared(&[1.0, 2.0]);
        assert!(Tensor::from_shared(vec![3], bytes.clone(), 0).is_none());
        assert!(Tensor::from_shared(vec![2], bytes.clone(), 4).is_none());
        assert!(Tensor::from_shared(vec![1], bytes.clone(), 2).is_none());
        assert!(Tensor::from_shared(vec![1 << 62, 8], bytes.clone(), 0).is_none());
        assert!(Tensor::from_shared(vec![0], bytes, 8).is_some());
    }
}
