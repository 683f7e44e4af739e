//! What a model expects of its input image, and the named conventions.

use crate::VisionError;

/// Order of the three colour channels in the model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelOrder {
    Rgb,
    /// Caffe's order, inherited by the models converted from it.
    Bgr,
}

/// Memory layout of the model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[n, 3, h, w]`.
    Nchw,
    /// `[n, h, w, 3]`.
    Nhwc,
}

/// How the image is resized before the centre crop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resize {
    /// Scale so the shorter side has this length (aspect kept), then centre-crop to `crop`.
    ShorterSide(u32),
    /// Scale to exactly width x height (aspect not kept), then centre-crop to `crop`.
    Exact { width: u32, height: u32 },
}

/// Everything needed to turn an RGB image into a model input tensor.
///
/// Each value of the input is `(pixel * scale - mean[c]) / std[c]`, where `pixel` is the
/// 0..255 value of channel `c` taken in `order` (so `mean` and `std` are in that order too).
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    pub resize: Resize,
    /// `(width, height)` of the model input.
    pub crop: (u32, u32),
    pub order: ChannelOrder,
    /// Applied first, to the 0..255 pixel value.
    pub scale: f32,
    /// Subtracted after the scale, per channel in `order`.
    pub mean: [f32; 3],
    /// Divides after the mean, per channel in `order`.
    pub std: [f32; 3],
    pub layout: Layout,
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// The ILSVRC-2012 pixel mean in BGR order, as the Caffe models subtract it.
const CAFFE_MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];

impl Preprocess {
    /// Name and one-line description of every preset accepted by [`Preprocess::preset`].
    pub const PRESETS: &'static [(&'static str, &'static str)] = &[
        (
            "torchvision",
            "torchvision ImageNet models: shorter side 256, centre 224, RGB, x/255 then \
             ImageNet mean/std, NCHW",
        ),
        (
            "caffe",
            "BVLC / ONNX model-zoo Caffe models: shorter side 256, centre 224, BGR, \
             x - (104,117,123), NCHW",
        ),
        (
            "tensorflow",
            "TF/Keras inception convention: shorter side 256, centre 224, RGB, x/127.5 - 1, \
             NHWC",
        ),
        (
            "efficientnet",
            "EfficientNet-Lite0: shorter side 256, centre 224, RGB, (x - 127)/128, NCHW",
        ),
        (
            "opennsfw",
            "Yahoo open_nsfw ResNet-50: 256x256, centre 224, BGR, x - (104,117,123), NHWC",
        ),
        (
            "synthetic",
            "Kestrel's synthetic-task models: 96x96 as is, RGB, (x/255 - 0.5)/0.5, NCHW",
        ),
    ];

    /// The preset called `name` (see [`Preprocess::PRESETS`]).
    pub fn preset(name: &str) -> Result<Preprocess, VisionError> {
        let imagenet = Preprocess {
            resize: Resize::ShorterSide(256),
            crop: (224, 224),
            order: ChannelOrder::Rgb,
            scale: 1.0 / 255.0,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            layout: Layout::Nchw,
        };
        let preset = match name {
            "torchvision" => imagenet,
            "caffe" => Preprocess {
                order: ChannelOrder::Bgr,
                scale: 1.0,
                mean: CAFFE_MEAN_BGR,
                std: [1.0; 3],
                ..imagenet
            },
            // (x/255 - 0.5)/0.5 gives the same f32 values as Keras' x/127.5 - 1: the two
            // differ only by exact factors of two.
            "tensorflow" => Preprocess {
                mean: [0.5; 3],
                std: [0.5; 3],
                layout: Layout::Nhwc,
                ..imagenet
            },
            "efficientnet" => Preprocess {
                scale: 1.0,
                mean: [127.0; 3],
                std: [128.0; 3],
                ..imagenet
            },
            "opennsfw" => Preprocess {
                resize: Resize::Exact {
                    width: 256,
                    height: 256,
                },
                order: ChannelOrder::Bgr,
                scale: 1.0,
                mean: CAFFE_MEAN_BGR,
                std: [1.0; 3],
                layout: Layout::Nhwc,
                ..imagenet
            },
            // models/train_synthetic.py: SIZE 96, `normalise` = (x/255 - 0.5)/0.5. The
            // images are rendered at 96x96, so the resize leaves them untouched.
            "synthetic" => Preprocess {
                resize: Resize::Exact {
                    width: 96,
                    height: 96,
                },
                crop: (96, 96),
                mean: [0.5; 3],
                std: [0.5; 3],
                ..imagenet
            },
            _ => {
                let valid: Vec<&str> = Self::PRESETS.iter().map(|&(name, _)| name).collect();
                return Err(VisionError::UnknownPreset {
                    name: name.to_string(),
                    valid: valid.join(", "),
                });
            }
        };
        Ok(preset)
    }

    /// The same convention for a model input of `width` x `height`: the crop becomes that
    /// size and the resize grows with it, keeping the resize-to-crop ratio (256/224 for the
    /// ImageNet presets, so 299 gets a shorter side of 342 as torchvision's Inception-v3).
    /// For a non-square input the ratio is taken to the longer side of the crop, so the crop
    /// lies inside the resized image whatever its aspect, never in padding.
    pub fn with_input_size(self, width: u32, height: u32) -> Preprocess {
        if self.crop == (width, height) {
            return self;
        }
        let (crop_w, crop_h) = self.crop;
        let resize = match self.resize {
            Resize::ShorterSide(side) => {
                let old = crop_w.min(crop_h);
                Resize::ShorterSide(rescale(side, old, width.max(height)))
            }
            Resize::Exact {
                width: w,
                height: h,
            } => Resize::Exact {
                width: rescale(w, crop_w, width),
                height: rescale(h, crop_h, height),
            },
        };
        Preprocess {
            resize,
            crop: (width, height),
            ..self
        }
    }
}

/// `value * new / old`, rounded; with no old size to take a ratio from, the new size itself.
fn rescale(value: u32, old: u32, new: u32) -> u32 {
    if old == 0 {
        return new;
    }
    (f64::from(value) * f64::from(new) / f64::from(old)).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_preset_resolves() {
        for &(name, _) in Preprocess::PRESETS {
            Preprocess::preset(name).unwrap();
        }
    }

    #[test]
    fn unknown_preset_lists_the_valid_names() {
        let err = Preprocess::preset("imagenet").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("\"imagenet\""), "{message}");
        for &(name, _) in Preprocess::PRESETS {
            assert!(message.contains(name), "{message}");
        }
    }

    #[test]
    fn with_input_size_keeps_the_resize_ratio() {
        let p = Preprocess::preset("torchvision")
            .unwrap()
            .with_input_size(299, 299);
        assert_eq!(p.resize, Resize::ShorterSide(342));
        assert_eq!(p.crop, (299, 299));

        let p = Preprocess::preset("opennsfw")
            .unwrap()
            .with_input_size(448, 224);
        assert_eq!(
            p.resize,
            Resize::Exact {
                width: 512,
                height: 256
            }
        );

        // A wide input: the shorter side follows the crop's longer side (320 * 256/224).
        let p = Preprocess::preset("torchvision")
            .unwrap()
            .with_input_size(320, 224);
        assert_eq!(p.resize, Resize::ShorterSide(366));

        let p = Preprocess::preset("synthetic")
            .unwrap()
            .with_input_size(128, 128);
        assert_eq!(
            p.resize,
            Resize::Exact {
                width: 128,
                height: 128
            }
        );
    }

    #[test]
    fn with_input_size_of_the_current_crop_changes_nothing() {
        for &(name, _) in Preprocess::PRESETS {
            let p = Preprocess::preset(name).unwrap();
            assert_eq!(p.clone().with_input_size(p.crop.0, p.crop.1), p);
        }
    }
}
