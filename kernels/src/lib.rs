//! Compute kernels for Kestrel.
//!
//! Every kernel works on one contiguous NCHW f32 image; the runtime loops over the batch and
//! validates shapes before calling, so kernels only assert their preconditions.
//!
//! `generic` holds plain-Rust kernels written so the compiler can auto-vectorise them. They are
//! the portable fallback and, together with the naive `reference` module, the baseline that
//! tuned per-ISA kernels are tested against.

pub mod generic;

pub use generic::*;
