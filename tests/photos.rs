//! The photos in `models/cache/photos/` and the preprocessing each real-weight model expects
//! (as `models/README.md` describes it), so both engines see the same input tensor.

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::RgbImage;
use kestrel_graph::Tensor;

/// The twelve photos `models/fetch_real.sh` provides.
pub const PHOTOS: [&str; 12] = [
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "dog.jpg",
    "eagle.jpg",
    "giraffe.jpg",
    "grace_hopper.jpg",
    "horses.jpg",
    "kite.jpg",
    "motorcycle_left.png",
    "person.jpg",
    "rocket.jpg",
];

/// Paths of every photo, or `None` (after a note, see [`crate::model_file`]) if any is missing.
pub fn photo_paths() -> Option<Vec<PathBuf>> {
    PHOTOS
        .iter()
        .map(|p| crate::model_file(&format!("photos/{p}")))
        .collect()
}

fn load_rgb(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

/// EfficientNet-Lite0: RGB, shorter side to 256 (bilinear), centre crop 224, `(x - 127) / 128`,
/// NCHW `[1, 3, 224, 224]`.
pub fn efficientnet_input(path: &Path) -> Tensor {
    let img = load_rgb(path);
    let (w, h) = img.dimensions();
    let scale = 256.0 / w.min(h) as f64;
    let (rw, rh) = (
        ((w as f64 * scale).round() as u32).max(256),
        ((h as f64 * scale).round() as u32).max(256),
    );
    let resized = imageops::resize(&img, rw, rh, FilterType::Triangle);
    let (left, top) = ((rw - 224) / 2, (rh - 224) / 2);
    let crop = imageops::crop_imm(&resized, left, top, 224, 224).to_image();
    let mut data = vec![0.0; 3 * 224 * 224];
    for (x, y, p) in crop.enumerate_pixels() {
        for c in 0..3 {
            data[(c * 224 + y as usize) * 224 + x as usize] = (p[c] as f32 - 127.0) / 128.0;
        }
    }
    Tensor::new(vec![1, 3, 224, 224], data).expect("224x224x3")
}

/// open_nsfw: resize to 256x256 (bilinear, aspect not kept), crop 224 at offset 16, BGR minus
/// (104, 117, 123), NHWC `[1, 224, 224, 3]`.
pub fn opennsfw_input(path: &Path) -> Tensor {
    let img = load_rgb(path);
    let resized = imageops::resize(&img, 256, 256, FilterType::Triangle);
    let crop = imageops::crop_imm(&resized, 16, 16, 224, 224).to_image();
    let mean = [104.0, 117.0, 123.0];
    let mut data = vec![0.0; 224 * 224 * 3];
    for (x, y, p) in crop.enumerate_pixels() {
        let base = (y as usize * 224 + x as usize) * 3;
        for (c, m) in mean.iter().enumerate() {
            data[base + c] = p[2 - c] as f32 - m;
        }
    }
    Tensor::new(vec![1, 224, 224, 3], data).expect("224x224x3")
}

/// Concatenates single-image tensors `[1, ...]` into one batch `[n, ...]`.
pub fn batch(images: &[Tensor]) -> Tensor {
    let mut shape = images[0].shape().to_vec();
    shape[0] = images.len();
    let data = images
        .iter()
        .flat_map(|t| t.data().iter().copied())
        .collect();
    Tensor::new(shape, data).expect("images of one shape")
}
