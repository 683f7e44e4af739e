//! `kestrel`: classify images, explain predictions with Class Activation Maps, inspect and run
//! any supported graph.
//!
//! Each subcommand lives in its own module under `commands/`; this file only parses the command
//! line, sets up logging and turns errors into one line on standard error and an exit status:
//!
//! | status | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | bad input: a file, model, image, label file or option value that cannot be used |
//! | 2 | usage error: the command line does not parse (clap's status) |
//! | 70 | internal error: a bug in kestrel (a panic, or a broken invariant), never the input's fault |

mod commands;
mod internal;
mod labels;
mod model;
mod npy;
mod preprocess;

use std::panic::AssertUnwindSafe;
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

/// Exit status for bad input: files, models, images, labels, option values.
const EXIT_BAD_INPUT: u8 = 1;

/// Exit status for a bug in kestrel (BSD `EX_SOFTWARE`).
const EXIT_INTERNAL: u8 = 70;

fn main() -> ExitCode {
    restore_default_sigpipe();
    // Usage errors exit here with clap's status 2 (and `--help`, `--version` with 0).
    let cli = Cli::parse();
    env_logger::Builder::new()
        .parse_filters(&cli.log)
        .format_timestamp(None)
        .init();
    internal::install_panic_hook();
    // A panic is a bug, whatever the input: the hook has printed its one line, and the status
    // tells scripts it is not their input's fault.
    match std::panic::catch_unwind(AssertUnwindSafe(|| dispatch(cli))) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::from(exit_status(&error))
        }
        Err(_) => ExitCode::from(EXIT_INTERNAL),
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    internal::injected_panic();
    if cli.no_optimize {
        model::disable_optimization();
    }
    if let Some(threads) = cli.threads {
        model::set_threads(threads.into());
    }
    match cli.command {
        Command::Compile(args) => commands::compile::run(args),
        Command::Classify(args) => commands::classify::run(args),
        Command::Cam(args) => commands::cam::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Localize(args) => commands::localize::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Bench(args) => commands::bench::run(args),
    }
}

/// The exit status of a failed command: internal for a broken invariant, else bad input.
fn exit_status(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<internal::Internal>().is_some() {
        EXIT_INTERNAL
    } else {
        EXIT_BAD_INPUT
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

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn internal_errors_keep_their_status_under_context() {
        let bad: anyhow::Result<()> = Err(anyhow::anyhow!("no such file"));
        let bad = bad.context("model.onnx").unwrap_err();
        assert_eq!(exit_status(&bad), EXIT_BAD_INPUT);
        let bug: anyhow::Result<()> = Err(anyhow::anyhow!("node 'x': bad shape"));
        let bug = bug
            .context(internal::Internal::context("invariant"))
            .context("model.onnx")
            .unwrap_err();
        assert_eq!(exit_status(&bug), EXIT_INTERNAL);
        assert!(
            one_line(&bug).contains("internal error"),
            "{}",
            one_line(&bug)
        );
    }
}
