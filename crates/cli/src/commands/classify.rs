use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

use crate::commands::{probabilities, top_k};
use crate::labels::Labels;
use crate::model::Model;
use crate::preprocess::PreprocessArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (.onnx or compiled .kst).
    model: PathBuf,
    /// Images to classify (PNG or JPEG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Number of classes to report per image.
    #[arg(long, short = 'k', default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    top: u64,
    /// Class names, one per line (default: labels.txt beside the model, else indices).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// One JSON object per image instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    preprocess: PreprocessArgs,
}

pub fn run(args: Args) -> Result<()> {
    let model = Model::load(&args.model)?;
    let preprocess = args.preprocess.resolve(model.image_input()?)?;
    let labels = Labels::for_model(args.labels.as_deref(), &args.model)?;
    for path in &args.images {
        let image = kestrel_vision::load_image(path)?;
        let prepared = kestrel_vision::prepare(&image, &preprocess);
        let outputs = model
            .session
            .run(vec![prepared.tensor])
            .with_context(|| format!("{}: inference failed", path.display()))?;
        check_classifier_output(&outputs[0])?;
        let scores = probabilities(&outputs[0], 0)?;
        labels.check(scores.len())?;
        let best = top_k(&scores, usize::try_from(args.top).unwrap_or(usize::MAX));
        if args.json {
            let classes: Vec<_> = best
                .iter()
                .map(|&c| json!({"class": c, "name": labels.name(c), "score": scores[c]}))
                .collect();
            println!("{}", json!({"image": path, "top": classes}));
        } else {
            println!("{}", path.display());
            for (rank, &c) in best.iter().enumerate() {
                println!(
                    "  {}. {:<28} {:>5}  {:.4}",
                    rank + 1,
                    labels.name(c),
                    c,
                    scores[c]
                );
            }
        }
    }
    Ok(())
}

/// A classifier's first output is `[N, classes]`, or `[N, classes, 1, 1]` from a convolutional
/// head; a feature map is not a list of class scores.
fn check_classifier_output(output: &kestrel_graph::Tensor) -> Result<()> {
    match output.shape() {
        [_, _] => Ok(()),
        [_, _, rest @ ..] if rest.iter().all(|&d| d == 1) => Ok(()),
        shape => anyhow::bail!(
            "the model's first output has shape {shape:?}, not [N, classes]: it is not an image \
             classifier (use `kestrel run` for other graphs)"
        ),
    }
}
