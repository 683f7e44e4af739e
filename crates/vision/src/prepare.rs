//! Resize, centre crop, normalise and lay out: an RGB image to a model input tensor.

use image::RgbImage;
use kestrel_graph::Tensor;

use crate::preset::{ChannelOrder, Layout, Preprocess, Resize};
use crate::resample::resize_window;

/// Where the model input sits in the original image: input pixel `(u, v)` covers original
/// pixel `(x0 + u * scale_x, y0 + v * scale_y)`.
///
/// Coordinates are continuous with pixel edges on integers, so `(0, 0)` is the top-left
/// corner of the first pixel and input pixel `u` spans `u..u + 1`. A box given in input
/// pixels maps corner by corner. `x0` or `y0` is negative when the crop is larger than the
/// resized image and reaches into the black padding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CropWindow {
    pub x0: f32,
    pub y0: f32,
    pub scale_x: f32,
    pub scale_y: f32,
}

impl CropWindow {
    /// The original-image point under model-input point `(u, v)`.
    pub fn to_image(&self, u: f32, v: f32) -> (f32, f32) {
        (self.x0 + u * self.scale_x, self.y0 + v * self.scale_y)
    }

    /// The rectangle `[x0, y0, x1, y1]` of the model input mapped to the original image of
    /// `(width, height)` pixels, and clipped to it: where a crop reaches beyond the image, a box
    /// found on the model input must still lie on the photo.
    pub fn rect_to_image(&self, rect: [f32; 4], (width, height): (u32, u32)) -> [f32; 4] {
        let (x0, y0) = self.to_image(rect[0], rect[1]);
        let (x1, y1) = self.to_image(rect[2], rect[3]);
        let (w, h) = (width as f32, height as f32);
        [
            x0.clamp(0.0, w),
            y0.clamp(0.0, h),
            x1.clamp(0.0, w),
            y1.clamp(0.0, h),
        ]
    }

    /// The model-input point over original-image point `(x, y)`; the inverse of
    /// [`CropWindow::to_image`].
    pub fn to_input(&self, x: f32, y: f32) -> (f32, f32) {
        ((x - self.x0) / self.scale_x, (y - self.y0) / self.scale_y)
    }
}

/// A model input and where it came from in the original image.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// `[1, 3, h, w]` or `[1, h, w, 3]` as the layout asks.
    pub tensor: Tensor,
    pub window: CropWindow,
}

/// Size of the resized image and the top-left corner of the crop in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    resized: (u32, u32),
    offset: (i64, i64),
}

impl Preprocess {
    fn geometry(&self, width: u32, height: u32) -> Geometry {
        let resized = match self.resize {
            Resize::ShorterSide(side) => shorter_side(width, height, side),
            Resize::Exact { width, height } => (width, height),
        };
        let offset = (
            centre_offset(resized.0, self.crop.0),
            centre_offset(resized.1, self.crop.1),
        );
        Geometry { resized, offset }
    }

    /// Where the model input cut from a `width` x `height` image sits in that image.
    pub fn window(&self, width: u32, height: u32) -> CropWindow {
        let g = self.geometry(width, height);
        let ratio = |original: u32, resized: u32| {
            if resized == 0 {
                1.0
            } else {
                original as f32 / resized as f32
            }
        };
        let scale_x = ratio(width, g.resized.0);
        let scale_y = ratio(height, g.resized.1);
        CropWindow {
            x0: g.offset.0 as f32 * scale_x,
            y0: g.offset.1 as f32 * scale_y,
            scale_x,
            scale_y,
        }
    }
}

/// torchvision's `Resize(side)`: the shorter side becomes `side` and the longer one
/// `int(side * long / short)`, truncated. An empty image stays empty.
fn shorter_side(width: u32, height: u32, side: u32) -> (u32, u32) {
    if width == 0 || height == 0 {
        return (0, 0);
    }
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (u64::from(side) * u64::from(long)) as f64 / f64::from(short);
    let new_long = new_long as u32;
    if width <= height {
        (side, new_long)
    } else {
        (new_long, side)
    }
}

/// torchvision's `CenterCrop` offset along one axis: `int(round((size - crop) / 2))`, with
/// Python's round-half-to-even; when the crop is larger, the image is padded by
/// `(crop - size) // 2` before it, so the offset is that much negative.
fn centre_offset(size: u32, crop: u32) -> i64 {
    if size < crop {
        return -i64::from((crop - size) / 2);
    }
    let diff = size - crop;
    let half = diff / 2;
    let round_up = diff % 2 == 1 && half % 2 == 1;
    i64::from(half + u32::from(round_up))
}

/// The resized and cropped RGB image exactly as the model sees it, before normalisation:
/// `crop.0` x `crop.1` pixels, for drawing results over what the model looked at.
pub fn model_view(image: &RgbImage, p: &Preprocess) -> RgbImage {
    let g = p.geometry(image.width(), image.height());
    log::debug!(
        "{}x{} resized to {}x{}, {}x{} crop at ({}, {})",
        image.width(),
        image.height(),
        g.resized.0,
        g.resized.1,
        p.crop.0,
        p.crop.1,
        g.offset.0,
        g.offset.1
    );
    resize_window(image, g.resized, g.offset, p.crop)
}

/// Resizes, centre-crops and normalises `image` into a `[1, 3, h, w]` (NCHW) or
/// `[1, h, w, 3]` (NHWC) tensor, with the window it was cut from.
pub fn prepare(image: &RgbImage, p: &Preprocess) -> Prepared {
    let view = model_view(image, p);
    let mut data = Vec::with_capacity(view.len());
    push_normalised(&view, p, &mut data);
    let tensor = Tensor::new(shape(p, 1), data).expect("one value per channel and pixel");
    Prepared {
        tensor,
        window: p.window(image.width(), image.height()),
    }
}

/// Several images, each prepared as by [`prepare`], stacked into one `[n, ...]` tensor.
/// The windows are [`Preprocess::window`] of each image's size.
pub fn prepare_batch(images: &[RgbImage], p: &Preprocess) -> Tensor {
    let per_image = 3 * p.crop.0 as usize * p.crop.1 as usize;
    let mut data = Vec::with_capacity(images.len() * per_image);
    for image in images {
        push_normalised(&model_view(image, p), p, &mut data);
    }
    Tensor::new(shape(p, images.len()), data).expect("one value per channel and pixel")
}

fn shape(p: &Preprocess, n: usize) -> Vec<usize> {
    let (w, h) = (p.crop.0 as usize, p.crop.1 as usize);
    match p.layout {
        Layout::Nchw => vec![n, 3, h, w],
        Layout::Nhwc => vec![n, h, w, 3],
    }
}

/// Appends the normalised values of `view` to `out` in the preprocess's channel order and
/// layout.
fn push_normalised(view: &RgbImage, p: &Preprocess, out: &mut Vec<f32>) {
    let tables = value_tables(p);
    let source = match p.order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    let pixels = view.as_raw().chunks_exact(3);
    match p.layout {
        Layout::Nchw => {
            for (table, &s) in tables.iter().zip(&source) {
                out.extend(pixels.clone().map(|px| table[usize::from(px[s])]));
            }
        }
        Layout::Nhwc => {
            for px in pixels {
                for (table, &s) in tables.iter().zip(&source) {
                    out.push(table[usize::from(px[s])]);
                }
            }
        }
    }
}

/// The normalised value of every 8-bit sample, per output channel.
fn value_tables(p: &Preprocess) -> [[f32; 256]; 3] {
    // torchvision's `ToTensor` and the training scripts divide by 255; multiplying by the
    // f32 nearest 1/255 differs from that in the last bit for about 40% of the samples.
    let divisor = (1.0 / f64::from(p.scale)).round();
    let divide = (1.0..=65536.0).contains(&divisor) && (1.0 / divisor) as f32 == p.scale;
    let divisor = divisor as f32;
    std::array::from_fn(|c| {
        std::array::from_fn(|x| {
            let x = x as f32;
            let scaled = if divide { x / divisor } else { x * p.scale };
            (scaled - p.mean[c]) / p.std[c]
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centre_offset_rounds_half_to_even() {
        // Python: int(round(x / 2.0)) for x = 0..=5 gives 0, 0, 1, 2, 2, 2.
        let offsets: Vec<i64> = (0..6).map(|d| centre_offset(224 + d, 224)).collect();
        assert_eq!(offsets, [0, 0, 1, 2, 2, 2]);
        assert_eq!(centre_offset(341, 224), 58);
        assert_eq!(centre_offset(343, 224), 60);
        assert_eq!(centre_offset(219, 224), -2);
    }

    #[test]
    fn shorter_side_truncates_the_longer_side() {
        assert_eq!(shorter_side(300, 200, 256), (384, 256));
        assert_eq!(shorter_side(200, 300, 256), (256, 384));
        // 256 * 451 / 300 = 384.85, truncated as torchvision does.
        assert_eq!(shorter_side(451, 300, 256), (384, 256));
        assert_eq!(shorter_side(256, 256, 256), (256, 256));
        assert_eq!(shorter_side(0, 300, 256), (0, 0));
    }

    #[test]
    fn one_over_255_divides() {
        let p = Preprocess::preset("synthetic").unwrap();
        let tables = value_tables(&p);
        for (x, value) in tables[0].iter().enumerate() {
            let expected = (x as f32 / 255.0 - 0.5) / 0.5;
            assert_eq!(value.to_bits(), expected.to_bits(), "{x}");
        }
    }

    #[test]
    fn tensorflow_preset_equals_keras_inception_scaling() {
        let tables = value_tables(&Preprocess::preset("tensorflow").unwrap());
        for (x, value) in tables[1].iter().enumerate() {
            let keras = x as f32 / 127.5 - 1.0;
            assert_eq!(value.to_bits(), keras.to_bits(), "{x}");
        }
    }
}
