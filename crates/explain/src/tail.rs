//! Recognising the classifier tail CAM needs, walking back from a graph output.

use kestrel_graph::{
    pool_output_size, resolve_padding, BinaryOp, GemmAttrs, Graph, Node, Op, PoolAttrs, PoolKind,
    Tensor, ValueId, ValueKind,
};

use crate::heatmap::Heatmap;
use crate::CamError;

/// The classifier tail CAM needs: feature maps `[N, K, h, w]` -> global average
/// (GlobalAveragePool, ReduceMean over the spatial axes, or an AveragePool whose single window
/// covers the whole map) -> optional Flatten/Reshape/Identity/Squeeze/Unsqueeze (Dropout imports
/// as Identity) -> fully connected layer (Gemm by constant weights, or MatMul by constant weights
/// with an optional Add of a constant bias) -> optional Softmax.
#[derive(Clone, Debug, PartialEq)]
pub struct CamTail {
    /// The `[N, K, h, w]` feature map.
    pub features: ValueId,
    /// The global average of `features`, as the graph computes it.
    pub pooled: ValueId,
    /// The fully connected layer's output (before any softmax).
    pub logits: ValueId,
    /// K.
    pub channels: usize,
    pub classes: usize,
    /// `[classes, K]`, row-major, with Gemm's alpha folded in.
    pub weights: Vec<f32>,
    /// `[classes]`, with Gemm's beta folded in.
    pub bias: Vec<f32>,
    /// `(h, w)` of the feature map at the graph's nominal input size.
    pub feature_size: (usize, usize),
}

impl CamTail {
    /// The weights of `class` over the K channels.
    pub fn class_weights(&self, class: usize) -> Option<&[f32]> {
        let k = self.channels;
        let start = class.checked_mul(k)?;
        self.weights.get(start..start.checked_add(k)?)
    }

    /// The CAM paper's `M_c(x, y) = sum_k w[c, k] * f_k(x, y)` for image `image` of a
    /// `[N, K, h, w]` feature tensor. The bias is not added (as in the paper), so the mean of the
    /// map plus `bias[class]` is the class logit.
    pub fn map(&self, features: &Tensor, image: usize, class: usize) -> Result<Heatmap, CamError> {
        let &[n, k, h, w] = features.shape() else {
            return Err(CamError::Shape {
                message: format!(
                    "feature tensor has shape {:?}, expected [N, {}, h, w]",
                    features.shape(),
                    self.channels
                ),
            });
        };
        if k != self.channels {
            return Err(CamError::Shape {
                message: format!(
                    "feature tensor has {k} channels, the classifier expects {}",
                    self.channels
                ),
            });
        }
        if image >= n {
            return Err(CamError::BadImage { image, images: n });
        }
        if class >= self.classes {
            return Err(CamError::BadClass {
                class,
                classes: self.classes,
            });
        }
        let row = self.class_weights(class).ok_or_else(|| CamError::Shape {
            message: format!(
                "the tail holds {} weights, not classes x channels = {} x {}",
                self.weights.len(),
                self.classes,
                self.channels
            ),
        })?;

        let plane = h * w;
        let mut data = vec![0.0f32; plane];
        if plane > 0 {
            let planes = &features.data()[image * k * plane..(image + 1) * k * plane];
            for (&wk, fk) in row.iter().zip(planes.chunks_exact(plane)) {
                for (d, &f) in data.iter_mut().zip(fk) {
                    *d += wk * f;
                }
            }
        }
        Ok(Heatmap {
            width: w,
            height: h,
            data,
        })
    }
}

/// Finds the CAM tail ending at one of the graph's outputs (the first output that has one).
/// When none has, the error explains why the first output does not.
pub fn find_cam_tail(graph: &Graph) -> Result<CamTail, CamError> {
    graph.validate()?;
    let mut first_error = None;
    for &output in &graph.outputs {
        match tail_at(graph, output) {
            Ok(tail) => {
                log::debug!(
                    "CAM tail: features '{}' {:?}, logits '{}', {} classes",
                    graph.value(tail.features).name,
                    graph.value(tail.features).shape,
                    graph.value(tail.logits).name,
                    tail.classes
                );
                return Ok(tail);
            }
            Err(e) => {
                log::debug!("no CAM tail at output '{}': {e}", graph.value(output).name);
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| CamError::not_applicable("the graph has no outputs")))
}

/// A fully connected layer `logits = input * weights^T + bias` by constants.
struct Dense {
    input: ValueId,
    output: ValueId,
    /// How the layer is named in messages, e.g. `Gemm 'fc8'`.
    what: String,
    channels: usize,
    classes: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

fn tail_at(graph: &Graph, output: ValueId) -> Result<CamTail, CamError> {
    let out_name = &graph.value(output).name;
    let mut logits = skip_views(graph, output);
    if let Some(node) = graph.producer(logits) {
        if let (Op::Softmax { .. }, Some(&x)) = (&node.op, node.inputs.first()) {
            logits = skip_views(graph, x);
        }
    }
    let Some(node) = graph.producer(logits) else {
        return Err(CamError::not_applicable(format!(
            "output '{out_name}' is {}, not the result of a fully connected layer",
            describe_value(graph, logits)
        )));
    };
    let dense = match &node.op {
        Op::Gemm(attrs) => gemm(graph, node, attrs)?,
        Op::MatMul => matmul(graph, node)?,
        Op::Binary(BinaryOp::Add) => matmul_add(graph, node, out_name)?,
        _ if global_pool(graph, node).is_ok() => {
            return Err(CamError::not_applicable(format!(
                "no fully connected layer follows the global pool {}: output '{out_name}' is \
                 computed from it directly",
                describe(graph, node)
            )));
        }
        _ => {
            return Err(CamError::not_applicable(format!(
                "output '{out_name}' comes from {}, not from a fully connected layer (Gemm, or \
                 MatMul by constant weights)",
                describe(graph, node)
            )));
        }
    };

    let not_pooled = |why: String| {
        CamError::not_applicable(format!(
            "output '{out_name}' comes from {}, whose input is not a global average pool of \
             feature maps (it is {why})",
            dense.what
        ))
    };
    let pooled = skip_views(graph, dense.input);
    let Some(pool) = graph.producer(pooled) else {
        return Err(not_pooled(describe_value(graph, pooled)));
    };
    let features = global_pool(graph, pool)
        .map_err(|why| not_pooled(format!("{}{why}", describe(graph, pool))))?;

    let fshape = &graph.value(features).shape;
    let (n, k, h, w) = (fshape[0], fshape[1], fshape[2], fshape[3]);
    if k != dense.channels {
        return Err(CamError::not_applicable(format!(
            "the global pool {} gives {k} channels, but {} expects {}",
            describe(graph, pool),
            dense.what,
            dense.channels
        )));
    }
    // Views never reorder memory, so an input `[.., K]` holding the N x K pooled values has one
    // row per image.
    let fc_in = &graph.value(dense.input).shape;
    let elements = fc_in.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if fc_in.last() != Some(&k) || elements != n.checked_mul(k) {
        return Err(CamError::not_applicable(format!(
            "{} reads the pooled [{n}, {k}] values reshaped to {fc_in:?}, not one row per image",
            dense.what
        )));
    }
    Ok(CamTail {
        features,
        pooled,
        logits: dense.output,
        channels: k,
        classes: dense.classes,
        weights: dense.weights,
        bias: dense.bias,
        feature_size: (h, w),
    })
}

/// Follows `id` back through the operators that only reshape (Flatten, Reshape, Squeeze,
/// Unsqueeze, Identity).
fn skip_views(graph: &Graph, mut id: ValueId) -> ValueId {
    while let Some(node) = graph.producer(id) {
        match node.inputs.first() {
            Some(&x) if node.op.is_view() => id = x,
            _ => break,
        }
    }
    id
}

/// `Gemm 'fc8'`, or `Gemm (output 'r24')` for an unnamed node.
fn describe(graph: &Graph, node: &Node) -> String {
    if node.name.is_empty() {
        format!(
            "{} (output '{}')",
            node.op.name(),
            graph.value(node.output).name
        )
    } else {
        format!("{} '{}'", node.op.name(), node.name)
    }
}

fn describe_value(graph: &Graph, id: ValueId) -> String {
    let value = graph.value(id);
    match &value.kind {
        ValueKind::Node(_) => graph
            .producer(id)
            .map_or_else(String::new, |n| describe(graph, n)),
        ValueKind::Input { .. } => format!("the graph input '{}'", value.name),
        ValueKind::Constant(_) => format!("the constant '{}'", value.name),
    }
}

fn inputs<const N: usize>(graph: &Graph, node: &Node) -> Result<[ValueId; N], CamError> {
    node.inputs
        .get(..N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| {
            CamError::not_applicable(format!(
                "{} has {} inputs, expected at least {N}",
                describe(graph, node),
                node.inputs.len()
            ))
        })
}

fn constant_weights<'g>(
    graph: &'g Graph,
    node: &Node,
    id: ValueId,
) -> Result<&'g Tensor, CamError> {
    graph.constant(id).ok_or_else(|| {
        CamError::not_applicable(format!(
            "{} multiplies by '{}', which is computed ({}), not constant weights",
            describe(graph, node),
            graph.value(id).name,
            describe_value(graph, id)
        ))
    })
}

/// `alpha * A * B' + beta * C`, with B (and C) constant. Weights become `[classes, K]` whichever
/// way B is stored: `transB` keeps B's rows, otherwise B is `[K, classes]` and is transposed.
fn gemm(graph: &Graph, node: &Node, attrs: &GemmAttrs) -> Result<Dense, CamError> {
    let what = describe(graph, node);
    if attrs.trans_a {
        return Err(CamError::not_applicable(format!(
            "{what} transposes its input (transA = 1), so its rows are not images"
        )));
    }
    let [a, b] = inputs(graph, node)?;
    let b_tensor = constant_weights(graph, node, b)?;
    let &[rows, cols] = b_tensor.shape() else {
        return Err(CamError::not_applicable(format!(
            "{what} has weights of shape {:?}, not a matrix",
            b_tensor.shape()
        )));
    };
    let (k, classes) = if attrs.trans_b {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let bd = b_tensor.data();
    let weights = (0..classes)
        .flat_map(|c| {
            (0..k).map(move |j| {
                attrs.alpha
                    * if attrs.trans_b {
                        bd[c * k + j]
                    } else {
                        bd[j * classes + c]
                    }
            })
        })
        .collect();
    let bias = match node.inputs.get(2) {
        None => vec![0.0; classes],
        Some(&c) => {
            let Some(c_tensor) = graph.constant(c) else {
                return Err(CamError::not_applicable(format!(
                    "{what} adds '{}', which is computed ({}), not a constant bias",
                    graph.value(c).name,
                    describe_value(graph, c)
                )));
            };
            per_class(c_tensor, classes, attrs.beta).ok_or_else(|| {
                CamError::not_applicable(format!(
                    "{what} adds a bias of shape {:?}, which is not one value per class",
                    c_tensor.shape()
                ))
            })?
        }
    };
    dense(what, a, node.output, k, classes, weights, bias)
}

/// `A * B` with B a constant `[K, classes]` (leading dimensions of 1 allowed).
fn matmul(graph: &Graph, node: &Node) -> Result<Dense, CamError> {
    let what = describe(graph, node);
    let [a, b] = inputs(graph, node)?;
    let b_tensor = constant_weights(graph, node, b)?;
    let shape = b_tensor.shape();
    if shape.len() < 2 || shape[..shape.len() - 2].iter().any(|&d| d != 1) {
        return Err(CamError::not_applicable(format!(
            "{what} has weights of shape {shape:?}, not a [K, classes] matrix"
        )));
    }
    let (k, classes) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    let bd = b_tensor.data();
    let weights = (0..classes)
        .flat_map(|c| (0..k).map(move |j| bd[j * classes + c]))
        .collect();
    dense(
        what,
        a,
        node.output,
        k,
        classes,
        weights,
        vec![0.0; classes],
    )
}

/// `MatMul(A, B) + bias` with a constant bias on either side of the Add.
fn matmul_add(graph: &Graph, node: &Node, out_name: &str) -> Result<Dense, CamError> {
    let what = describe(graph, node);
    let [x, y] = inputs(graph, node)?;
    let (product, bias) = match (graph.constant(x), graph.constant(y)) {
        (_, Some(bias)) => (x, bias),
        (Some(bias), None) => (y, bias),
        (None, None) => {
            return Err(CamError::not_applicable(format!(
                "output '{out_name}' comes from {what}, which adds two computed values, not a \
                 bias to a fully connected layer"
            )));
        }
    };
    let matmul_node = match graph.producer(product) {
        Some(n) if n.op == Op::MatMul => n,
        _ => {
            return Err(CamError::not_applicable(format!(
                "output '{out_name}' comes from {what}, which adds a constant to {}, not to a \
                 fully connected layer",
                describe_value(graph, product)
            )));
        }
    };
    let mut dense = matmul(graph, matmul_node)?;
    dense.bias = per_class(bias, dense.classes, 1.0).ok_or_else(|| {
        CamError::not_applicable(format!(
            "{what} adds a bias of shape {:?} after {}, which is not one value per class",
            bias.shape(),
            dense.what
        ))
    })?;
    dense.output = node.output;
    Ok(dense)
}

fn dense(
    what: String,
    input: ValueId,
    output: ValueId,
    channels: usize,
    classes: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
) -> Result<Dense, CamError> {
    if channels == 0 || classes == 0 {
        return Err(CamError::not_applicable(format!(
            "{what} maps {channels} inputs to {classes} classes"
        )));
    }
    Ok(Dense {
        input,
        output,
        what,
        channels,
        classes,
        weights,
        bias,
    })
}

/// `scale * t` as one value per class, when `t` broadcasts to `[1, classes]`: a scalar, `[1]`,
/// `[classes]`, `[1, classes]` and so on. A bias that varies along the batch is refused.
fn per_class(t: &Tensor, classes: usize, scale: f32) -> Option<Vec<f32>> {
    let (last, lead) = t
        .shape()
        .split_last()
        .map_or((1, &[][..]), |(l, lead)| (*l, lead));
    if lead.iter().any(|&d| d != 1) || (last != 1 && last != classes) {
        return None;
    }
    let data = t.data();
    Some(
        (0..classes)
            .map(|c| scale * data[if last == 1 { 0 } else { c }])
            .collect(),
    )
}

/// The feature map `node` averages over all spatial positions, or why it does not (a phrase to
/// follow the node's description).
fn global_pool(graph: &Graph, node: &Node) -> Result<ValueId, String> {
    let Some(&features) = node.inputs.first() else {
        return Err(" with no input".into());
    };
    let shape = &graph.value(features).shape;
    let &[_, _, h, w] = &shape[..] else {
        return match node.op {
            Op::GlobalAveragePool | Op::ReduceMean { .. } | Op::Pool(_) => Err(format!(
                " over a {shape:?} input, not [N, K, h, w] feature maps"
            )),
            _ => Err(String::new()),
        };
    };
    match &node.op {
        Op::GlobalAveragePool => Ok(features),
        Op::ReduceMean { axes, .. } => {
            let mut axes = axes.clone();
            axes.sort_unstable();
            axes.dedup();
            if axes == [2, 3] {
                Ok(features)
            } else {
                Err(format!(" over axes {axes:?}, not the spatial axes [2, 3]"))
            }
        }
        Op::Pool(
            attrs @ PoolAttrs {
                kind: PoolKind::Average { count_include_pad },
                ..
            },
        ) => whole_map_window(attrs, *count_include_pad, [h, w]).map(|()| features),
        _ => Err(String::new()),
    }
}

/// Whether an average pool has a single window covering the whole `[h, w]` map whose divisor is
/// the number of map pixels. Padding is fine when it is left out of the divisor: ceil-mode pools
/// exported as explicit end padding look like that (a 7x7 window over 6x6 plus one row and
/// column of padding).
fn whole_map_window(
    attrs: &PoolAttrs,
    count_include_pad: bool,
    hw: [usize; 2],
) -> Result<(), String> {
    let [kh, kw] = attrs.kernel;
    if attrs.kernel.contains(&0) || attrs.strides.contains(&0) || attrs.dilations.contains(&0) {
        return Err(format!(
            ", whose {kh}x{kw} window or its strides are degenerate"
        ));
    }
    if attrs.dilations != [1, 1] {
        return Err(format!(
            ", whose window is dilated by {:?}",
            attrs.dilations
        ));
    }
    let (begin, end) = resolve_padding(&attrs.padding, hw, attrs.kernel, attrs.strides, [1, 1]);
    let padded = begin != [0, 0] || end != [0, 0];
    let covers = (0..2).all(|i| {
        let windows = pool_output_size(
            hw[i],
            attrs.kernel[i],
            attrs.strides[i],
            1,
            begin[i],
            end[i],
            attrs.ceil_mode,
        );
        windows == Ok(1) && attrs.kernel[i] >= begin[i] + hw[i]
    });
    if !covers {
        let padding = if padded { " with its padding" } else { "" };
        return Err(format!(
            ", whose {kh}x{kw} window{padding} is not one window over the whole {}x{} map",
            hw[0], hw[1]
        ));
    }
    if padded && count_include_pad {
        return Err(
            ", which counts its padding in the divisor, so it is not the map's mean".into(),
        );
    }
    Ok(())
}
