use std::path::PathBuf;

use anyhow::Result;
use kestrel_graph::{Activation, Dim, Graph, Node, Op, ValueId, ValueKind};

use crate::model::Model;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (.onnx or compiled .kst).
    model: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let model = Model::load(&args.model)?;
    let graph = model.graph();
    println!("{}", args.model.display());
    for &id in &graph.inputs {
        let value = graph.value(id);
        if let ValueKind::Input { dims } = &value.kind {
            let dims: Vec<String> = dims.iter().map(Dim::to_string).collect();
            println!("input  {} [{}]", value.name, dims.join(", "));
        }
    }
    for &id in &graph.outputs {
        let value = graph.value(id);
        println!("output {} {:?}", value.name, value.shape);
    }
    println!();
    println!(
        "{:>4}  {:<26} {:<34} {:<20} {:>10} {:>14}",
        "#", "op", "name", "output", "params", "MACs"
    );
    let (mut total_params, mut total_macs) = (0u64, 0u64);
    for (i, node) in graph.nodes.iter().enumerate() {
        let params = parameters(graph, node);
        let macs = macs(graph, node);
        total_params += params;
        total_macs += macs;
        println!(
            "{:>4}  {:<26} {:<34} {:<20} {:>10} {:>14}",
            i,
            describe(&node.op),
            truncate(&node.name, 34),
            format!("{:?}", graph.value(node.output).shape),
            params,
            macs
        );
    }
    println!();
    println!(
        "{} nodes, {} parameters, {:.3} GMAC per image (at the nominal input shape)",
        graph.nodes.len(),
        total_params,
        total_macs as f64 / 1e9
    );
    println!("fused: {}", fusion_summary(graph));
    match &model.optimized {
        Some(report) => println!("optimized: {report}"),
        None if model.compiled => println!("compiled graph, run as stored"),
        None => println!("not optimized (--no-optimize)"),
    }
    let shapes = graph.input_shapes(1);
    let shape_refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
    match model.session.memory_plan(&shape_refs) {
        Ok(plan) => println!(
            "memory plan: {:.2} MiB arena for all activations ({:.2} MiB with a buffer each), \
             {} concat(s) written in place, {} channel slice(s) read in place",
            mib(plan.arena_bytes()),
            mib(plan.separate_bytes()),
            plan.concats_in_place(),
            plan.slices_in_place()
        ),
        Err(e) => println!("memory plan: none at the nominal input shape: {e}"),
    }
    match kestrel_explain::find_cam_tail(graph) {
        Ok(tail) => println!(
            "CAM: applies: feature map '{}' [{} x {}x{}] -> {} classes",
            graph.value(tail.features).name,
            tail.channels,
            tail.feature_size.0,
            tail.feature_size.1,
            tail.classes
        ),
        Err(e) => println!("CAM: does not apply: {e}"),
    }
    Ok(())
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The op name with its main attributes.
pub fn describe(op: &Op) -> String {
    match op {
        Op::Conv(c) => {
            let mut s = format!("Conv {}x{}/{}", c.kernel[0], c.kernel[1], c.strides[0]);
            if c.groups > 1 {
                s += &format!(" g{}", c.groups);
            }
            if c.epilogue.residual {
                s += " +add";
            }
            match c.epilogue.activation {
                Some(Activation::Relu) => s += " +relu",
                Some(Activation::Clip { min, max }) => s += &format!(" +clip({min},{max})"),
                None => {}
            }
            if let Some(p) = &c.epilogue.pool {
                s += &format!(" +maxpool {}x{}/{}", p.kernel[0], p.kernel[1], p.strides[0]);
            }
            s
        }
        Op::ChannelSlice { start, end } => format!("ChannelSlice {start}..{end}"),
        Op::Pool(p) => format!(
            "{} {}x{}/{}",
            op.name(),
            p.kernel[0],
            p.kernel[1],
            p.strides[0]
        ),
        _ => op.name().to_string(),
    }
}

/// What the graph's nodes have absorbed, read from the graph itself (so a compiled `.kst`
/// shows it too): epilogue stages of convolutions, and convolutions merged from parallel 1x1
/// branches (the convs that ChannelSlices read).
fn fusion_summary(graph: &Graph) -> String {
    let convs = || {
        graph.nodes.iter().filter_map(|n| match &n.op {
            Op::Conv(c) => Some(&c.epilogue),
            _ => None,
        })
    };
    let activations = convs().filter(|e| e.activation.is_some()).count();
    let residuals = convs().filter(|e| e.residual).count();
    let pools = convs().filter(|e| e.pool.is_some()).count();
    let mut merged: Vec<ValueId> = graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::ChannelSlice { .. }))
        .map(|n| n.inputs[0])
        .filter(|&id| matches!(graph.producer(id).map(|p| &p.op), Some(Op::Conv(_))))
        .collect();
    let branches = merged.len();
    merged.sort_unstable();
    merged.dedup();
    format!(
        "{activations} conv+activation, {residuals} conv+residual, {pools} conv+maxpool, {} \
         merged 1x1 convs ({branches} branches)",
        merged.len()
    )
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let tail: String = s
        .chars()
        .rev()
        .take(width - 1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// Elements of the node's constant inputs (weights and biases).
fn parameters(graph: &Graph, node: &Node) -> u64 {
    node.inputs
        .iter()
        .filter_map(|&id| graph.constant(id))
        .map(|t| t.len() as u64)
        .sum()
}

/// Multiply-accumulates of one node at the nominal shapes.
pub fn macs(graph: &Graph, node: &Node) -> u64 {
    let out: u64 = graph
        .value(node.output)
        .shape
        .iter()
        .map(|&d| d as u64)
        .product();
    match &node.op {
        Op::Conv(c) => {
            let w = &graph.value(node.inputs[1]).shape;
            let per_output = w[1..].iter().map(|&d| d as u64).product::<u64>();
            // A pooling conv computes its whole full-resolution map, not just the pooled one.
            let conv_outputs = match c.epilogue.pool {
                None => out,
                Some(_) => {
                    let shapes: Vec<&[usize]> = node
                        .inputs
                        .iter()
                        .map(|&id| &graph.value(id).shape[..])
                        .collect();
                    Op::Conv(c.without_pool())
                        .output_shape(&shapes)
                        .map_or(out, |s| s.iter().map(|&d| d as u64).product())
                }
            };
            conv_outputs * per_output
        }
        Op::Gemm(g) => {
            let a = &graph.value(node.inputs[0]).shape;
            let k = if g.trans_a { a[0] } else { a[a.len() - 1] };
            out * k as u64
        }
        Op::MatMul => {
            let a = &graph.value(node.inputs[0]).shape;
            out * a[a.len() - 1] as u64
        }
        _ => 0,
    }
}
