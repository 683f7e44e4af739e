//! Images in, model input tensors out.
//!
//! Three steps turn a photo into what a CNN expects, and this crate owns all of them:
//!
//! 1. [`load_image`] decodes a PNG or JPEG file to 8-bit RGB, refusing files whose header
//!    declares more pixels than [`MAX_IMAGE_SIDE`] / [`MAX_IMAGE_PIXELS`] before any pixel is
//!    decoded.
//! 2. [`prepare`] resizes, centre-crops and normalises the image as a [`Preprocess`]
//!    describes, and lays it out as `[1, 3, h, w]` or `[1, h, w, 3]`; [`prepare_batch`]
//!    stacks several images into one `[n, ...]` tensor.
//! 3. The [`CropWindow`] returned with the tensor maps a point of the model input back to the
//!    original image, so a box found on the 224x224 crop can be drawn on the photo.
//!
//! The conventions the models in this project were trained with are named presets
//! ([`Preprocess::preset`], listed in [`Preprocess::PRESETS`]).
//!
//! # Fidelity to the reference pipelines
//!
//! The presets describe torchvision-style pipelines (`Resize`, `CenterCrop`, `ToTensor`,
//! `Normalize` on a PIL image), and the geometry and arithmetic follow them bit for bit:
//!
//! - the resize is PIL's antialiased bilinear filter, including its fixed-point
//!   coefficients and the 8-bit rounding between the horizontal and the vertical pass;
//! - the shorter-side resize truncates the longer side and the centre crop rounds its offset
//!   half to even, as torchvision does;
//! - a scale of `1/255` divides by 255 rather than multiplying by its reciprocal, as
//!   `ToTensor` does.
//!
//! Only the resampled window that the crop keeps is computed, so a very elongated photo
//! costs no more than a square one. JPEG decoding is the `image` crate's, not libjpeg's, so
//! decoded JPEG pixels (and only those) may differ slightly from PIL's. EXIF orientation is
//! not applied, as PIL does not apply it either.

mod load;
mod prepare;
mod preset;
mod resample;

use std::path::PathBuf;

pub use load::{decode_image, load_image, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE};
pub use prepare::{model_view, prepare, prepare_batch, CropWindow, Prepared};
pub use preset::{ChannelOrder, Layout, Preprocess, Resize};

/// Why an image could not be loaded or a preset not found.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("unknown preprocessing preset {name:?} (valid presets: {valid})")]
    UnknownPreset { name: String, valid: String },

    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{}: not a PNG or JPEG image (unrecognised file signature)", .path.display())]
    NotAnImage { path: PathBuf },

    #[error("{}: {format} images are not supported, only PNG and JPEG", .path.display())]
    UnsupportedFormat { path: PathBuf, format: String },

    #[error(
        "{}: the image declares {width}x{height} pixels, more than the limit of \
         {MAX_IMAGE_SIDE} per side and {max_pixels} in all",
        .path.display()
    )]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        max_pixels: u64,
    },

    #[error("{}: the JPEG data ends before its end-of-image marker (truncated file?)", .path.display())]
    Truncated { path: PathBuf },

    #[error("cannot decode {}: {source}", .path.display())]
    Decode {
        path: PathBuf,
        source: image::ImageError,
    },
}
