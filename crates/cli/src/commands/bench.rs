use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kestrel_graph::{Graph, Tensor};
use serde_json::json;

use crate::commands::inspect::{describe, macs};
use crate::model::Model;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (.onnx or compiled .kst).
    model: PathBuf,
    /// Timed runs (after the warm-up).
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Untimed runs first, to fault in memory and warm the caches.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Images per run, for inputs whose batch dimension is free.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Also time every node and print the slowest, with their GMAC/s.
    #[arg(long)]
    profile: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let model = Model::load(&args.model)?;
    let graph = model.graph();
    let inputs = synthetic_inputs(graph, args.batch)?;
    let macs_per_run: u64 =
        graph.nodes.iter().map(|n| macs(graph, n)).sum::<u64>() * args.batch as u64;

    for _ in 0..args.warmup {
        model.session.run(inputs.clone())?;
    }
    let mut latencies = Vec::with_capacity(args.runs);
    let mut node_times = vec![Duration::ZERO; graph.nodes.len()];
    for _ in 0..args.runs {
        let inputs = inputs.clone();
        let started = Instant::now();
        if args.profile {
            let (_, times) = model.session.run_profiled(inputs)?;
            for (total, t) in node_times.iter_mut().zip(times) {
                *total += t;
            }
        } else {
            model.session.run(inputs)?;
        }
        latencies.push(started.elapsed());
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // Every timed run in the order it ran, for tools that pool runs from several invocations.
    let latencies_ms: Vec<f64> = latencies.iter().map(|&d| ms(d)).collect();
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let median = pick(0.5);
    let images_per_s = args.batch as f64 / median.as_secs_f64();
    let gmacs = macs_per_run as f64 / median.as_secs_f64() / 1e9;
    let threads = model.session.threads();
    let isa = kestrel_kernels::selected_isa();
    // The machine's fp32 limit for this run: the measured FMA peak of one core times the
    // threads used (measured after the timed runs so it cannot disturb them).
    let peak = kestrel_kernels::fma_peak_gmacs(isa, Duration::from_millis(200))
        .map(|per_core| per_core * threads as f64);
    let percent_of_peak = peak.map(|p| 100.0 * gmacs / p);

    if args.json {
        let mut out = json!({
            "model": args.model,
            "batch": args.batch,
            "runs": args.runs,
            "min_ms": ms(latencies[0]),
            "median_ms": ms(median),
            "p90_ms": ms(pick(0.9)),
            "p99_ms": ms(pick(0.99)),
            "images_per_s": images_per_s,
            "gmac_per_s": gmacs,
            "peak_gmac_per_s": peak,
            "percent_of_peak": percent_of_peak,
            "threads": threads,
            "kernels": isa.name(),
            "latencies_ms": latencies_ms,
        });
        if args.profile {
            out["profile"] = profile_json(graph, &node_times, args.runs, args.batch);
        }
        println!("{out}");
    } else {
        println!(
            "{}: batch {}, {:.3} GMAC per run, {} runs after {} warm-up, kernels: {}, \
             threads: {threads}",
            args.model.display(),
            args.batch,
            macs_per_run as f64 / 1e9,
            args.runs,
            args.warmup,
            isa.name()
        );
        println!(
            "latency ms: min {:.2}, median {:.2}, p90 {:.2}, p99 {:.2}",
            ms(latencies[0]),
            ms(median),
            ms(pick(0.9)),
            ms(pick(0.99))
        );
        match (peak, percent_of_peak) {
            (Some(peak), Some(percent)) => println!(
                "throughput: {images_per_s:.1} images/s, {gmacs:.2} GMAC/s \
                 ({percent:.0}% of the {peak:.1} GMAC/s fp32 FMA peak of {threads} core(s))"
            ),
            _ => println!("throughput: {images_per_s:.1} images/s, {gmacs:.2} GMAC/s"),
        }
    }
    if args.profile && !args.json {
        print_profile(graph, &node_times, args.runs, args.batch);
    }
    Ok(())
}

/// The nodes by total time, slowest first, with their share and GMAC/s.
fn print_profile(graph: &Graph, node_times: &[Duration], runs: usize, batch: usize) {
    let total: f64 = node_times.iter().map(Duration::as_secs_f64).sum();
    let mut order: Vec<usize> = (0..node_times.len()).collect();
    order.sort_by(|&a, &b| node_times[b].cmp(&node_times[a]));
    println!();
    println!(
        "{:>4}  {:<26} {:<34} {:>9} {:>6} {:>8}",
        "#", "op", "name", "ms/run", "share", "GMAC/s"
    );
    for i in order {
        let node = &graph.nodes[i];
        let secs = node_times[i].as_secs_f64() / runs as f64;
        let gmacs = match macs(graph, node) * batch as u64 {
            0 => String::new(),
            m if secs > 0.0 => format!("{:.2}", m as f64 / secs / 1e9),
            _ => String::new(),
        };
        println!(
            "{:>4}  {:<26} {:<34} {:>9.3} {:>5.1}% {:>8}",
            i,
            describe(&node.op),
            node.name.chars().take(34).collect::<String>(),
            secs * 1e3,
            100.0 * node_times[i].as_secs_f64() / total.max(f64::MIN_POSITIVE),
            gmacs
        );
    }
}

/// The per-node profile in node order: name, operator, ms per run and GMAC/s.
fn profile_json(
    graph: &Graph,
    node_times: &[Duration],
    runs: usize,
    batch: usize,
) -> serde_json::Value {
    let nodes: Vec<_> = graph
        .nodes
        .iter()
        .zip(node_times)
        .map(|(node, time)| {
            let secs = time.as_secs_f64() / runs as f64;
            let macs = macs(graph, node) * batch as u64;
            json!({
                "name": node.name,
                "op": describe(&node.op),
                "ms": secs * 1e3,
                "gmac_per_s": if secs > 0.0 { macs as f64 / secs / 1e9 } else { 0.0 },
            })
        })
        .collect();
    serde_json::Value::Array(nodes)
}

/// Deterministic inputs of each graph input's declared shape, free dimensions set to `batch`.
fn synthetic_inputs(graph: &Graph, batch: usize) -> Result<Vec<Tensor>> {
    graph
        .inputs
        .iter()
        .zip(graph.input_shapes(batch))
        .map(|(&id, shape)| {
            let len = kestrel_graph::element_count(&shape)
                .filter(|&n| n <= 1 << 28)
                .with_context(|| {
                    format!(
                        "input '{}' of shape {shape:?} is too large",
                        graph.value(id).name
                    )
                })?;
            let data = (0..len).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect();
            Ok(Tensor::new(shape, data).expect("length matches shape"))
        })
        .collect()
}
