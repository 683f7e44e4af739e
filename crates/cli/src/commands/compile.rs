use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use kestrel_format::WriteOptions;

use crate::model::load_graph_with_report;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (.onnx).
    model: PathBuf,
    /// Where to write the compiled graph (default: the model's path with a .kst extension).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Store weights as f16: half the file, widened to f32 (copied) at load.
    #[arg(long)]
    f16: bool,
}

pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let output = args
        .output
        .unwrap_or_else(|| args.model.with_extension("kst"));
    let same_file = |a: &std::path::Path, b: &std::path::Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if same_file(&args.model, &output) {
        bail!(
            "{}: the output would overwrite the model it is compiled from; choose another -o",
            output.display()
        );
    }
    let (graph, report) = load_graph_with_report(&args.model)?;
    let options = WriteOptions {
        f16_weights: args.f16,
    };
    let size = kestrel_format::write_file(&graph, &output, options)?;
    println!(
        "wrote {}: {} bytes ({:.1} MiB), {} nodes, {} weights, in {:.0} ms",
        output.display(),
        size,
        size as f64 / (1 << 20) as f64,
        graph.nodes.len(),
        if args.f16 { "f16" } else { "f32" },
        started.elapsed().as_secs_f64() * 1e3
    );
    if let Some(report) = report {
        println!("optimized: {report}");
    }
    Ok(())
}
