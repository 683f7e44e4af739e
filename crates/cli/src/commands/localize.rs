use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kestrel_explain::{CamBox, Explainer};
use kestrel_synthetic::{Sample, EVAL_SEED};
use serde_json::json;

use crate::commands::{probabilities, top_k};
use crate::model::Model;

#[derive(clap::Args)]
pub struct Args {
    /// A model trained on the synthetic task (models/synthetic/*.onnx).
    model: PathBuf,
    /// Number of generated images (at most 100000).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=MAX_COUNT))]
    count: u64,
    /// Generator seed; the default is the held-out evaluation set.
    #[arg(long, default_value_t = EVAL_SEED)]
    seed: u64,
    /// Box threshold as a fraction of the map's maximum.
    #[arg(long, default_value_t = kestrel_explain::DEFAULT_THRESHOLD)]
    threshold: f32,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Most images one measurement generates; a few thousand already give a stable score.
const MAX_COUNT: u64 = 100_000;

/// One generated image, classified and localized.
pub struct Record {
    pub index: u64,
    pub sample: Sample,
    pub predicted: usize,
    pub score: f32,
    /// CAM box of the predicted class, in image pixels.
    pub cam_box: Option<CamBox>,
    pub iou: f32,
    pub heatmap: kestrel_explain::Heatmap,
}

pub struct Summary {
    pub images: usize,
    pub accuracy: f32,
    /// Fraction of images whose CAM box has IoU >= 0.5 with the true box.
    pub localized: f32,
    pub mean_iou: f32,
    pub median_iou: f32,
}

/// Images per inference batch.
const BATCH: u64 = 25;

/// Classifies `count` generated images and boxes the CAM of each predicted class.
pub fn evaluate(model: &Path, seed: u64, count: u64, threshold: f32) -> Result<Vec<Record>> {
    if count == 0 {
        bail!("--count must be at least 1");
    }
    let loaded = Model::load(model)?;
    let input = loaded.image_input()?;
    if input.width != input.height || input.channels_last {
        bail!(
            "{}: input {}x{} is not a square NCHW image; not a synthetic-task model",
            model.display(),
            input.width,
            input.height
        );
    }
    let preprocess = kestrel_vision::Preprocess::preset("synthetic")?;
    let explainer = Explainer::new(loaded.session)
        .with_context(|| format!("{}: CAM does not apply", model.display()))?;
    let mut records = Vec::with_capacity(count as usize);
    for start in (0..count).step_by(BATCH as usize) {
        let samples: Vec<Sample> = (start..count.min(start + BATCH))
            .map(|i| kestrel_synthetic::sample(seed, i, input.width))
            .collect();
        let images: Vec<image::RgbImage> = samples.iter().map(|s| s.image.clone()).collect();
        let batch = kestrel_vision::prepare_batch(&images, &preprocess);
        let run = explainer.run(batch)?;
        for (j, sample) in samples.into_iter().enumerate() {
            let scores = probabilities(&run.outputs[0], j)?;
            let logits = probabilities(&run.logits, j)?;
            let predicted = top_k(&logits, 1)[0];
            let map = run.map(explainer.tail(), j, predicted)?;
            let heatmap = map.upsample(input.width as usize, input.height as usize);
            let cam_box = heatmap.bounding_box(threshold);
            let truth = CamBox {
                x0: sample.bbox.x0,
                y0: sample.bbox.y0,
                x1: sample.bbox.x1,
                y1: sample.bbox.y1,
            };
            let iou = cam_box.as_ref().map_or(0.0, |b| b.iou(&truth));
            records.push(Record {
                index: start + j as u64,
                predicted,
                score: scores.get(predicted).copied().unwrap_or(logits[predicted]),
                cam_box,
                iou,
                heatmap,
                sample,
            });
        }
    }
    Ok(records)
}

pub fn summarize(records: &[Record]) -> Summary {
    let n = records.len().max(1) as f32;
    let correct = records
        .iter()
        .filter(|r| r.predicted == r.sample.class)
        .count();
    let localized = records.iter().filter(|r| r.iou >= 0.5).count();
    let mut ious: Vec<f32> = records.iter().map(|r| r.iou).collect();
    ious.sort_by(f32::total_cmp);
    Summary {
        images: records.len(),
        accuracy: correct as f32 / n,
        localized: localized as f32 / n,
        mean_iou: ious.iter().sum::<f32>() / n,
        median_iou: ious.get(ious.len() / 2).copied().unwrap_or(0.0),
    }
}

pub fn run(args: Args) -> Result<()> {
    let records = evaluate(&args.model, args.seed, args.count, args.threshold)?;
    let s = summarize(&records);
    if args.json {
        let out = json!({
            "model": args.model,
            "seed": args.seed,
            "images": s.images,
            "accuracy": s.accuracy,
            "cam_iou_at_0_5": s.localized,
            "mean_iou": s.mean_iou,
            "median_iou": s.median_iou,
        });
        println!("{out}");
    } else {
        println!(
            "{}: {} images (seed {}): accuracy {:.1}%, CAM box IoU >= 0.5 for {:.1}% \
             (mean IoU {:.3}, median {:.3})",
            args.model.display(),
            s.images,
            args.seed,
            100.0 * s.accuracy,
            100.0 * s.localized,
            s.mean_iou,
            s.median_iou
        );
    }
    Ok(())
}
