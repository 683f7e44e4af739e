//! One operator on concrete tensors. Shapes were inferred (and so checked) before a run, so the
//! errors here are the few conditions shape inference cannot see.
//!
//! Every operator writes all of its output slice, wherever the memory plan put it; the slice
//! holds whatever an earlier value left there, so operators that accumulate clear it first.

use std::ops::Range;

use kestrel_graph::{
    resolve_padding, BinaryOp, ConvAttrs, Epilogue, GemmAttrs, LrnAttrs, MaxPoolStage, Op,
    PoolAttrs, PoolKind, Tensor,
};
use kestrel_kernels as k;

type ExecResult = Result<(), String>;

/// A node's input: its shape and its elements, in the arena or in a constant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operand<'a> {
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

impl<'a> Operand<'a> {
    pub fn of(tensor: &'a Tensor) -> Operand<'a> {
        Operand {
            shape: tensor.shape(),
            data: tensor.data(),
        }
    }

    fn shape(&self) -> &'a [usize] {
        self.shape
    }

    fn data(&self) -> &'a [f32] {
        self.data
    }
}

/// Runs `op` on `inputs`, writing its result, of shape `out_shape`, to `out`. A convolution
/// uses `packed_weights`, its constant weights packed when the session was created, when
/// given and fitting.
pub(crate) fn execute(
    op: &Op,
    inputs: &[Operand<'_>],
    packed_weights: Option<&k::PackedConvWeights<'_>>,
    out_shape: &[usize],
    out: &mut [f32],
) -> ExecResult {
    let x = inputs[0];
    match op {
        Op::Conv(attrs) => match &attrs.epilogue.pool {
            None => conv(attrs, inputs, packed_weights, out_shape, out),
            Some(stage) => conv_max_pool(attrs, stage, inputs, packed_weights, out_shape, out),
        },
        Op::Pool(attrs) => pool(attrs, x, out_shape, out),
        Op::GlobalAveragePool => {
            let (n, c) = (x.shape()[0], x.shape()[1]);
            let hw: usize = x.shape()[2..].iter().product();
            for (src, dst) in chunks(x.data(), c * hw, n).zip(out.chunks_mut(c.max(1))) {
                k::global_avg_pool_f32(c, hw, src, dst);
            }
            Ok(())
        }
        Op::ReduceMean { axes, .. } => {
            reduce_mean(x, axes, out);
            Ok(())
        }
        Op::Relu => {
            map(x, out, |v| if v < 0.0 { 0.0 } else { v });
            Ok(())
        }
        Op::Clip { min, max } => {
            out.copy_from_slice(x.data());
            k::clip_f32(out, *min, *max);
            Ok(())
        }
        Op::Sigmoid => {
            map(x, out, |v| 1.0 / (1.0 + (-v).exp()));
            Ok(())
        }
        Op::Lrn(attrs) => {
            lrn(attrs, x, out);
            Ok(())
        }
        Op::BatchNorm { epsilon } => {
            batch_norm(*epsilon, inputs, out);
            Ok(())
        }
        Op::Binary(op) => {
            k::binary_broadcast_f32(
                kernel_binary(*op),
                x.data(),
                x.shape(),
                inputs[1].data(),
                inputs[1].shape(),
                out,
                out_shape,
            );
            Ok(())
        }
        Op::Concat { axis } => {
            concat(inputs, *axis, out_shape, out);
            Ok(())
        }
        Op::Gemm(attrs) => {
            gemm(attrs, inputs, out_shape, out);
            Ok(())
        }
        Op::MatMul => {
            matmul(x, inputs[1], out_shape, out);
            Ok(())
        }
        Op::ChannelSlice { start, end } => {
            channel_slice(x, *start..*end, out);
            Ok(())
        }
        Op::Transpose { perm } => {
            k::transpose_f32(x.data(), x.shape(), perm, out);
            Ok(())
        }
        Op::Softmax { axis, coerce_2d } => {
            softmax(x, *axis, *coerce_2d, out);
            Ok(())
        }
        Op::Pad { pads, value } => {
            k::pad_constant_f32(x.data(), x.shape(), pads, *value, out);
            Ok(())
        }
        // A view of a value in the arena takes no node step (the memory plan aliases it); a
        // view of a constant is copied out.
        Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity => {
            if x.data().len() != out.len() {
                return Err(format!("cannot view {:?} as {out_shape:?}", x.shape()));
            }
            out.copy_from_slice(x.data());
            Ok(())
        }
    }
}

/// `n` consecutive chunks of `len` elements (an empty iterator when `len` is 0, which
/// `chunks` would reject).
fn chunks(data: &[f32], len: usize, n: usize) -> impl Iterator<Item = &[f32]> {
    (0..n).map(move |i| &data[i * len..(i + 1) * len])
}

fn map(x: Operand<'_>, out: &mut [f32], f: impl Fn(f32) -> f32) {
    for (o, &v) in out.iter_mut().zip(x.data()) {
        *o = f(v);
    }
}

fn kernel_binary(op: BinaryOp) -> k::BinaryOp {
    match op {
        BinaryOp::Add => k::BinaryOp::Add,
        BinaryOp::Sub => k::BinaryOp::Sub,
        BinaryOp::Mul => k::BinaryOp::Mul,
        BinaryOp::Div => k::BinaryOp::Div,
        BinaryOp::Max => k::BinaryOp::Max,
        BinaryOp::Min => k::BinaryOp::Min,
        BinaryOp::Pow => k::BinaryOp::Pow,
    }
}

/// Inputs: data, weights, optional bias, and the residual when the epilogue adds one.
fn conv(
    attrs: &ConvAttrs,
    inputs: &[Operand<'_>],
    packed_weights: Option<&k::PackedConvWeights<'_>>,
    out_shape: &[usize],
    out: &mut [f32],
) -> ExecResult {
    let (x, weights, bias) = (inputs[0], inputs[1], inputs.get(2).copied());
    if attrs.strides.contains(&0) || attrs.dilations.contains(&0) {
        return Err("strides and dilations must be positive".into());
    }
    let geometry = conv_geometry(attrs, x.shape(), out_shape);
    let (n, c, h, w) = nchw(x.shape());
    let packed = packed_weights.filter(|p| p.fits(&geometry));
    let bias = bias.map(|b| b.data());
    let out_len: usize = out_shape[1..].iter().product();
    let mut dst = out.chunks_mut(out_len.max(1));
    for src in chunks(x.data(), c * h * w, n) {
        let dst = dst.next().expect("one output image per input image");
        match packed {
            Some(packed) => k::conv2d_f32_packed(&geometry, src, packed, bias, dst),
            None => k::conv2d_f32(&geometry, src, weights.data(), bias, dst),
        }
    }
    apply_epilogue(&attrs.epilogue, inputs.get(3).copied(), out_shape, out)
}

/// The kernel geometry of a convolution with input shape `x_shape` ([n, c, h, w]) and output
/// shape `out_shape`.
pub(crate) fn conv_geometry(
    attrs: &ConvAttrs,
    x_shape: &[usize],
    out_shape: &[usize],
) -> k::Conv2dGeometry {
    let (_, c, h, w) = nchw(x_shape);
    let (begin, _) = resolve_padding(
        &attrs.padding,
        [h, w],
        attrs.kernel,
        attrs.strides,
        attrs.dilations,
    );
    k::Conv2dGeometry {
        in_channels: c,
        in_h: h,
        in_w: w,
        out_channels: out_shape[1],
        out_h: out_shape[2],
        out_w: out_shape[3],
        kernel_h: attrs.kernel[0],
        kernel_w: attrs.kernel[1],
        stride_h: attrs.strides[0],
        stride_w: attrs.strides[1],
        dilation_h: attrs.dilations[0],
        dilation_w: attrs.dilations[1],
        pad_top: begin[0],
        pad_left: begin[1],
        groups: attrs.groups,
    }
}

/// The fused tail of a convolution, on its finished output: `act(out + residual)`.
fn apply_epilogue(
    epilogue: &Epilogue,
    residual: Option<Operand<'_>>,
    out_shape: &[usize],
    out: &mut [f32],
) -> Result<(), String> {
    if epilogue.residual {
        let residual = residual.ok_or("the conv epilogue adds a residual, but none is given")?;
        if residual.shape() != out_shape {
            return Err(format!(
                "residual {:?} does not match the conv output {out_shape:?}",
                residual.shape(),
            ));
        }
        for (o, &r) in out.iter_mut().zip(residual.data()) {
            *o += r;
        }
    }
    if let Some(activation) = epilogue.activation {
        for o in out.iter_mut() {
            *o = activation.apply(*o);
        }
    }
    Ok(())
}

/// Floats of full-resolution conv output a pooled band holds at once (1 MiB): the conv
/// output is computed and pooled this many at a time instead of all at once.
const POOL_BAND_FLOATS: usize = 1 << 18;

/// A convolution whose epilogue max-pools: the conv rows are computed in bands just tall enough
/// for a band of pooled rows, activated, pooled, and dropped, so the full-resolution map never
/// exists. Rows that two bands' windows share (a 3x3 stride-2 pool) are carried over, not
/// recomputed.
fn conv_max_pool(
    attrs: &ConvAttrs,
    stage: &MaxPoolStage,
    inputs: &[Operand<'_>],
    packed_weights: Option<&k::PackedConvWeights<'_>>,
    out_shape: &[usize],
    out: &mut [f32],
) -> ExecResult {
    conv_max_pool_in_bands(
        attrs,
        stage,
        inputs,
        packed_weights,
        out_shape,
        out,
        POOL_BAND_FLOATS,
    )
}

/// [`conv_max_pool`] with bands of about `band_floats` conv outputs (at least one pooled row).
fn conv_max_pool_in_bands(
    attrs: &ConvAttrs,
    stage: &MaxPoolStage,
    inputs: &[Operand<'_>],
    packed_weights: Option<&k::PackedConvWeights<'_>>,
    out_shape: &[usize],
    out: &mut [f32],
    band_floats: usize,
) -> ExecResult {
    if inputs.len() > 3 {
        return Err("a pooling conv epilogue cannot add a residual".into());
    }
    let (x, weights, bias) = (inputs[0], inputs[1], inputs.get(2).copied());
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let conv_shape = Op::Conv(attrs.without_pool()).output_shape(&shapes)?;
    let (n, c, h, w) = nchw(x.shape());
    let (out_c, conv_h, conv_w) = (conv_shape[1], conv_shape[2], conv_shape[3]);
    let (pool_h, pool_w) = (out_shape[2], out_shape[3]);
    if [
        attrs.strides,
        attrs.dilations,
        stage.strides,
        stage.dilations,
    ]
    .iter()
    .any(|pair| pair.contains(&0))
    {
        return Err("strides and dilations must be positive".into());
    }
    let (conv_begin, _) = resolve_padding(
        &attrs.padding,
        [h, w],
        attrs.kernel,
        attrs.strides,
        attrs.dilations,
    );
    let (pool_begin, pool_end) = resolve_padding(
        &stage.padding,
        [conv_h, conv_w],
        stage.kernel,
        stage.strides,
        stage.dilations,
    );
    let bands = PoolBands {
        conv_h,
        stride: stage.strides[0],
        pad_top: pool_begin[0],
        span: stage.dilations[0] * stage.kernel[0].saturating_sub(1) + 1,
    };
    let conv_geometry = |in_h: usize, out_h: usize, pad_top: usize| k::Conv2dGeometry {
        in_channels: c,
        in_h,
        in_w: w,
        out_channels: out_c,
        out_h,
        out_w: conv_w,
        kernel_h: attrs.kernel[0],
        kernel_w: attrs.kernel[1],
        stride_h: attrs.strides[0],
        stride_w: attrs.strides[1],
        dilation_h: attrs.dilations[0],
        dilation_w: attrs.dilations[1],
        pad_top,
        pad_left: conv_begin[1],
        groups: attrs.groups,
    };
    let pool_geometry = |in_h: usize, out_h: usize, pad_top: usize| k::Pool2dGeometry {
        channels: out_c,
        in_h,
        in_w: conv_w,
        out_h,
        out_w: pool_w,
        kernel_h: stage.kernel[0],
        kernel_w: stage.kernel[1],
        stride_h: stage.strides[0],
        stride_w: stage.strides[1],
        dilation_h: stage.dilations[0],
        dilation_w: stage.dilations[1],
        pad_top,
        pad_left: pool_begin[1],
        pad_bottom: 0,
        pad_right: pool_end[1],
    };
    let conv_row = out_c * conv_w;
    let rows_per_band =
        (band_floats / conv_row.max(1)).saturating_sub(bands.span) / bands.stride + 1;
    // Pooled rows whose window starts past the last conv row see only padding: -inf.
    let real_rows = (0..pool_h)
        .take_while(|&p| bands.window(p).0 < conv_h as isize)
        .count();
    let kernel_span_h = attrs.dilations[0] * attrs.kernel[0].saturating_sub(1) + 1;

    let pooled_image = out_c * pool_h * pool_w;
    let mut held = ConvRows::default();
    let mut next = ConvRows::default();
    let (mut fresh, mut input_band, mut pooled) = (Vec::new(), Vec::new(), Vec::new());
    let mut dst = out.chunks_mut(pooled_image.max(1));
    for image in chunks(x.data(), c * h * w, n) {
        let dst = dst.next().expect("one output image per input image");
        dst.fill(f32::NEG_INFINITY);
        held.clear();
        let mut p0 = 0;
        while p0 < real_rows {
            let p1 = (p0 + rows_per_band).min(real_rows);
            let needed = bands.conv_rows(p0, p1);
            // Conv rows not already held: compute them from the input rows they read.
            let new_rows = needed.start.max(held.rows.end).min(needed.end)..needed.end;
            fresh.clear();
            if !new_rows.is_empty() {
                let first = (new_rows.start * attrs.strides[0]) as isize - conv_begin[0] as isize;
                let last = ((new_rows.end - 1) * attrs.strides[0] + kernel_span_h) as isize
                    - conv_begin[0] as isize;
                let in_rows =
                    first.clamp(0, h as isize) as usize..last.clamp(0, h as isize) as usize;
                let in_rows = in_rows.start..in_rows.end.max(in_rows.start);
                let src = if in_rows == (0..h) {
                    image
                } else {
                    copy_rows(image, c, h, w, &in_rows, &mut input_band);
                    &input_band[..]
                };
                // Rows that read only bottom padding get an empty input and come out as bias.
                let pad_top = (in_rows.start as isize - first).max(0) as usize;
                let geometry = conv_geometry(in_rows.len(), new_rows.len(), pad_top);
                fresh.resize(out_c * new_rows.len() * conv_w, 0.0);
                let bias = bias.map(|b| b.data());
                match packed_weights.filter(|p| p.fits(&geometry)) {
                    Some(packed) => k::conv2d_f32_packed(&geometry, src, packed, bias, &mut fresh),
                    None => k::conv2d_f32(&geometry, src, weights.data(), bias, &mut fresh),
                }
                if let Some(activation) = attrs.epilogue.activation {
                    for v in &mut fresh {
                        *v = activation.apply(*v);
                    }
                }
            }
            next.assemble(&held, &fresh, new_rows, needed.clone(), out_c, conv_w);
            std::mem::swap(&mut held, &mut next);

            let pad_top = (needed.start as isize - bands.window(p0).0) as usize;
            let geometry = pool_geometry(needed.len(), p1 - p0, pad_top);
            pooled.resize(out_c * (p1 - p0) * pool_w, 0.0);
            k::max_pool2d_f32(&geometry, &held.data, &mut pooled);
            let band_len = (p1 - p0) * pool_w;
            for (ch, src) in pooled.chunks_exact(band_len.max(1)).enumerate() {
                let at = ch * pool_h * pool_w + p0 * pool_w;
                dst[at..at + band_len].copy_from_slice(src);
            }
            p0 = p1;
        }
    }
    Ok(())
}

/// Which full-resolution rows each pooled row reads, along the height.
struct PoolBands {
    conv_h: usize,
    stride: usize,
    pad_top: usize,
    /// Rows a dilated window spans.
    span: usize,
}

impl PoolBands {
    /// The rows of pooled row `p`'s window, padding included (it may start above row 0).
    fn window(&self, p: usize) -> (isize, isize) {
        let start = (p * self.stride) as isize - self.pad_top as isize;
        (start, start + self.span as isize)
    }

    /// The conv rows pooled rows `p0..p1` read, clipped to the map.
    fn conv_rows(&self, p0: usize, p1: usize) -> Range<usize> {
        let clip = |r: isize| r.clamp(0, self.conv_h as isize) as usize;
        let start = clip(self.window(p0).0);
        start..clip(self.window(p1 - 1).1).max(start)
    }
}

/// A band of full-resolution conv rows, `[channels, rows, width]`.
#[derive(Default)]
struct ConvRows {
    rows: Range<usize>,
    data: Vec<f32>,
}

impl ConvRows {
    fn clear(&mut self) {
        self.rows = 0..0;
        self.data.clear();
    }

    /// Becomes rows `rows`: those `previous` holds are copied from it, and `fresh` holds the
    /// rest, `fresh_rows`, which follow them.
    fn assemble(
        &mut self,
        previous: &ConvRows,
        fresh: &[f32],
        fresh_rows: Range<usize>,
        rows: Range<usize>,
        channels: usize,
        width: usize,
    ) {
        let kept = rows.start..fresh_rows.start.clamp(rows.start, rows.end);
        self.data.clear();
        for ch in 0..channels {
            if !kept.is_empty() {
                let held = previous.rows.len() * width;
                let from = (kept.start - previous.rows.start) * width;
                let at = ch * held + from;
                self.data
                    .extend_from_slice(&previous.data[at..at + kept.len() * width]);
            }
            let n = fresh_rows.len() * width;
            self.data.extend_from_slice(&fresh[ch * n..(ch + 1) * n]);
        }
        self.rows = rows;
    }
}

/// Copies input rows `rows` of every channel of a `[channels, h, w]` image into `band`.
fn copy_rows(
    image: &[f32],
    channels: usize,
    h: usize,
    w: usize,
    rows: &Range<usize>,
    band: &mut Vec<f32>,
) {
    band.clear();
    for ch in 0..channels {
        let plane = &image[ch * h * w..(ch + 1) * h * w];
        band.extend_from_slice(&plane[rows.start * w..rows.end * w]);
    }
}

/// Channels `range` of `x`, copied.
fn channel_slice(x: Operand<'_>, range: Range<usize>, out: &mut [f32]) {
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let inner: usize = x.shape()[2..].iter().product();
    let block = range.len() * inner;
    for (image, dst) in chunks(x.data(), c * inner, n).zip(out.chunks_mut(block.max(1))) {
        dst.copy_from_slice(&image[range.start * inner..range.end * inner]);
    }
}

fn pool(attrs: &PoolAttrs, x: Operand<'_>, out_shape: &[usize], out: &mut [f32]) -> ExecResult {
    let (n, c, h, w) = nchw(x.shape());
    if attrs.strides.contains(&0) || attrs.dilations.contains(&0) {
        return Err("strides and dilations must be positive".into());
    }
    let (begin, end) = resolve_padding(
        &attrs.padding,
        [h, w],
        attrs.kernel,
        attrs.strides,
        attrs.dilations,
    );
    let geometry = k::Pool2dGeometry {
        channels: c,
        in_h: h,
        in_w: w,
        out_h: out_shape[2],
        out_w: out_shape[3],
        kernel_h: attrs.kernel[0],
        kernel_w: attrs.kernel[1],
        stride_h: attrs.strides[0],
        stride_w: attrs.strides[1],
        dilation_h: attrs.dilations[0],
        dilation_w: attrs.dilations[1],
        pad_top: begin[0],
        pad_left: begin[1],
        pad_bottom: end[0],
        pad_right: end[1],
    };
    let out_len = c * out_shape[2] * out_shape[3];
    let mut dst = out.chunks_mut(out_len.max(1));
    for src in chunks(x.data(), c * h * w, n) {
        let dst = dst.next().expect("one output image per input image");
        match attrs.kind {
            PoolKind::Max => k::max_pool2d_f32(&geometry, src, dst),
            PoolKind::Average { count_include_pad } => {
                k::avg_pool2d_f32(&geometry, count_include_pad, src, dst)
            }
        }
    }
    Ok(())
}

fn nchw(shape: &[usize]) -> (usize, usize, usize, usize) {
    (shape[0], shape[1], shape[2], shape[3])
}

fn lrn(attrs: &LrnAttrs, x: Operand<'_>, out: &mut [f32]) {
    let (n, c, h, w) = nchw(x.shape());
    let image = c * h * w;
    let mut dst = out.chunks_mut(image.max(1));
    for src in chunks(x.data(), image, n) {
        let dst = dst.next().expect("one output image per input image");
        k::lrn_f32(
            c,
            h * w,
            attrs.size,
            attrs.alpha,
            attrs.beta,
            attrs.bias,
            src,
            dst,
        );
    }
}

/// y = (x - mean) / sqrt(var + eps) * gamma + beta, applied as one scale and shift per channel.
fn batch_norm(epsilon: f32, inputs: &[Operand<'_>], out: &mut [f32]) {
    let x = inputs[0];
    let [gamma, beta, mean, var] = [1, 2, 3, 4].map(|i| inputs[i].data());
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let hw: usize = x.shape()[2..].iter().product();
    let scale: Vec<f32> = gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| g / (v + epsilon).sqrt())
        .collect();
    let shift: Vec<f32> = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((&b, &m), &s)| b - m * s)
        .collect();
    let image = c * hw;
    let mut dst = out.chunks_mut(image.max(1));
    for src in chunks(x.data(), image, n) {
        let dst = dst.next().expect("one output image per input image");
        k::channel_affine_f32(c, hw, &scale, &shift, src, dst);
    }
}

fn concat(inputs: &[Operand<'_>], axis: usize, out_shape: &[usize], out: &mut [f32]) {
    let outer: usize = out_shape[..axis].iter().product();
    let inner: usize = out_shape[axis + 1..].iter().product();
    let mut at = 0;
    for o in 0..outer {
        for t in inputs {
            let block = t.shape()[axis] * inner;
            out[at..at + block].copy_from_slice(&t.data()[o * block..(o + 1) * block]);
            at += block;
        }
    }
}

/// alpha * A' B' + beta * C, C broadcast to [m, n].
fn gemm(attrs: &GemmAttrs, inputs: &[Operand<'_>], out_shape: &[usize], out: &mut [f32]) {
    let (a, b) = (inputs[0], inputs[1]);
    let (m, n) = (out_shape[0], out_shape[1]);
    let k_dim = if attrs.trans_a {
        a.shape()[0]
    } else {
        a.shape()[1]
    };
    match inputs.get(2) {
        Some(c) if attrs.beta != 0.0 => {
            let beta = [attrs.beta];
            k::binary_broadcast_f32(
                k::BinaryOp::Mul,
                c.data(),
                c.shape(),
                &beta,
                &[],
                out,
                out_shape,
            );
        }
        _ => out.fill(0.0),
    }
    k::gemm_f32(
        m,
        n,
        k_dim,
        a.data(),
        attrs.trans_a,
        b.data(),
        attrs.trans_b,
        attrs.alpha,
        out,
    );
}

/// Numpy matmul over rank >= 2 operands whose batch dimensions broadcast.
fn matmul(a: Operand<'_>, b: Operand<'_>, out_shape: &[usize], out: &mut [f32]) {
    let rank = out_shape.len();
    let (m, n) = (out_shape[rank - 2], out_shape[rank - 1]);
    let k_dim = a.shape()[a.shape().len() - 1];
    let batch_shape = &out_shape[..rank - 2];
    let batches: usize = batch_shape.iter().product();
    let a_batch = broadcast_index(a.shape(), batch_shape);
    let b_batch = broadcast_index(b.shape(), batch_shape);
    out.fill(0.0);
    for i in 0..batches {
        let ai = a_batch(i) * m * k_dim;
        let bi = b_batch(i) * k_dim * n;
        k::gemm_f32(
            m,
            n,
            k_dim,
            &a.data()[ai..ai + m * k_dim],
            false,
            &b.data()[bi..bi + k_dim * n],
            false,
            1.0,
            &mut out[i * m * n..(i + 1) * m * n],
        );
    }
}

/// Maps the flat index of a batch in `batch_shape` to the flat index of the matrix it reads in
/// an operand of `shape` (whose batch dimensions are right-aligned and may be 1 or missing).
fn broadcast_index(shape: &[usize], batch_shape: &[usize]) -> impl Fn(usize) -> usize {
    let own = &shape[..shape.len() - 2];
    let offset = batch_shape.len() - own.len();
    let dims: Vec<(usize, usize, usize)> = (0..batch_shape.len())
        .map(|i| {
            let out_dim = batch_shape[i];
            let own_dim = if i < offset { 1 } else { own[i - offset] };
            let own_stride: usize = if i < offset {
                0
            } else {
                own[i - offset + 1..].iter().product()
            };
            (out_dim, own_dim, own_stride)
        })
        .collect();
    move |mut flat| {
        let mut index = 0;
        for &(out_dim, own_dim, stride) in dims.iter().rev() {
            let coord = flat % out_dim.max(1);
            flat /= out_dim.max(1);
            if own_dim != 1 {
                index += coord * stride;
            }
        }
        index
    }
}

fn softmax(x: Operand<'_>, axis: usize, coerce_2d: bool, out: &mut [f32]) {
    let shape = x.shape();
    let outer: usize = shape[..axis].iter().product();
    if coerce_2d || axis + 1 == shape.len() {
        let cols = x.data().len().checked_div(outer).unwrap_or(0);
        k::softmax_f32(outer, cols, x.data(), out);
        return;
    }
    // Softmax over a middle axis: gather each strided column, normalise it, scatter it back.
    let dim = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut column = vec![0.0; dim];
    let mut normalised = vec![0.0; dim];
    for o in 0..outer {
        for i in 0..inner {
            let base = o * dim * inner + i;
            for (d, v) in column.iter_mut().enumerate() {
                *v = x.data()[base + d * inner];
            }
            k::softmax_f32(1, dim, &column, &mut normalised);
            for (d, &v) in normalised.iter().enumerate() {
                out[base + d * inner] = v;
            }
        }
    }
}

/// Mean over `axes`, accumulated in f64 so large maps lose no precision.
fn reduce_mean(x: Operand<'_>, axes: &[usize], out: &mut [f32]) {
    let shape = x.shape();
    let rank = shape.len();
    let kept_shape: Vec<usize> = (0..rank)
        .map(|i| if axes.contains(&i) { 1 } else { shape[i] })
        .collect();
    let reduced: usize = axes.iter().map(|&a| shape[a]).product();
    let mut sums = vec![0f64; kept_shape.iter().product()];
    let mut kept_strides = vec![0; rank];
    let mut stride = 1;
    for i in (0..rank).rev() {
        kept_strides[i] = if axes.contains(&i) { 0 } else { stride };
        stride *= kept_shape[i];
    }
    let mut coord = vec![0; rank];
    for &v in x.data() {
        let index: usize = coord.iter().zip(&kept_strides).map(|(c, s)| c * s).sum();
        sums[index] += f64::from(v);
        for d in (0..rank).rev() {
            coord[d] += 1;
            if coord[d] < shape[d] {
                break;
            }
            coord[d] = 0;
        }
    }
    for (o, s) in out.iter_mut().zip(sums) {
        *o = if reduced == 0 {
            f32::NAN
        } else {
            (s / reduced as f64) as f32
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_graph::{Activation, Epilogue, Padding};

    fn tensor(shape: &[usize], seed: u64) -> Tensor {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let data = (0..shape.iter().product::<usize>())
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect();
        Tensor::new(shape.to_vec(), data).unwrap()
    }

    fn stage(kernel: usize, stride: usize, padding: Padding, ceil_mode: bool) -> MaxPoolStage {
        MaxPoolStage {
            kernel: [kernel, kernel],
            strides: [stride, stride],
            dilations: [1, 1],
            padding,
            ceil_mode,
        }
    }

    /// Banded conv + pool equals the conv, then the pool, bit for bit: for bands of one pooled
    /// row up to the whole map, for strided and padded convs, and for pools whose windows
    /// overlap, skip rows, or reach into padding at either edge.
    #[test]
    fn banded_conv_max_pool_matches_conv_then_pool() {
        let explicit = |t, b| Padding::Explicit {
            begin: [t, 1],
            end: [b, 0],
        };
        let mut dilated = stage(2, 2, explicit(1, 2), true);
        dilated.dilations = [3, 2];
        let stages = [
            stage(3, 2, Padding::NONE, true),
            stage(2, 2, Padding::NONE, false),
            stage(3, 2, explicit(1, 1), false),
            stage(2, 3, explicit(0, 1), true),
            stage(1, 3, Padding::NONE, false),
            stage(3, 1, Padding::SameLower, false),
            dilated,
        ];
        let convs = [
            ([3, 3], [1, 1], explicit(1, 1)),
            ([3, 2], [2, 1], explicit(2, 0)),
        ];
        let x = tensor(&[2, 3, 17, 11], 1);
        for (kernel, strides, padding) in convs {
            let w = tensor(&[5, 3, kernel[0], kernel[1]], 2);
            let b = tensor(&[5], 3);
            let attrs = ConvAttrs {
                kernel,
                strides,
                dilations: [1, 1],
                padding,
                groups: 1,
                epilogue: Epilogue {
                    activation: Some(Activation::Relu),
                    ..Epilogue::default()
                },
            };
            let inputs = [Operand::of(&x), Operand::of(&w), Operand::of(&b)];
            let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
            let conv_shape = Op::Conv(attrs.clone()).output_shape(&shapes).unwrap();
            let mut full = vec![0.0; conv_shape.iter().product()];
            conv(&attrs, &inputs, None, &conv_shape, &mut full).unwrap();
            let full = Operand {
                shape: &conv_shape,
                data: &full,
            };
            for stage in &stages {
                let pool_attrs = stage.attrs();
                let pool_shape = Op::Pool(pool_attrs.clone())
                    .output_shape(&[&conv_shape])
                    .unwrap();
                let mut want = vec![0.0; pool_shape.iter().product()];
                pool(&pool_attrs, full, &pool_shape, &mut want).unwrap();
                let mut fused = attrs.clone();
                fused.epilogue.pool = Some(*stage);
                for band in [1, 60, 200, 1 << 20] {
                    let mut got = vec![f32::NAN; want.len()];
                    conv_max_pool_in_bands(
                        &fused,
                        stage,
                        &inputs,
                        None,
                        &pool_shape,
                        &mut got,
                        band,
                    )
                    .unwrap();
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{strides:?} {stage:?}, bands of {band}");
                }
            }
        }
    }

    #[test]
    fn channel_slice_copies_the_range_of_every_image() {
        let x = tensor(&[2, 5, 2, 3], 4);
        let mut got = vec![0.0; 24];
        channel_slice(Operand::of(&x), 1..3, &mut got);
        let d = x.data();
        let want: Vec<f32> = [&d[6..18], &d[36..48]].concat();
        assert_eq!(got, want);
    }
}
