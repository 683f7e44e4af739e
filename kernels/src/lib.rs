//! Compute kernels for Kestrel.
//!
//! Every kernel works on one contiguous NCHW f32 image; the runtime loops over the batch and
//! validates shapes before calling, so kernels only assert their preconditions.
//!
//! `generic` holds plain-Rust kernels written so the compiler can auto-vectorise them. They are
//! the portable fallback and, together with the naive `reference` module, the baseline that
//! tuned per-ISA kernels are tested against.
//!
//! [`gemm_f32`] and [`conv2d_f32`] at the crate root dispatch at run time to a packed GEMM
//! with a hand-written micro-kernel (AVX2+FMA on x86_64, NEON on aarch64 and on 32-bit ARM
//! CPUs that have it) or to the generic
//! versions; see [`selected_isa`]. The `*_with` variants run one named implementation.
//!
//! [`int8`] holds the quantized convolution and GEMM (packed micro-kernels for AVX2, NEON with
//! and without the dot-product instructions, and portable Rust), [`quant`] the requantization
//! arithmetic they share with their references.

/// Runs `$body` with `$k` bound to the micro-kernel token of `$isa`, or `$generic` for the
/// portable path; panics if the ISA cannot run here.
macro_rules! with_kernel {
    ($isa:expr, $generic:expr, |$k:ident| $body:expr) => {
        match $isa {
            $crate::Isa::Generic => $generic,
            #[cfg(target_arch = "x86_64")]
            $crate::Isa::Avx2Fma => {
                let $k = &$crate::x86::avx2::Avx2Fma::new()
                    .unwrap_or_else(|| $crate::unavailable($crate::Isa::Avx2Fma));
                $body
            }
            #[cfg(target_arch = "aarch64")]
            $crate::Isa::Neon => {
                let $k = &$crate::neon::Neon::new()
                    .unwrap_or_else(|| $crate::unavailable($crate::Isa::Neon));
                $body
            }
            #[cfg(target_arch = "arm")]
            $crate::Isa::Neon => {
                let $k = &$crate::armv7::NeonArmv7::new()
                    .unwrap_or_else(|| $crate::unavailable($crate::Isa::Neon));
                $body
            }
            #[allow(unreachable_patterns)]
            other => $crate::unavailable(other),
        }
    };
}

#[cold]
fn unavailable(isa: Isa) -> ! {
    panic!("kestrel-kernels: {isa} kernels are not available on this machine")
}

#[cfg(target_arch = "arm")]
mod armv7;
mod dispatch;
pub mod generic;
pub mod int8;
#[cfg(target_arch = "aarch64")]
mod neon;
// Architectures without a packed micro-kernel run the generic kernels, so the packed driver
// and the peak loop are compiled there but unused.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm")),
    allow(dead_code, unused_variables, unreachable_code)
)]
mod packed;
mod parallel;
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm")),
    allow(dead_code, unused_variables, unreachable_code)
)]
mod peak;
mod prepacked;
pub mod quant;
// The vector bodies are instantiated only where an ISA implements them.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code, unused_imports)
)]
mod simd;
#[cfg(target_arch = "x86_64")]
mod x86;

// The crate-root `gemm_f32`, `conv2d_f32` and the kernels from `simd` shadow the generic ones
// from this glob.
pub use dispatch::{choose_isa, selected_isa, Isa, KERNELS_ENV};
pub use generic::*;
pub use int8::{
    conv2d_i8, gemm_i8_i32, gemm_i8_i32_with, pack_conv_weights_i8, pack_conv_weights_i8_with,
    Int8Input, Int8Kernel, Int8Output, PackedConvWeightsI8, QuantizedData,
};
pub use parallel::current_threads;
pub use peak::fma_peak_gmacs;
pub use prepacked::{
    conv_weights_layout, pack_conv_weights_f32, ConvWeightsLayout, PackedConvWeights,
    PackedWeightsError,
};
pub use simd::{
    avg_pool2d_f32, avg_pool2d_f32_with, global_avg_pool_f32, global_avg_pool_f32_with, lrn_f32,
    lrn_f32_with, max_pool2d_f32, max_pool2d_f32_with, softmax_f32, softmax_f32_with,
};

use packed::{MatRef, MicroKernel, WeightPanels};

/// out[m, n] += alpha * sum_k A[m, k] * B[k, n], where A is stored [m, k] (or [k, m] when
/// `a_transposed`) and B is stored [k, n] (or [n, k] when `b_transposed`). out is [m, n].
///
/// Slices must hold exactly `m * k`, `k * n` and `m * n` elements. Runs on
/// [`selected_isa`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_transposed: bool,
    b: &[f32],
    b_transposed: bool,
    alpha: f32,
    out: &mut [f32],
) {
    gemm_f32_with(
        selected_isa(),
        m,
        n,
        k,
        a,
        a_transposed,
        b,
        b_transposed,
        alpha,
        out,
    );
}

/// [`gemm_f32`] on a given implementation. Panics if `isa` is not available here.
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32_with(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_transposed: bool,
    b: &[f32],
    b_transposed: bool,
    alpha: f32,
    out: &mut [f32],
) {
    assert_eq!(a.len(), m * k, "gemm_f32: a has wrong length");
    assert_eq!(b.len(), k * n, "gemm_f32: b has wrong length");
    assert_eq!(out.len(), m * n, "gemm_f32: out has wrong length");
    with_kernel!(
        isa,
        generic::gemm_f32(m, n, k, a, a_transposed, b, b_transposed, alpha, out),
        |kern| {
            let a = if a_transposed {
                MatRef::new(a, 1, m)
            } else {
                MatRef::new(a, k, 1)
            };
            let b = if b_transposed {
                MatRef::new(b, 1, k)
            } else {
                MatRef::new(b, n, 1)
            };
            packed::gemm_acc(kern, m, n, k, alpha, a, b, out, n, 1)
        }
    )
}

/// 2-D convolution; see [`generic::conv2d_f32`] for the layout contract. Runs on
/// [`selected_isa`].
pub fn conv2d_f32(
    g: &Conv2dGeometry,
    input: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    conv2d_f32_with(selected_isa(), g, input, weights, bias, output);
}

/// [`conv2d_f32`] on a given implementation. Panics if `isa` is not available here.
///
/// Packs the weights for this one call; a model that runs many times should pack them once
/// with [`pack_conv_weights_f32`] and call [`conv2d_f32_packed`], which gives bitwise the same
/// output.
pub fn conv2d_f32_with(
    isa: Isa,
    g: &Conv2dGeometry,
    input: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    let packed = prepacked::pack_for_call(isa, g, weights);
    conv2d_f32_packed(g, input, &packed, bias, output);
}

/// 2-D convolution on weights packed beforehand with [`pack_conv_weights_f32`] (or wrapped with
/// [`PackedConvWeights::from_packed`]), on the ISA they were packed for; the layout contract
/// is otherwise [`generic::conv2d_f32`]'s. `g` may differ from the geometry the weights were
/// packed for in its spatial sizes, padding, strides and dilations, not in its channels,
/// kernel size or groups (panics if it does).
pub fn conv2d_f32_packed(
    g: &Conv2dGeometry,
    input: &[f32],
    weights: &PackedConvWeights<'_>,
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    g.assert_valid();
    assert!(
        weights.fits(g),
        "conv2d: packed weights were made for a different weight shape"
    );
    let data = weights.data();
    with_kernel!(
        weights.isa(),
        generic::conv2d_f32(g, input, data, bias, output),
        |kern| conv2d_on_kernel(kern, g, input, data, weights.layout(), bias, output)
    )
}

#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm")),
    allow(dead_code)
)]
fn conv2d_on_kernel<K: MicroKernel>(
    kern: &K,
    g: &Conv2dGeometry,
    input: &[f32],
    weights: &[f32],
    layout: ConvWeightsLayout,
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    let k = g.in_channels_per_group() * g.kernel_h * g.kernel_w;
    let cout_g = g.out_channels_per_group();
    let (width, weights_left) = match layout {
        ConvWeightsLayout::RowPanels { width } => (width, true),
        ConvWeightsLayout::ColumnPanels { width } => (width, false),
        ConvWeightsLayout::Raw => {
            // Depthwise weights run directly; any other product packs them as it goes.
            let products = generic::ConvProducts {
                raw_weights: Some(weights),
                channel_align: 8,
                gemm: &|grp, first, rows, n, b, ldb, c, ldc| {
                    let w = &weights[(grp * cout_g + first) * k..];
                    packed::gemm_acc(
                        kern,
                        rows,
                        n,
                        k,
                        1.0,
                        MatRef::new(w, k, 1),
                        MatRef::new(b, ldb, 1),
                        c,
                        ldc,
                        1,
                    )
                },
            };
            return generic::conv2d_f32_with_products(g, input, bias, output, &products);
        }
    };
    let group_len = WeightPanels::len(cout_g, k, width);
    let products = generic::ConvProducts {
        raw_weights: None,
        channel_align: width,
        gemm: &|grp, first, rows, n, b, ldb, c, ldc| {
            let panels = WeightPanels {
                data: &weights[grp * group_len..(grp + 1) * group_len],
                width,
                k,
            };
            let x = MatRef::new(b, ldb, 1);
            packed::gemm_prepacked(kern, panels, weights_left, first, rows, n, x, c, ldc);
        },
    };
    generic::conv2d_f32_with_products(g, input, bias, output, &products);
}
