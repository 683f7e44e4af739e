//! One module per subcommand.

pub mod bench;
pub mod cam;
pub mod classify;
pub mod compile;
pub mod demo;
pub mod inspect;
pub mod localize;
pub mod run;

use anyhow::{bail, Result};
use kestrel_graph::Tensor;

/// Scores of image `index` of a `[N, classes, ...]` classifier output, as probabilities: the
/// output itself when it already is a distribution (a softmax head), else its softmax.
pub fn probabilities(output: &Tensor, index: usize) -> Result<Vec<f32>> {
    let shape = output.shape();
    if shape.is_empty() || shape[0] <= index {
        bail!("the model output has shape {shape:?}, not one row per image");
    }
    let classes = output.len() / shape[0];
    let row = &output.data()[index * classes..(index + 1) * classes];
    let sum: f32 = row.iter().sum();
    if row.iter().all(|&p| (0.0..=1.0).contains(&p)) && (sum - 1.0).abs() < 1e-3 {
        return Ok(row.to_vec());
    }
    Ok(softmax(row))
}

pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = row.iter().map(|&v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Indices of the `k` largest scores, best first (ties keep the lower index first).
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}
