//! Graph optimization: rewrites an imported graph into an equivalent one with fewer, fused
//! nodes.
//!
//! Each pass recognises one pattern and rewrites every match ([`passes`]); [`optimize`] runs them
//! in an order where one pass's output feeds the next (a batch norm folded into its convolution
//! leaves a plain Conv that the residual and activation passes can then fuse). The rewritten
//! graph keeps every graph input and output with its name, so callers see the same interface.

mod passes;
mod rewrite;

use std::fmt;

use kestrel_graph::{Graph, GraphError};

pub use passes::PASSES;

/// How many times each pass rewrote the graph, in the order the passes ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub applied: Vec<(&'static str, usize)>,
    pub nodes_before: usize,
    pub nodes_after: usize,
}

impl Report {
    /// How many times the pass named `pass` applied.
    pub fn count(&self, pass: &str) -> usize {
        self.applied
            .iter()
            .filter(|(name, _)| *name == pass)
            .map(|(_, n)| n)
            .sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} nodes -> {}", self.nodes_before, self.nodes_after)?;
        for (name, n) in &self.applied {
            write!(f, ", {name} x{n}")?;
        }
        Ok(())
    }
}

/// Runs every pass of [`PASSES`] once, in order.
pub fn optimize(graph: &Graph) -> Result<(Graph, Report), GraphError> {
    let mut report = Report {
        nodes_before: graph.nodes.len(),
        ..Report::default()
    };
    let mut current = graph.clone();
    for pass in PASSES {
        let (next, count) = (pass.run)(&current)?;
        log::debug!("pass {}: {count} rewrites", pass.name);
        report.applied.push((pass.name, count));
        current = next;
    }
    report.nodes_after = current.nodes.len();
    log::info!("optimized: {report}");
    Ok((current, report))
}
