use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use kestrel_explain::{CamBox, Explainer, Heatmap};
use kestrel_vision::CropWindow;
use serde_json::json;

use crate::commands::{probabilities, top_k};
use crate::labels::Labels;
use crate::model::Model;
use crate::npy;
use crate::preprocess::PreprocessArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (.onnx or compiled .kst) ending in feature maps, a global average pool and
    /// a fully connected layer.
    model: PathBuf,
    /// Image to explain (PNG or JPEG).
    image: PathBuf,
    /// Class to map: an index, or `top1` for the predicted class.
    #[arg(long, default_value = "top1")]
    class: String,
    /// Write the colour overlay (heatmap blended over the model's view of the image) here.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Print the result as JSON, including the raw map at feature-map resolution.
    #[arg(long)]
    json: bool,
    /// Write the raw map (feature-map resolution) as .npy.
    #[arg(long)]
    raw_out: Option<PathBuf>,
    /// Write the map upsampled to the model input as .npy.
    #[arg(long)]
    map_out: Option<PathBuf>,
    /// Box threshold as a fraction of the map's maximum.
    #[arg(long, default_value_t = kestrel_explain::DEFAULT_THRESHOLD)]
    threshold: f32,
    /// Heatmap opacity in the overlay.
    #[arg(long, default_value_t = 0.5)]
    alpha: f32,
    /// Class names, one per line (default: labels.txt beside the model, else indices).
    #[arg(long)]
    labels: Option<PathBuf>,
    #[command(flatten)]
    preprocess: PreprocessArgs,
}

/// The CAM of one image: the class, its score, the raw and upsampled maps and the box.
pub struct CamResult {
    pub class: usize,
    pub score: f32,
    pub raw: Heatmap,
    pub upsampled: Heatmap,
    /// Box in model-input pixels.
    pub bbox: Option<CamBox>,
}

/// Runs the model on one prepared input and maps `class` (or the top class).
pub fn explain(
    explainer: &Explainer,
    input: kestrel_graph::Tensor,
    class: Option<usize>,
    threshold: f32,
) -> Result<CamResult> {
    let run = explainer.run(input)?;
    let scores = probabilities(&run.outputs[0], 0)?;
    let logits = probabilities(&run.logits, 0)?;
    let class = class.unwrap_or_else(|| top_k(&logits, 1)[0]);
    if class >= logits.len() {
        bail!(
            "class {class} is out of range: the model has {} classes",
            logits.len()
        );
    }
    let raw = run.map(explainer.tail(), 0, class)?;
    let (width, height) = input_size(explainer)?;
    let upsampled = raw.upsample(width, height);
    let bbox = upsampled.bounding_box(threshold);
    let score = if scores.len() == logits.len() {
        scores[class]
    } else {
        logits[class]
    };
    Ok(CamResult {
        class,
        score,
        raw,
        upsampled,
        bbox,
    })
}

/// The model input's (width, height).
fn input_size(explainer: &Explainer) -> Result<(usize, usize)> {
    let graph = explainer.session().graph();
    let shape = &graph.value(graph.inputs[0]).shape;
    match shape[..] {
        [_, 3, h, w] => Ok((w, h)),
        [_, h, w, 3] => Ok((w, h)),
        _ => bail!("input shape {shape:?} is not an image batch"),
    }
}

pub fn run(args: Args) -> Result<()> {
    if !(0.0..=1.0).contains(&args.threshold) {
        bail!(
            "--threshold must be between 0 and 1, got {}",
            args.threshold
        );
    }
    if !(0.0..=1.0).contains(&args.alpha) {
        bail!("--alpha must be between 0 and 1, got {}", args.alpha);
    }
    let class = match args.class.as_str() {
        "top1" => None,
        n => Some(
            n.parse::<usize>()
                .with_context(|| format!("--class must be a class index or top1, got {n:?}"))?,
        ),
    };
    let model = Model::load(&args.model)?;
    let preprocess = args.preprocess.resolve(model.image_input()?)?;
    let labels = Labels::for_model(args.labels.as_deref(), &args.model)?;
    let explainer = Explainer::new(model.session)
        .with_context(|| format!("{}: CAM does not apply", args.model.display()))?;
    let image = kestrel_vision::load_image(&args.image)?;
    let prepared = kestrel_vision::prepare(&image, &preprocess);
    let result = explain(&explainer, prepared.tensor, class, args.threshold)
        .with_context(|| format!("{}", args.image.display()))?;
    labels.check(explainer.tail().classes)?;

    if let Some(path) = &args.output {
        let view = kestrel_vision::model_view(&image, &preprocess);
        let overlay =
            kestrel_explain::overlay(&view, &result.upsampled, args.alpha, result.bbox.as_ref());
        overlay
            .save(path)
            .with_context(|| format!("cannot write overlay {}", path.display()))?;
    }
    if let Some(path) = &args.raw_out {
        npy::write(path, &heatmap_tensor(&result.raw))?;
    }
    if let Some(path) = &args.map_out {
        npy::write(path, &heatmap_tensor(&result.upsampled))?;
    }

    let image_box = result
        .bbox
        .as_ref()
        .map(|b| to_image(b, &prepared.window, image.dimensions()));
    if args.json {
        let boxes = |b: Option<&CamBox>| b.map(|b| json!([b.x0, b.y0, b.x1, b.y1]));
        let out = json!({
            "image": args.image,
            "class": result.class,
            "name": labels.name(result.class),
            "score": result.score,
            "box": boxes(image_box.as_ref()),
            "box_input": boxes(result.bbox.as_ref()),
            "threshold": args.threshold,
            "map": {
                "width": result.raw.width,
                "height": result.raw.height,
                "data": result.raw.data,
            },
        });
        println!("{out}");
    } else {
        println!(
            "{}: {} ({}) score {:.4}",
            args.image.display(),
            labels.name(result.class),
            result.class,
            result.score
        );
        println!("  map {}x{}", result.raw.width, result.raw.height);
        match image_box {
            Some(b) => println!(
                "  box x {:.0}..{:.0}, y {:.0}..{:.0} (image pixels)",
                b.x0, b.x1, b.y0, b.y1
            ),
            None => println!("  box: none (the map has no positive region)"),
        }
        if let Some(path) = &args.output {
            println!("  overlay {}", path.display());
        }
    }
    Ok(())
}

/// A box in model-input pixels mapped to the original image of `size`, clipped to it.
pub fn to_image(b: &CamBox, window: &CropWindow, size: (u32, u32)) -> CamBox {
    let [x0, y0, x1, y1] = window.rect_to_image([b.x0, b.y0, b.x1, b.y1], size);
    CamBox { x0, y0, x1, y1 }
}

pub fn heatmap_tensor(map: &Heatmap) -> kestrel_graph::Tensor {
    kestrel_graph::Tensor::new(vec![map.height, map.width], map.data.clone())
        .expect("a heatmap holds width x height values")
}
