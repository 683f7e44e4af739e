//! Image preprocessing options shared by the image commands.

use anyhow::{bail, Result};
use kestrel_vision::{ChannelOrder, Layout, Preprocess};

use crate::model::ImageInput;

#[derive(clap::Args, Clone, Debug)]
pub struct PreprocessArgs {
    /// Preprocessing convention: torchvision, caffe, tensorflow, efficientnet, opennsfw,
    /// synthetic.
    #[arg(long, default_value = "torchvision")]
    pub preset: String,
    /// Channel order fed to the model, overriding the preset.
    #[arg(long, value_parser = ["rgb", "bgr"])]
    pub order: Option<String>,
    /// Per-channel mean subtracted after scaling, e.g. 104,117,123 (or 104 117 123).
    #[arg(long, value_delimiter = ',', num_args = 1..=3, allow_negative_numbers = true)]
    pub mean: Option<Vec<f32>>,
    /// Per-channel divisor applied after the mean, e.g. 0.229,0.224,0.225.
    #[arg(long, value_delimiter = ',', num_args = 1..=3)]
    pub std: Option<Vec<f32>>,
    /// Factor applied to the 0..255 pixel values first, e.g. 0.00392157.
    #[arg(long)]
    pub scale: Option<f32>,
    /// Resize the shorter side to this many pixels before the centre crop.
    #[arg(long)]
    pub resize: Option<u32>,
}

impl PreprocessArgs {
    /// The preset with the overrides applied, sized and laid out for `input`.
    pub fn resolve(&self, input: ImageInput) -> Result<Preprocess> {
        let mut p = Preprocess::preset(&self.preset)?.with_input_size(input.width, input.height);
        // Images of any size are brought to the size the model was built for.
        log::info!(
            "the model takes {}x{} images; each image is resized and cropped to that",
            input.width,
            input.height
        );
        p.layout = if input.channels_last {
            Layout::Nhwc
        } else {
            Layout::Nchw
        };
        if let Some(order) = &self.order {
            p.order = if order == "bgr" {
                ChannelOrder::Bgr
            } else {
                ChannelOrder::Rgb
            };
        }
        if let Some(mean) = &self.mean {
            p.mean = three("--mean", mean)?;
        }
        if let Some(std) = &self.std {
            three("--std", std)?;
            if std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
                bail!("--std values must be finite and non-zero, got {std:?}");
            }
            p.std = [std[0], std[1], std[2]];
        }
        if let Some(scale) = self.scale {
            if !scale.is_finite() {
                bail!("--scale must be finite, got {scale}");
            }
            p.scale = scale;
        }
        if let Some(side) = self.resize {
            if side < input.width.min(input.height) {
                bail!(
                    "--resize {side} is smaller than the model input {}x{}",
                    input.width,
                    input.height
                );
            }
            p.resize = kestrel_vision::Resize::ShorterSide(side);
        }
        Ok(p)
    }
}

/// The three per-channel values of an option given as `a,b,c` or `a b c`.
fn three(option: &str, values: &[f32]) -> Result<[f32; 3]> {
    match *values {
        [a, b, c] if values.iter().all(|v| v.is_finite()) => Ok([a, b, c]),
        [_, _, _] => bail!("{option} values must be finite, got {values:?}"),
        _ => bail!(
            "{option} takes one value per channel (3), got {}: {values:?}",
            values.len()
        ),
    }
}
