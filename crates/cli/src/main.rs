//! `kestrel`: classify images, explain predictions with Class Activation Maps, inspect and run
//! any supported graph.
//!
//! Each subcommand lives in its own module under `commands/`; this file only parses the command
//! line, sets up logging and turns errors into one line on standard error.

mod commands;
mod labels;
mod model;
mod npy;
mod preprocess;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kestrel",
    version,
    about = "CNN inference with Class Activation Maps"
)]
struct Cli {
    /// Log level for diagnostics on standard error (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    log: String,
    /// Run the graph as imported, without the optimizer's fusions.
    #[arg(long, global = true)]
    no_optimize: bool,
    /// Threads each inference runs on (default: every core).
    #[arg(long, global = true, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Imports and optimizes an ONNX model and writes it as a compiled .kst graph.
    Compile(commands::compile::Args),
    /// Top-k classes for each image.
    Classify(commands::classify::Args),
    /// Class Activation Map of one image: box, raw map, colour overlay.
    Cam(commands::cam::Args),
    /// Operators, shapes, parameters and multiply-accumulates of every layer.
    Inspect(commands::inspect::Args),
    /// Runs any supported graph on .npy inputs and writes every output as NAME.npy.
    Run(commands::run::Args),
    /// Measures CAM localization on generated images of the synthetic task.
    Localize(commands::localize::Args),
    /// Classifies generated images with the bundled models and writes CAM overlays and boxes.
    Demo(commands::demo::Args),
    /// Latency of whole-model runs: min, median, p90, p99, throughput, per-node profile.
    Bench(commands::bench::Args),
}

fn main() -> ExitCode {
    restore_default_sigpipe();
    let cli = Cli::parse();
    env_logger::Builder::new()
        .parse_filters(&cli.log)
        .format_timestamp(None)
        .init();
    if cli.no_optimize {
        model::disable_optimization();
    }
    if let Some(threads) = cli.threads {
        model::set_threads(threads.into());
    }
    let result = match cli.command {
        Command::Compile(args) => commands::compile::run(args),
        Command::Classify(args) => commands::classify::run(args),
        Command::Cam(args) => commands::cam::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Localize(args) => commands::localize::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Bench(args) => commands::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, outermost first, as one line. Many errors already quote their
/// cause in their own message, or their context in their cause's, so text the line already
/// holds is not repeated.
fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        match parts.last_mut() {
            Some(last) if text.contains(last.as_str()) => *last = text,
            _ => parts.push(text),
        }
    }
    parts.join(": ")
}

/// Rust ignores SIGPIPE, so `kestrel inspect MODEL | head` would fail on its next print with a
/// panic. Like other command-line tools, end quietly when the reader goes away instead.
#[cfg(unix)]
fn restore_default_sigpipe() {
    // SAFETY: runs first in `main`, before any other thread exists, and installs the default
    // action, which is always a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_default_sigpipe() {}
