//! Latency of one ONNX model under tract, for the peer benchmark (`benches/peers/`).
//!
//! ```sh
//! cargo build --release -p kestrel-benches --example tract_bench
//! target/release/examples/tract_bench MODEL.onnx [--runs 30] [--warmup 3] [--shape 1,3,224,224]
//! target/release/examples/tract_bench MODEL.onnx --serve
//! ```
//!
//! The model is loaded with its first input fixed to `--shape` (float32), optimized, and run
//! on a fixed synthetic input. The first form times `--warmup` untimed and `--runs` timed runs
//! and prints one JSON object with the median and p90 in ms. With `--serve` it loads the model
//! once, prints `{"ready":true,...}`, then reads commands from standard input, one a line:
//! `run N` times N runs and prints `{"latencies_ms":[...]}`; `quit` or end of input stops.
//! The benchmark driver uses this to interleave tract with the other engines.
//!
//! tract is built here without its `multithread-mm` feature, so it runs on one thread; the
//! JSON says so in `"threads"`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tract_onnx::prelude::{
    tvec, Datum, Framework, InferenceFact, InferenceModelExt, IntoRunnable, TValue, Tensor,
};

struct Args {
    model: PathBuf,
    runs: usize,
    warmup: usize,
    shape: Vec<usize>,
    serve: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut model = None;
    let mut runs = 30;
    let mut warmup = 3;
    let mut shape = vec![1, 3, 224, 224];
    let mut serve = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--runs" => runs = value("--runs")?.parse().context("--runs")?,
            "--warmup" => warmup = value("--warmup")?.parse().context("--warmup")?,
            "--shape" => {
                shape = value("--shape")?
                    .split(',')
                    .map(|d| d.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--shape wants comma-separated dimensions")?
            }
            "--serve" => serve = true,
            flag if flag.starts_with("--") => bail!("unknown option {flag}"),
            path if model.is_none() => model = Some(PathBuf::from(path)),
            extra => bail!("unexpected argument {extra}"),
        }
    }
    let Some(model) = model else {
        bail!("usage: tract_bench MODEL.onnx [--runs N] [--warmup N] [--shape D,D,..] [--serve]");
    };
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(Args {
        model,
        runs,
        warmup,
        shape,
        serve,
    })
}

/// A deterministic input with values in [-1, 1).
fn synthetic_input(shape: &[usize]) -> Result<Tensor> {
    let len: usize = shape.iter().product();
    let data: Vec<f32> = (0..len)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    Tensor::from_shape(shape, &data)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn json_list(values: &[f64]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
    format!("[{}]", items.join(","))
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let started = Instant::now();
    let plan = tract_onnx::onnx()
        .model_for_path(&args.model)
        .with_context(|| format!("loading {}", args.model.display()))?
        .with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), &args.shape))?
        .into_optimized()?
        .into_runnable()?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let input: TValue = synthetic_input(&args.shape)?.into();
    let time_runs = |n: usize| -> Result<Vec<f64>> {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let inputs = tvec!(input.clone());
            let t = Instant::now();
            std::hint::black_box(plan.run(inputs)?);
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(times)
    };

    let stdout = std::io::stdout();
    if args.serve {
        time_runs(args.warmup)?;
        {
            let mut out = stdout.lock();
            writeln!(
                out,
                "{{\"ready\":true,\"threads\":1,\"load_ms\":{load_ms:.1}}}"
            )?;
            out.flush()?;
        }
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [] => continue,
                ["quit"] => break,
                ["run", n] => {
                    let n: usize = n.parse().context("run N")?;
                    let times = time_runs(n)?;
                    let mut out = stdout.lock();
                    writeln!(out, "{{\"latencies_ms\":{}}}", json_list(&times))?;
                    out.flush()?;
                }
                _ => bail!("unknown command {line:?}: want `run N` or `quit`"),
            }
        }
        return Ok(());
    }

    time_runs(args.warmup)?;
    let mut times = time_runs(args.runs)?;
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"model\":{:?},\"engine\":\"tract\",\"threads\":1,\"runs\":{},\"load_ms\":{load_ms:.1},\
         \"min_ms\":{:.4},\"median_ms\":{:.4},\"p90_ms\":{:.4}}}",
        args.model.display().to_string(),
        args.runs,
        times[0],
        percentile(&times, 0.5),
        percentile(&times, 0.9)
    );
    Ok(())
}
