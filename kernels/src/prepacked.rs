//! fp32 convolution weights packed once, at load time, for the packed GEMM.
//!
//! [`pack_conv_weights_f32`] lays a convolution's weights out as the operand panels the
//! micro-kernel of one ISA reads, so [`crate::conv2d_f32_packed`] never packs weights again;
//! [`PackedConvWeights::from_packed`] wraps floats that already are in that layout (a compiled
//! model file, say) without copying them.
//!
//! # Layout
//!
//! The layout is fixed by the ISA and the weight shape, plus, for the orientation, the number
//! of output positions of the geometry the weights are packed for
//! ([`conv_weights_layout`] tells which). With `k = in_channels / groups * kernel_h *
//! kernel_w`, depth index `p = (ic * kernel_h + ky) * kernel_w + kx` (the order of the ONNX
//! weight tensor), `cout_g = out_channels / groups`:
//!
//! - [`ConvWeightsLayout::Raw`]: the weights as given, `[out_channels, in_channels / groups,
//!   kernel_h, kernel_w]`, `out_channels * k` floats. Used by the generic kernels and by
//!   depthwise convolutions (one input channel per group, not 1x1 stride 1), which run
//!   directly on them.
//! - [`ConvWeightsLayout::RowPanels`] and [`ConvWeightsLayout::ColumnPanels`]: per group (groups
//!   one after another, each `ceil(cout_g / width) * width * k` floats), panels of `width`
//!   consecutive output channels over the whole depth, depth-major: channel `t * width + r` of
//!   the group at depth `p` is at `t * width * k + p * width + r`. Lanes past `cout_g` in the
//!   last panel are zero (their results are computed and discarded, so a non-zero value there
//!   changes no output). The depth is neither padded nor blocked: the GEMM driver cuts it into
//!   KC blocks at run time, and a depth block of a panel is one contiguous run, so any block
//!   size reads the same layout.
//!
//!   `RowPanels` (width = the micro-kernel's MR: 6 on AVX2+FMA, 8 on NEON) computes
//!   `out = W X`, the weight panels being the tile's rows, for outputs with many positions;
//!   `ColumnPanels` (width = NR: 16 on AVX2+FMA, 8 on NEON) computes `out^T = X^T W^T`, the
//!   output positions being the tile's rows, which wastes fewer lanes on small maps such as
//!   ResNet-50's 7x7 (49 positions fill 9 tiles of 6 rows rather than 4 of 16 columns).
//!
//! Either orientation gives bitwise the same outputs (each output is the same sequence of
//! fused multiply-adds), and the same as [`crate::conv2d_f32_with`] on that ISA, which packs
//! on every call with this same code.

use std::borrow::Cow;
use std::fmt;

use crate::generic::{gemm_columns, runs_direct, Conv2dGeometry};
use crate::packed::{MicroKernel, WeightPanels};
use crate::Isa;

/// How a [`PackedConvWeights`] stores its floats; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvWeightsLayout {
    /// `[out_channels, in_channels / groups, kernel_h, kernel_w]`, as given.
    Raw,
    /// Panels of `width` output channels forming the rows of the GEMM tile (`out = W X`).
    RowPanels { width: usize },
    /// Panels of `width` output channels forming the columns of the GEMM tile
    /// (`out^T = X^T W^T`).
    ColumnPanels { width: usize },
}

impl ConvWeightsLayout {
    /// Floats the layout takes for a convolution of geometry `g`, or `None` if that overflows.
    pub fn packed_len(self, g: &Conv2dGeometry) -> Option<usize> {
        let k = g
            .in_channels_per_group()
            .checked_mul(g.kernel_h)?
            .checked_mul(g.kernel_w)?;
        match self {
            ConvWeightsLayout::Raw => g.out_channels.checked_mul(k),
            ConvWeightsLayout::RowPanels { width } | ConvWeightsLayout::ColumnPanels { width } => {
                let panels = g.out_channels_per_group().div_ceil(width);
                panels
                    .checked_mul(width)?
                    .checked_mul(k)?
                    .checked_mul(g.groups)
            }
        }
    }

    /// The panel width, or `None` for raw weights.
    pub fn panel_width(self) -> Option<usize> {
        match self {
            ConvWeightsLayout::Raw => None,
            ConvWeightsLayout::RowPanels { width } | ConvWeightsLayout::ColumnPanels { width } => {
                Some(width)
            }
        }
    }
}

/// Why floats could not be used as packed convolution weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackedWeightsError {
    /// The geometry is unusable (zero stride, groups not dividing the channels, ...).
    Geometry(&'static str),
    /// The weights were packed for an ISA this machine cannot run.
    Unavailable(Isa),
    /// The buffer does not hold exactly the layout's floats.
    Length { expected: usize, found: usize },
}

impl fmt::Display for PackedWeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackedWeightsError::Geometry(problem) => write!(f, "invalid conv geometry: {problem}"),
            PackedWeightsError::Unavailable(isa) => {
                write!(f, "weights packed for {isa}, which this machine cannot run")
            }
            PackedWeightsError::Length { expected, found } => write!(
                f,
                "packed conv weights hold {found} floats, the layout needs {expected}"
            ),
        }
    }
}

impl std::error::Error for PackedWeightsError {}

/// A convolution's weights in the layout one ISA's kernels read (see the module
/// documentation), owned or borrowed from a longer-lived buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedConvWeights<'a> {
    isa: Isa,
    out_channels: usize,
    in_channels_per_group: usize,
    kernel_h: usize,
    kernel_w: usize,
    groups: usize,
    layout: ConvWeightsLayout,
    data: Cow<'a, [f32]>,
}

impl<'a> PackedConvWeights<'a> {
    /// Wraps `data`, already in the layout [`conv_weights_layout`] gives for `isa` and `g`,
    /// without copying it. Fails if the geometry is invalid, the ISA cannot run here or the
    /// length is not the layout's.
    pub fn from_packed(
        isa: Isa,
        g: &Conv2dGeometry,
        data: &'a [f32],
    ) -> Result<PackedConvWeights<'a>, PackedWeightsError> {
        if let Some(problem) = g.problem() {
            return Err(PackedWeightsError::Geometry(problem));
        }
        if !isa.is_available() {
            return Err(PackedWeightsError::Unavailable(isa));
        }
        let layout = conv_weights_layout(isa, g);
        let expected = layout
            .packed_len(g)
            .ok_or(PackedWeightsError::Geometry("weights too large"))?;
        if data.len() != expected {
            return Err(PackedWeightsError::Length {
                expected,
                found: data.len(),
            });
        }
        Ok(PackedConvWeights::new(isa, g, layout, Cow::Borrowed(data)))
    }

    fn new(
        isa: Isa,
        g: &Conv2dGeometry,
        layout: ConvWeightsLayout,
        data: Cow<'a, [f32]>,
    ) -> PackedConvWeights<'a> {
        PackedConvWeights {
            isa,
            out_channels: g.out_channels,
            in_channels_per_group: g.in_channels_per_group(),
            kernel_h: g.kernel_h,
            kernel_w: g.kernel_w,
            groups: g.groups,
            layout,
            data,
        }
    }

    /// The ISA whose kernels these weights are laid out for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// How the floats are laid out.
    pub fn layout(&self) -> ConvWeightsLayout {
        self.layout
    }

    /// The packed floats, e.g. to store them in a compiled model file.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Whether the floats are borrowed rather than owned.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.data, Cow::Borrowed(_))
    }

    /// The same weights owning their floats (copied if they were borrowed).
    pub fn into_owned(self) -> PackedConvWeights<'static> {
        PackedConvWeights {
            data: Cow::Owned(self.data.into_owned()),
            ..self
        }
    }

    /// Whether these weights fit a convolution of geometry `g` (same output and input channels,
    /// kernel size and groups; the spatial sizes may differ from the ones packed for).
    pub fn fits(&self, g: &Conv2dGeometry) -> bool {
        g.out_channels == self.out_channels
            && g.groups == self.groups
            && g.groups > 0
            && g.in_channels_per_group() == self.in_channels_per_group
            && g.kernel_h == self.kernel_h
            && g.kernel_w == self.kernel_w
    }

    pub(crate) fn data(&self) -> &[f32] {
        &self.data
    }
}

/// The layout [`pack_conv_weights_f32`] uses for `isa` and `g`: raw for the generic kernels
/// and for depthwise convolutions, otherwise the panel orientation that pads fewer lanes for
/// the output positions each GEMM of `g` covers (the same rule as the unpacked GEMM's).
/// Panics if `isa` is not available here.
pub fn conv_weights_layout(isa: Isa, g: &Conv2dGeometry) -> ConvWeightsLayout {
    g.assert_valid();
    if isa == Isa::Generic || runs_direct(g) {
        return ConvWeightsLayout::Raw;
    }
    with_kernel!(isa, ConvWeightsLayout::Raw, |kern| panel_layout(kern, g))
}

fn panel_layout<K: MicroKernel>(_kern: &K, g: &Conv2dGeometry) -> ConvWeightsLayout {
    let (m, n) = (g.out_channels_per_group(), gemm_columns(g));
    let padded =
        |rows: usize, cols: usize| rows.div_ceil(K::MR) * K::MR * cols.div_ceil(K::NR) * K::NR;
    // Transposed tiles cost a gather and scatter of C each, so the swap has to save a tenth.
    if 10 * padded(n, m) < 9 * padded(m, n) {
        ConvWeightsLayout::ColumnPanels { width: K::NR }
    } else {
        ConvWeightsLayout::RowPanels { width: K::MR }
    }
}

/// Packs `weights` ([out_channels, in_channels / groups, kernel_h, kernel_w]) for the kernels
/// of `isa`, in the layout [`conv_weights_layout`] gives. Do this once, when the model is
/// loaded; `g`'s spatial sizes only choose the orientation. Panics if `isa` is not available
/// here or the lengths do not match the geometry.
pub fn pack_conv_weights_f32(
    isa: Isa,
    g: &Conv2dGeometry,
    weights: &[f32],
) -> PackedConvWeights<'static> {
    pack_for_call(isa, g, weights).into_owned()
}

/// [`pack_conv_weights_f32`] borrowing `weights` when the layout is raw, for one-off calls.
pub(crate) fn pack_for_call<'a>(
    isa: Isa,
    g: &Conv2dGeometry,
    weights: &'a [f32],
) -> PackedConvWeights<'a> {
    g.assert_valid();
    assert_eq!(weights.len(), g.weights_len(), "conv2d: weights length");
    let layout = conv_weights_layout(isa, g);
    let data = match layout {
        ConvWeightsLayout::Raw => Cow::Borrowed(weights),
        ConvWeightsLayout::RowPanels { width } | ConvWeightsLayout::ColumnPanels { width } => {
            let cout_g = g.out_channels_per_group();
            let k = g.in_channels_per_group() * g.kernel_h * g.kernel_w;
            let per_group = WeightPanels::len(cout_g, k, width);
            let mut packed = vec![0.0f32; per_group * g.groups];
            if per_group > 0 {
                for (dst, src) in packed
                    .chunks_exact_mut(per_group)
                    .zip(weights.chunks_exact(cout_g * k))
                {
                    WeightPanels::pack(dst, src, cout_g, k, width);
                }
            }
            Cow::Owned(packed)
        }
    };
    PackedConvWeights::new(isa, g, layout, data)
}
