/// How a convolution or pool pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Explicit `[top, left]` and `[bottom, right]` padding.
    Explicit { begin: [usize; 2], end: [usize; 2] },
    /// Output size `ceil(in / stride)`; an odd total puts the extra pixel at the end.
    SameUpper,
    /// Output size `ceil(in / stride)`; an odd total puts the extra pixel at the start.
    SameLower,
}

impl Padding {
    pub const NONE: Padding = Padding::Explicit {
        begin: [0, 0],
        end: [0, 0],
    };
}

/// A 2-D convolution over NCHW. Inputs: data, weights `[out, in / groups, kh, kw]`, optional
/// bias `[out]`, and, when the epilogue adds a residual, the residual tensor (of the output's
/// shape) as a fourth input after a bias.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvAttrs {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub padding: Padding,
    pub groups: usize,
    pub epilogue: Epilogue,
}

impl ConvAttrs {
    /// The same convolution without its pool stage: the full-resolution map it pools.
    pub fn without_pool(&self) -> ConvAttrs {
        let mut attrs = self.clone();
        attrs.epilogue.pool = None;
        attrs
    }
}

/// An elementwise activation a convolution applies to its result before writing it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    /// `clamp(x, min, max)`: ReLU6 is `Clip { min: 0, max: 6 }`.
    Clip {
        min: f32,
        max: f32,
    },
}

impl Activation {
    pub fn apply(self, v: f32) -> f32 {
        match self {
            // `v < 0` rather than `max`: NaN passes through, as the unfused Relu lets it.
            Activation::Relu => {
                if v < 0.0 {
                    0.0
                } else {
                    v
                }
            }
            // min(max(v, min), max), as ONNX Clip: with min > max everything becomes max.
            Activation::Clip { min, max } => {
                let v = if v < min { min } else { v };
                if v > max {
                    max
                } else {
                    v
                }
            }
        }
    }
}

/// What a convolution does to its result before writing it, in this order: add the residual
/// input (a ResNet shortcut), apply the activation, then max-pool. The default does none.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Epilogue {
    pub residual: bool,
    pub activation: Option<Activation>,
    /// A max pool over the activated result: the node's output is the pooled map, and the
    /// full-resolution map is only ever held a band of rows at a time.
    pub pool: Option<MaxPoolStage>,
}

impl Epilogue {
    pub fn is_empty(&self) -> bool {
        !self.residual && self.activation.is_none() && self.pool.is_none()
    }
}

/// The max pool a convolution's epilogue applies, with the attributes of [`PoolAttrs`].
/// Padded cells act as -inf, as in a standalone MaxPool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPoolStage {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub padding: Padding,
    pub ceil_mode: bool,
}

impl MaxPoolStage {
    /// The stage of a max pool, or `None` for an average pool.
    pub fn from_attrs(attrs: &PoolAttrs) -> Option<MaxPoolStage> {
        (attrs.kind == PoolKind::Max).then_some(MaxPoolStage {
            kernel: attrs.kernel,
            strides: attrs.strides,
            dilations: attrs.dilations,
            padding: attrs.padding,
            ceil_mode: attrs.ceil_mode,
        })
    }

    /// The standalone MaxPool this stage performs.
    pub fn attrs(&self) -> PoolAttrs {
        PoolAttrs {
            kind: PoolKind::Max,
            kernel: self.kernel,
            strides: self.strides,
            dilations: self.dilations,
            padding: self.padding,
            ceil_mode: self.ceil_mode,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    /// Average; `count_include_pad` counts the padded taps in the divisor.
    Average {
        count_include_pad: bool,
    },
}

/// A 2-D max or average pool over NCHW.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolAttrs {
    pub kind: PoolKind,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub padding: Padding,
    /// Round the output size up; a window that would start inside the end padding is dropped.
    pub ceil_mode: bool,
}

/// Local response normalisation across channels, as ONNX defines it.
#[derive(Clone, Debug, PartialEq)]
pub struct LrnAttrs {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

/// `alpha * A' * B' + beta * C` with `A'`, `B'` optionally transposed. Inputs: A, B, optional C
/// (unidirectionally broadcast to the output).
#[derive(Clone, Debug, PartialEq)]
pub struct GemmAttrs {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
}

/// An operator. Axes are already normalised to be non-negative.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Conv(ConvAttrs),
    Pool(PoolAttrs),
    /// Mean over all spatial positions: `[N, C, H, W] -> [N, C, 1, 1]`.
    GlobalAveragePool,
    /// Mean over the listed axes.
    ReduceMean {
        axes: Vec<usize>,
        keep_dims: bool,
    },
    Relu,
    /// `clamp(x, min, max)`: ReLU6 is `Clip { min: 0, max: 6 }`.
    Clip {
        min: f32,
        max: f32,
    },
    Sigmoid,
    Lrn(LrnAttrs),
    /// Inference batch normalisation over axis 1. Inputs: data, scale, bias, mean, variance.
    BatchNorm {
        epsilon: f32,
    },
    /// Elementwise with numpy broadcasting.
    Binary(BinaryOp),
    Concat {
        axis: usize,
    },
    Gemm(GemmAttrs),
    /// Numpy-style matrix product of rank >= 2 operands (batch dimensions broadcast).
    MatMul,
    /// `[d0 .. dn] -> [d0 * .. * d(axis-1), d(axis) * .. * dn]`.
    Flatten {
        axis: usize,
    },
    /// ONNX reshape: 0 copies the input dimension (unless `allow_zero`), -1 is inferred.
    Reshape {
        shape: Vec<i64>,
        allow_zero: bool,
    },
    Transpose {
        perm: Vec<usize>,
    },
    /// Softmax along `axis`. `coerce_2d` gives the pre-opset-13 meaning: the input is viewed as
    /// `[prod(d[..axis]), prod(d[axis..])]` and each row is normalised.
    Softmax {
        axis: usize,
        coerce_2d: bool,
    },
    /// Constant padding; `pads` as ONNX: all begins, then all ends.
    Pad {
        pads: Vec<usize>,
        value: f32,
    },
    Squeeze {
        axes: Vec<usize>,
    },
    Unsqueeze {
        axes: Vec<usize>,
    },
    /// Passes its input through (Dropout at inference, Identity).
    Identity,
    /// Channels `start..end` (axis 1) of the input: a branch's share of a merged convolution.
    ChannelSlice {
        start: usize,
        end: usize,
    },
}

impl Op {
    /// A short, stable name for messages and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::Pool(PoolAttrs {
                kind: PoolKind::Max,
                ..
            }) => "MaxPool",
            Op::Pool(_) => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::Relu => "Relu",
            Op::Clip { .. } => "Clip",
            Op::Sigmoid => "Sigmoid",
            Op::Lrn(_) => "LRN",
            Op::BatchNorm { .. } => "BatchNormalization",
            Op::Binary(op) => match op {
                BinaryOp::Add => "Add",
                BinaryOp::Sub => "Sub",
                BinaryOp::Mul => "Mul",
                BinaryOp::Div => "Div",
                BinaryOp::Max => "Max",
                BinaryOp::Min => "Min",
                BinaryOp::Pow => "Pow",
            },
            Op::Concat { .. } => "Concat",
            Op::Gemm(_) => "Gemm",
            Op::MatMul => "MatMul",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Softmax { .. } => "Softmax",
            Op::Pad { .. } => "Pad",
            Op::Squeeze { .. } => "Squeeze",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Identity => "Identity",
            Op::ChannelSlice { .. } => "ChannelSlice",
        }
    }

    /// The accepted numbers of inputs (minimum, maximum).
    pub fn arity(&self) -> (usize, usize) {
        match self {
            Op::Conv(a) if a.epilogue.residual => (4, 4),
            Op::Conv(_) => (2, 3),
            Op::Gemm(_) => (2, 3),
            Op::BatchNorm { .. } => (5, 5),
            Op::Binary(_) | Op::MatMul => (2, 2),
            Op::Concat { .. } => (1, usize::MAX),
            _ => (1, 1),
        }
    }

    /// Operators whose output is their input's memory under another shape.
    pub fn is_view(&self) -> bool {
        matches!(
            self,
            Op::Flatten { .. }
                | Op::Reshape { .. }
                | Op::Squeeze { .. }
                | Op::Unsqueeze { .. }
                | Op::Identity
        )
    }
}
