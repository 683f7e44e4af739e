use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use serde_json::json;

use crate::commands::localize::{evaluate, summarize};
use crate::labels::Labels;

#[derive(clap::Args)]
pub struct Args {
    /// Folder holding the bundled models and their labels.txt.
    #[arg(long, default_value = "models/synthetic")]
    models_dir: PathBuf,
    /// Output folder for overlays and boxes.json.
    #[arg(long, short = 'o', default_value = "out/demo")]
    out: PathBuf,
    /// Generated held-out images to evaluate per model.
    #[arg(long, default_value_t = 200)]
    count: u64,
    /// How many of them to save as overlays.
    #[arg(long, default_value_t = 12)]
    overlays: u64,
}

const MODELS: [&str; 2] = ["googlenet_tiny", "resnet_tiny"];
const TRUE_BOX: Rgb<u8> = Rgb([0, 255, 0]);

pub fn run(args: Args) -> Result<()> {
    let labels = Labels::read(&args.models_dir.join("labels.txt"))?;
    for name in MODELS {
        let model = args.models_dir.join(format!("{name}.onnx"));
        let records = evaluate(
            &model,
            kestrel_synthetic::EVAL_SEED,
            args.count,
            kestrel_explain::DEFAULT_THRESHOLD,
        )?;
        let dir = args.out.join(name);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut entries = Vec::new();
        for r in &records {
            let file = format!("{:04}.png", r.index);
            if r.index < args.overlays {
                let mut overlay =
                    kestrel_explain::overlay(&r.sample.image, &r.heatmap, 0.5, r.cam_box.as_ref());
                let b = &r.sample.bbox;
                outline(&mut overlay, [b.x0, b.y0, b.x1, b.y1], TRUE_BOX);
                let path = dir.join(&file);
                overlay
                    .save(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            let b = &r.sample.bbox;
            entries.push(json!({
                "index": r.index,
                "overlay": (r.index < args.overlays).then_some(file),
                "class": r.sample.class,
                "predicted": r.predicted,
                "name": labels.name(r.predicted),
                "score": r.score,
                "true_box": [b.x0, b.y0, b.x1, b.y1],
                "cam_box": r.cam_box.as_ref().map(|c| [c.x0, c.y0, c.x1, c.y1]),
                "iou": r.iou,
            }));
        }
        let path = dir.join("boxes.json");
        fs::write(&path, serde_json::to_string_pretty(&entries)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let s = summarize(&records);
        println!(
            "{name}: {} held-out images: accuracy {:.1}%, CAM box IoU >= 0.5 for {:.1}% \
             (median IoU {:.3}); {} overlays and boxes.json in {}",
            s.images,
            100.0 * s.accuracy,
            100.0 * s.localized,
            s.median_iou,
            args.overlays.min(args.count),
            dir.display()
        );
    }
    Ok(())
}

/// Draws a one-pixel rectangle outline for the box `[x0, y0, x1, y1]` (exclusive ends).
fn outline(image: &mut RgbImage, b: [f32; 4], colour: Rgb<u8>) {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let clamp = |v: f32, hi: i64| (v.round() as i64).clamp(0, hi - 1) as u32;
    let (x0, y0) = (clamp(b[0], w), clamp(b[1], h));
    let (x1, y1) = (clamp(b[2] - 1.0, w), clamp(b[3] - 1.0, h));
    for x in x0..=x1 {
        image.put_pixel(x, y0, colour);
        image.put_pixel(x, y1, colour);
    }
    for y in y0..=y1 {
        image.put_pixel(x0, y, colour);
        image.put_pixel(x1, y, colour);
    }
}
