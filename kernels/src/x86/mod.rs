//! x86_64 kernels.

pub(crate) mod avx2;
mod vec;
