//! Quantized (int8) convolution and GEMM.
//!
//! Activations are u8 or i8 with a zero point, weights are symmetric i8 with one scale per
//! output channel, products accumulate exactly in i32, and the epilogue requantizes to u8 or
//! i8 (ONNX QLinearConv rounding, see [`crate::quant`]) or dequantizes to f32, with optional
//! ReLU and residual add.
//!
//! Internally an i8 activation is handled as the u8 `x + 128` (its bit pattern with the top
//! bit flipped) with its zero point moved by the same 128, so every kernel sees u8 activations
//! and `x - zero_point` is unchanged. The zero point is not subtracted element by element:
//! `sum_k w (x - zx) = sum_k w x - zx * sum_k w`, so the micro-kernels multiply raw values and
//! the epilogue adds `-zx * weight_sum[oc]` once per output (the per-channel weight sums are
//! computed when the weights are packed). Padding taps read the zero point, so they add
//! nothing, as in QLinearConv.
//!
//! All integer arithmetic is modulo 2^32 (wrapping adds, products exact in i32), so every
//! result is exact whenever the true accumulator plus bias fits an i32, which holds for any
//! depth up to 65536 (`|w (x - zx)| <= 128 * 255`).
//!
//! Weights are packed once, for one micro-kernel, with [`pack_conv_weights_i8`]; the packed
//! form remembers its kernel, and [`conv2d_i8`] runs on it.

mod conv;
mod driver;
mod portable;
pub mod reference;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "aarch64")]
mod neon;

use crate::{selected_isa, Conv2dGeometry, Isa};
use driver::{I8MicroKernel, PackElem};

/// Deepest product the kernels accept: keeps every accumulator inside i32 (see module docs).
pub const MAX_DEPTH_I8: usize = 1 << 16;

/// One of the int8 micro-kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Int8Kernel {
    /// Portable Rust (the fallback, and what armv7 runs).
    Generic,
    /// x86_64 AVX2: i16 operands, `vpmaddwd` into i32.
    Avx2,
    /// aarch64 Advanced SIMD: i16 operands, widening `smlal` by lane into i32 (Cortex-A72).
    NeonWidening,
    /// aarch64 dot-product extension: `sdot` on i8 operands (Cortex-A76 and later).
    NeonDot,
}

impl Int8Kernel {
    /// Every kernel, best first.
    pub const ALL: [Int8Kernel; 4] = [
        Int8Kernel::Avx2,
        Int8Kernel::NeonDot,
        Int8Kernel::NeonWidening,
        Int8Kernel::Generic,
    ];

    /// Short lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Generic => "generic",
            Int8Kernel::Avx2 => "avx2",
            Int8Kernel::NeonWidening => "neon",
            Int8Kernel::NeonDot => "neon-dotprod",
        }
    }

    /// The instruction-set family this kernel belongs to.
    pub fn isa(self) -> Isa {
        match self {
            Int8Kernel::Generic => Isa::Generic,
            Int8Kernel::Avx2 => Isa::Avx2Fma,
            Int8Kernel::NeonWidening | Int8Kernel::NeonDot => Isa::Neon,
        }
    }

    /// Whether this build and this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Int8Kernel::Generic => true,
            Int8Kernel::Avx2 => avx2_detected(),
            Int8Kernel::NeonWidening => cfg!(target_arch = "aarch64"),
            Int8Kernel::NeonDot => dotprod_detected(),
        }
    }

    /// The kernels this machine can run, best first (always ends with `Generic`).
    pub fn available() -> Vec<Int8Kernel> {
        Int8Kernel::ALL
            .into_iter()
            .filter(|k| k.is_available())
            .collect()
    }

    /// The best kernel of the `isa` family that runs here (`Generic` if none does).
    pub fn for_isa(isa: Isa) -> Int8Kernel {
        Int8Kernel::ALL
            .into_iter()
            .find(|k| k.isa() == isa && k.is_available())
            .unwrap_or(Int8Kernel::Generic)
    }

    /// The kernel for [`selected_isa`]: on aarch64 `sdot` only where the CPU has it.
    pub fn selected() -> Int8Kernel {
        Int8Kernel::for_isa(selected_isa())
    }
}

impl std::fmt::Display for Int8Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_detected() -> bool {
    std::is_x86_feature_detected!("avx2")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_detected() -> bool {
    false
}

#[cfg(target_arch = "aarch64")]
fn dotprod_detected() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

#[cfg(not(target_arch = "aarch64"))]
fn dotprod_detected() -> bool {
    false
}

/// Runs `$body` with `$k` bound to the micro-kernel token of `$kernel`; panics if it cannot
/// run here.
macro_rules! with_i8_kernel {
    ($kernel:expr, |$k:ident| $body:expr) => {
        match $kernel {
            Int8Kernel::Generic => {
                let $k = &portable::Portable;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx2 => {
                let $k = &avx2::Avx2I8::new().unwrap_or_else(|| unavailable(Int8Kernel::Avx2));
                $body
            }
            #[cfg(target_arch = "aarch64")]
            Int8Kernel::NeonWidening => {
                let $k = &neon::NeonWidening::new();
                $body
            }
            #[cfg(target_arch = "aarch64")]
            Int8Kernel::NeonDot => {
                let $k = &neon::NeonDot::new().unwrap_or_else(|| unavailable(Int8Kernel::NeonDot));
                $body
            }
            #[allow(unreachable_patterns)]
            other => unavailable(other),
        }
    };
}

#[cold]
fn unavailable(kernel: Int8Kernel) -> ! {
    panic!("kestrel-kernels: the {kernel} int8 kernel is not available on this machine")
}

/// Quantized activation storage: u8 or i8 elements.
#[derive(Clone, Copy, Debug)]
pub enum QuantizedData<'a> {
    U8(&'a [u8]),
    I8(&'a [i8]),
}

impl QuantizedData<'_> {
    pub fn len(&self) -> usize {
        match self {
            QuantizedData::U8(d) => d.len(),
            QuantizedData::I8(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A quantized activation tensor: real value = `(data - zero_point) * scale`. The zero point
/// is in the element type's range (0..=255 for u8, -128..=127 for i8).
#[derive(Clone, Copy, Debug)]
pub struct Int8Input<'a> {
    pub data: QuantizedData<'a>,
    pub scale: f32,
    pub zero_point: i32,
}

impl Int8Input<'_> {
    /// The zero point as the biased u8 the kernels use (i8 values are shifted by 128).
    fn biased_zero_point(&self) -> i32 {
        let (lo, hi, offset) = match self.data {
            QuantizedData::U8(_) => (0, 255, 0),
            QuantizedData::I8(_) => (-128, 127, 128),
        };
        assert!(
            (lo..=hi).contains(&self.zero_point),
            "int8: input zero point {} outside {lo}..={hi}",
            self.zero_point
        );
        self.zero_point + offset
    }
}

/// Where and how a quantized convolution writes its result ([out_channels, out_h, out_w]).
///
/// The residual, when given, has the output's shape and is added before ReLU. For u8 and i8
/// outputs it is in the output's own quantized domain (same scale and zero point), so the
/// fused result is `sat(round(acc * s) + residual)`: one rounding, one saturation. For f32
/// output it is an f32 tensor added to the dequantized value.
#[derive(Debug)]
pub enum Int8Output<'a> {
    U8 {
        data: &'a mut [u8],
        scale: f32,
        zero_point: u8,
        residual: Option<&'a [u8]>,
    },
    I8 {
        data: &'a mut [i8],
        scale: f32,
        zero_point: i8,
        residual: Option<&'a [i8]>,
    },
    F32 {
        data: &'a mut [f32],
        residual: Option<&'a [f32]>,
    },
}

impl Int8Output<'_> {
    fn len(&self) -> usize {
        match self {
            Int8Output::U8 { data, .. } => data.len(),
            Int8Output::I8 { data, .. } => data.len(),
            Int8Output::F32 { data, .. } => data.len(),
        }
    }

    fn residual_len(&self) -> Option<usize> {
        match self {
            Int8Output::U8 { residual, .. } => residual.map(<[u8]>::len),
            Int8Output::I8 { residual, .. } => residual.map(<[i8]>::len),
            Int8Output::F32 { residual, .. } => residual.map(<[f32]>::len),
        }
    }
}

/// Packed weights in the element type of one micro-kernel family.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PackedData {
    I16(Vec<i16>),
    I8(Vec<i8>),
}

/// Convolution weights packed once for one int8 micro-kernel, with the per-output-channel
/// sums and scales the epilogue needs.
///
/// For a grouped or plain convolution the weights of each group are laid out as the
/// kernel's A panels (MR output channels by the whole depth, zero-padded); for a depthwise one
/// (one input channel per group, several groups) they are kept as given and run directly.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedConvWeightsI8 {
    kernel: Int8Kernel,
    out_channels: usize,
    in_channels_per_group: usize,
    kernel_h: usize,
    kernel_w: usize,
    groups: usize,
    depthwise: bool,
    /// Packed elements per group.
    group_stride: usize,
    data: PackedData,
    weight_sums: Vec<i32>,
    weight_scales: Vec<f32>,
}

impl PackedConvWeightsI8 {
    /// The micro-kernel these weights were packed for.
    pub fn kernel(&self) -> Int8Kernel {
        self.kernel
    }

    /// Sum of each output channel's weights.
    pub fn weight_sums(&self) -> &[i32] {
        &self.weight_sums
    }

    /// Per-output-channel weight scales.
    pub fn weight_scales(&self) -> &[f32] {
        &self.weight_scales
    }

    /// Size of the packed weights in bytes.
    pub fn packed_bytes(&self) -> usize {
        match &self.data {
            PackedData::I16(v) => 2 * v.len(),
            PackedData::I8(v) => v.len(),
        }
    }

    fn assert_matches(&self, g: &Conv2dGeometry) {
        g.assert_valid();
        assert!(
            g.out_channels == self.out_channels
                && g.in_channels_per_group() == self.in_channels_per_group
                && g.kernel_h == self.kernel_h
                && g.kernel_w == self.kernel_w
                && g.groups == self.groups,
            "conv2d_i8: packed weights were made for a different weight shape"
        );
    }
}

/// Packs `weights` ([out_channels, in_channels/groups, kernel_h, kernel_w], symmetric i8)
/// with their per-output-channel `weight_scales` for the kernel [`conv2d_i8`] would pick
/// ([`Int8Kernel::selected`]). Do this once at load time.
pub fn pack_conv_weights_i8(
    g: &Conv2dGeometry,
    weights: &[i8],
    weight_scales: &[f32],
) -> PackedConvWeightsI8 {
    pack_conv_weights_i8_with(Int8Kernel::selected(), g, weights, weight_scales)
}

/// [`pack_conv_weights_i8`] for a given micro-kernel. Panics if it is not available here.
pub fn pack_conv_weights_i8_with(
    kernel: Int8Kernel,
    g: &Conv2dGeometry,
    weights: &[i8],
    weight_scales: &[f32],
) -> PackedConvWeightsI8 {
    g.assert_valid();
    assert_eq!(weights.len(), g.weights_len(), "conv2d_i8: weights length");
    assert_eq!(
        weight_scales.len(),
        g.out_channels,
        "conv2d_i8: one weight scale per output channel"
    );
    let k = g.in_channels_per_group() * g.kernel_h * g.kernel_w;
    assert!(
        k <= MAX_DEPTH_I8,
        "conv2d_i8: depth {k} above {MAX_DEPTH_I8}"
    );
    let weight_sums: Vec<i32> = if k == 0 {
        vec![0; g.out_channels]
    } else {
        weights
            .chunks_exact(k)
            .map(|row| row.iter().map(|&w| w as i32).sum())
            .collect()
    };
    let depthwise = g.groups > 1 && g.in_channels_per_group() == 1;
    let cout_g = g.out_channels_per_group();
    let (data, group_stride) = if depthwise {
        (PackedData::I8(weights.to_vec()), cout_g * k)
    } else {
        with_i8_kernel!(kernel, |kern| pack_groups(
            kern, g.groups, cout_g, k, weights
        ))
    };
    PackedConvWeightsI8 {
        kernel,
        out_channels: g.out_channels,
        in_channels_per_group: g.in_channels_per_group(),
        kernel_h: g.kernel_h,
        kernel_w: g.kernel_w,
        groups: g.groups,
        depthwise,
        group_stride,
        data,
        weight_sums,
        weight_scales: weight_scales.to_vec(),
    }
}

fn pack_groups<K: I8MicroKernel>(
    _kern: &K,
    groups: usize,
    rows: usize,
    k: usize,
    weights: &[i8],
) -> (PackedData, usize) {
    let stride = driver::packed_a_len::<K>(rows, k);
    let mut data = vec![K::Elem::default(); groups * stride];
    if stride > 0 {
        for (grp, dst) in data.chunks_exact_mut(stride).enumerate() {
            driver::pack_a::<K>(dst, &weights[grp * rows * k..][..rows * k], rows, k);
        }
    }
    (K::Elem::wrap(data), stride)
}

/// Quantized 2-D convolution over one NCHW image (ONNX QLinearConv, plus fused ReLU and
/// residual add):
///
/// `acc[oc, p] = bias[oc] + sum w[oc, ..] * (x[..] - x_zero_point)`, taps in the padding
/// reading the zero point. For u8/i8 output the result is
/// `sat(round_half_even(acc * x_scale * w_scale[oc] / y_scale) + y_zero_point)`, or with a
/// residual `sat(round_half_even(..) + residual)`; for f32 output it is
/// `acc * x_scale * w_scale[oc] (+ residual)`. ReLU clamps at the output zero point (0 for
/// f32) after the residual.
///
/// input: [in_channels, in_h, in_w]; bias: [out_channels] in i32 at scale
/// `x_scale * w_scale[oc]`; output: [out_channels, out_h, out_w] (overwritten). Pointwise
/// convolutions run as one GEMM per group on the input itself, depthwise ones directly, and
/// everything else as im2col (padded with the input zero point) into the packed GEMM, all on
/// the micro-kernel the weights were packed for. Output channels are split across the threads
/// of the current rayon pool (run it inside `ThreadPool::install` to choose the count); the
/// result is bitwise the same at any thread count.
pub fn conv2d_i8(
    g: &Conv2dGeometry,
    input: Int8Input<'_>,
    weights: &PackedConvWeightsI8,
    bias: Option<&[i32]>,
    relu: bool,
    output: Int8Output<'_>,
) {
    weights.assert_matches(g);
    assert_eq!(
        input.data.len(),
        g.in_channels * g.in_h * g.in_w,
        "conv2d_i8: input length"
    );
    if let Some(bias) = bias {
        assert_eq!(bias.len(), g.out_channels, "conv2d_i8: bias length");
    }
    let out_len = g.out_channels * g.out_h * g.out_w;
    assert_eq!(output.len(), out_len, "conv2d_i8: output length");
    if let Some(len) = output.residual_len() {
        assert_eq!(len, out_len, "conv2d_i8: residual length");
    }
    let zx = input.biased_zero_point();
    let epilogue = conv::Epilogue::new(&input, weights, bias, relu, &output);
    with_i8_kernel!(weights.kernel, |kern| match output {
        Int8Output::U8 { data, residual, .. } => {
            conv_on(kern, g, &input, zx, weights, &epilogue, data, residual)
        }
        Int8Output::I8 { data, residual, .. } => {
            conv_on(kern, g, &input, zx, weights, &epilogue, data, residual)
        }
        Int8Output::F32 { data, residual } => {
            conv_on(kern, g, &input, zx, weights, &epilogue, data, residual)
        }
    })
}

/// [`conv2d_i8`] once the kernel and the output type are known.
#[allow(clippy::too_many_arguments)]
fn conv_on<K: I8MicroKernel, O: conv::OutElem>(
    kern: &K,
    g: &Conv2dGeometry,
    input: &Int8Input<'_>,
    zx: i32,
    weights: &PackedConvWeightsI8,
    epilogue: &conv::Epilogue,
    out: &mut [O],
    residual: Option<&[O]>,
) {
    match input.data {
        QuantizedData::U8(x) => conv::conv2d(kern, g, x, zx, weights, epilogue, out, residual),
        QuantizedData::I8(x) => conv::conv2d(kern, g, x, zx, weights, epilogue, out, residual),
    }
}

/// out[i, j] = sum_p a[i, p] * (b[p, j] - b_zero_point): the exact i32 product of an [m, k]
/// i8 matrix and a [k, n] quantized matrix, on the selected kernel. Overwrites `out` ([m, n]).
pub fn gemm_i8_i32(
    m: usize,
    n: usize,
    k: usize,
    a: &[i8],
    b: QuantizedData<'_>,
    b_zero_point: i32,
    out: &mut [i32],
) {
    gemm_i8_i32_with(Int8Kernel::selected(), m, n, k, a, b, b_zero_point, out);
}

/// [`gemm_i8_i32`] on a given micro-kernel (A is packed on the fly). Panics if `kernel` is not
/// available here or `k` exceeds [`MAX_DEPTH_I8`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_i32_with(
    kernel: Int8Kernel,
    m: usize,
    n: usize,
    k: usize,
    a: &[i8],
    b: QuantizedData<'_>,
    b_zero_point: i32,
    out: &mut [i32],
) {
    assert_eq!(a.len(), m * k, "gemm_i8: a has wrong length");
    assert_eq!(b.len(), k * n, "gemm_i8: b has wrong length");
    assert_eq!(out.len(), m * n, "gemm_i8: out has wrong length");
    assert!(k <= MAX_DEPTH_I8, "gemm_i8: depth {k} above {MAX_DEPTH_I8}");
    let zb = Int8Input {
        data: b,
        scale: 1.0,
        zero_point: b_zero_point,
    }
    .biased_zero_point();
    if m == 0 || n == 0 {
        return;
    }
    let row_sums: Vec<i32> = (0..m)
        .map(|i| a[i * k..(i + 1) * k].iter().map(|&w| w as i32).sum())
        .collect();
    with_i8_kernel!(kernel, |kern| match b {
        QuantizedData::U8(b) => gemm_raw(kern, m, n, k, a, b, zb, &row_sums, out),
        QuantizedData::I8(b) => gemm_raw(kern, m, n, k, a, b, zb, &row_sums, out),
    })
}

#[allow(clippy::too_many_arguments)]
fn gemm_raw<K: I8MicroKernel, T: driver::Activation>(
    kern: &K,
    m: usize,
    n: usize,
    k: usize,
    a: &[i8],
    b: &[T],
    zb: i32,
    row_sums: &[i32],
    out: &mut [i32],
) {
    let mut apack = vec![K::Elem::default(); driver::packed_a_len::<K>(m, k)];
    driver::pack_a::<K>(&mut apack, a, m, k);
    let offsets: Vec<i32> = row_sums
        .iter()
        .map(|&s| (K::ACT_OFFSET - zb).wrapping_mul(s))
        .collect();
    driver::gemm(
        kern,
        m,
        k,
        &apack,
        n,
        b,
        n,
        &mut |r0, c0, rows, cols, sums, ld| {
            for r in 0..rows {
                let row = &sums[r * ld..][..cols];
                let dst = &mut out[(r0 + r) * n + c0..][..cols];
                for (d, &v) in dst.iter_mut().zip(row) {
                    *d = v.wrapping_add(offsets[r0 + r]);
                }
            }
        },
    );
}
