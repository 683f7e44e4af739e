//! From an RGB image to a model input: preset values, layouts, geometry, the mapping back
//! to the original image, and bit-exactness against torchvision + PIL.

use std::path::Path;

use image::{Rgb, RgbImage};
use kestrel_vision::{
    load_image, model_view, prepare, prepare_batch, ChannelOrder, CropWindow, Layout, Preprocess,
    Resize,
};

const SOLID: [u8; 3] = [200, 100, 30];

fn solid(width: u32, height: u32) -> RgbImage {
    RgbImage::from_pixel(width, height, Rgb(SOLID))
}

/// Deterministic noise, so that every pixel and channel differs from its neighbours.
fn noise(width: u32, height: u32, seed: u32) -> RgbImage {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    RgbImage::from_fn(width, height, |_, _| {
        Rgb(std::array::from_fn(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        }))
    })
}

/// Checks that every value of a solid-colour input equals `expected[c]` bit for bit.
fn assert_solid(tensor: &kestrel_graph::Tensor, layout: Layout, expected: [f32; 3]) {
    let (h, w) = match (layout, tensor.shape()) {
        (Layout::Nchw, &[1, 3, h, w]) | (Layout::Nhwc, &[1, h, w, 3]) => (h, w),
        (_, shape) => panic!("shape {shape:?} for {layout:?}"),
    };
    for (i, &v) in tensor.data().iter().enumerate() {
        let c = match layout {
            Layout::Nchw => i / (h * w),
            Layout::Nhwc => i % 3,
        };
        assert_eq!(
            v.to_bits(),
            expected[c].to_bits(),
            "value {i}: {v} != {}",
            expected[c]
        );
    }
}

fn preset(name: &str) -> Preprocess {
    Preprocess::preset(name).unwrap()
}

#[test]
fn torchvision_values() {
    let p = preset("torchvision");
    let [r, g, b] = SOLID.map(f32::from);
    // torchvision: ToTensor divides by 255, Normalize subtracts and divides in f32.
    let expected = [
        (r / 255.0 - 0.485) / 0.229,
        (g / 255.0 - 0.456) / 0.224,
        (b / 255.0 - 0.406) / 0.225,
    ];
    assert!((expected[0] - 1.307_05).abs() < 1e-5, "{}", expected[0]);
    assert_solid(
        &prepare(&solid(300, 200), &p).tensor,
        Layout::Nchw,
        expected,
    );
}

#[test]
fn caffe_values_are_bgr_minus_the_mean() {
    let p = preset("caffe");
    assert_solid(
        &prepare(&solid(300, 200), &p).tensor,
        Layout::Nchw,
        [-74.0, -17.0, 77.0],
    );
}

#[test]
fn tensorflow_values_are_nhwc_in_minus_one_to_one() {
    let p = preset("tensorflow");
    let expected = SOLID.map(|x| f32::from(x) / 127.5 - 1.0);
    assert_solid(
        &prepare(&solid(300, 200), &p).tensor,
        Layout::Nhwc,
        expected,
    );
    let black = prepare(&RgbImage::new(224, 224), &p).tensor;
    assert!(black.data().iter().all(|&v| v == -1.0));
    let white = prepare(&RgbImage::from_pixel(224, 224, Rgb([255; 3])), &p).tensor;
    assert!(white.data().iter().all(|&v| v == 1.0));
}

#[test]
fn efficientnet_values() {
    let p = preset("efficientnet");
    let expected = [0.570_312_5, -0.210_937_5, -0.757_812_5]; // (x - 127) / 128, exact
    assert_solid(
        &prepare(&solid(300, 200), &p).tensor,
        Layout::Nchw,
        expected,
    );
}

#[test]
fn opennsfw_values_are_nhwc_bgr_minus_the_mean() {
    let p = preset("opennsfw");
    let prepared = prepare(&solid(300, 200), &p);
    assert_eq!(prepared.tensor.shape(), &[1, 224, 224, 3]);
    assert_solid(&prepared.tensor, Layout::Nhwc, [-74.0, -17.0, 77.0]);
}

#[test]
fn synthetic_values_match_the_training_normalisation() {
    let p = preset("synthetic");
    let prepared = prepare(&solid(96, 96), &p);
    assert_eq!(prepared.tensor.shape(), &[1, 3, 96, 96]);
    // models/train_synthetic.py: (images_u8.float() / 255.0 - 0.5) / 0.5
    let expected = SOLID.map(|x| (f32::from(x) / 255.0 - 0.5) / 0.5);
    assert_solid(&prepared.tensor, Layout::Nchw, expected);
}

/// A 5 x 3 image where channel c of pixel (x, y) is 100 c + 10 y + x, fed through with no
/// resize and no normalisation.
fn labelled_pixels() -> (RgbImage, Preprocess) {
    let image = RgbImage::from_fn(5, 3, |x, y| {
        Rgb([0, 1, 2].map(|c| (100 * c + 10 * y + x) as u8))
    });
    let p = Preprocess {
        resize: Resize::Exact {
            width: 5,
            height: 3,
        },
        crop: (5, 3),
        order: ChannelOrder::Rgb,
        scale: 1.0,
        mean: [0.0; 3],
        std: [1.0; 3],
        layout: Layout::Nchw,
    };
    (image, p)
}

#[test]
fn nchw_layout() {
    let (image, p) = labelled_pixels();
    let tensor = prepare(&image, &p).tensor;
    assert_eq!(tensor.shape(), &[1, 3, 3, 5]);
    for c in 0..3 {
        for y in 0..3 {
            for x in 0..5 {
                let value = tensor.data()[(c * 3 + y) * 5 + x];
                assert_eq!(value, (100 * c + 10 * y + x) as f32, "c {c} y {y} x {x}");
            }
        }
    }
}

#[test]
fn nhwc_layout() {
    let (image, p) = labelled_pixels();
    let p = Preprocess {
        layout: Layout::Nhwc,
        ..p
    };
    let tensor = prepare(&image, &p).tensor;
    assert_eq!(tensor.shape(), &[1, 3, 5, 3]);
    for y in 0..3 {
        for x in 0..5 {
            for c in 0..3 {
                let value = tensor.data()[(y * 5 + x) * 3 + c];
                assert_eq!(value, (100 * c + 10 * y + x) as f32, "c {c} y {y} x {x}");
            }
        }
    }
}

#[test]
fn bgr_reverses_the_channels_and_their_means() {
    let (image, p) = labelled_pixels();
    let p = Preprocess {
        order: ChannelOrder::Bgr,
        mean: [1.0, 2.0, 3.0],
        ..p
    };
    let tensor = prepare(&image, &p).tensor;
    // Output channel 0 is blue (source channel 2) minus mean[0].
    assert_eq!(tensor.data()[0], 200.0 - 1.0);
    assert_eq!(tensor.data()[15], 100.0 - 2.0);
    assert_eq!(tensor.data()[30], 0.0 - 3.0);
}

#[test]
fn torchvision_geometry_of_a_landscape_image() {
    // 300 x 200 -> shorter side 256 -> 384 x 256; the 224 crop starts at (80, 16).
    let p = preset("torchvision");
    let window = p.window(300, 200);
    let scale = 300.0 / 384.0;
    assert_eq!(
        window,
        CropWindow {
            x0: 80.0 * scale,
            y0: 16.0 * scale,
            scale_x: scale,
            scale_y: scale
        }
    );
    assert_eq!(window.to_image(0.0, 0.0), (62.5, 12.5));
    assert_eq!(window.to_image(224.0, 224.0), (237.5, 187.5));
    assert_eq!(window.to_input(62.5, 12.5), (0.0, 0.0));
    assert_eq!(prepare(&solid(300, 200), &p).window, window);

    // Portrait: 200 x 300 -> 256 x 384, crop at (16, 80).
    let window = p.window(200, 300);
    assert_eq!((window.x0, window.y0), (16.0 * scale, 80.0 * scale));
}

/// The input position (in pixel-edge coordinates) where a row or column of the model view
/// crosses mid-grey, interpolated between pixel centres.
fn crossing(values: impl Iterator<Item = u8>) -> f32 {
    let values: Vec<f32> = values.map(f32::from).collect();
    let i = values
        .windows(2)
        .position(|w| w[0] < 127.5 && w[1] >= 127.5)
        .expect("an edge");
    let t = (127.5 - values[i]) / (values[i + 1] - values[i]);
    i as f32 + 0.5 + t
}

#[test]
fn window_maps_an_edge_back_to_where_it_is_in_the_original() {
    // Dark to the left of x = 150 and above y = 120, bright elsewhere.
    let image = RgbImage::from_fn(300, 200, |x, y| {
        let v = if x >= 150 || y >= 120 { 255 } else { 0 };
        Rgb([v, v, v])
    });
    let p = preset("torchvision");
    let view = model_view(&image, &p);
    let prepared = prepare(&image, &p);

    let u = crossing((0..224).map(|u| view.get_pixel(u, 10).0[0]));
    let v = crossing((0..224).map(|v| view.get_pixel(10, v).0[0]));
    let (x, _) = prepared.window.to_image(u, 0.0);
    let (_, y) = prepared.window.to_image(0.0, v);
    assert!((x - 150.0).abs() < 0.25, "vertical edge maps to x = {x}");
    assert!((y - 120.0).abs() < 0.25, "horizontal edge maps to y = {y}");
}

#[test]
fn identity_size_is_bit_exact() {
    let image = noise(96, 96, 1);
    let p = preset("synthetic");
    assert_eq!(model_view(&image, &p), image);
    let prepared = prepare(&image, &p);
    assert_eq!(
        prepared.window,
        CropWindow {
            x0: 0.0,
            y0: 0.0,
            scale_x: 1.0,
            scale_y: 1.0
        }
    );
    for (i, &value) in prepared.tensor.data().iter().enumerate() {
        let (c, pixel) = (i / (96 * 96), i % (96 * 96));
        let x = image.as_raw()[pixel * 3 + c];
        assert_eq!(
            value.to_bits(),
            ((f32::from(x) / 255.0 - 0.5) / 0.5).to_bits()
        );
    }
}

#[test]
fn crop_of_an_image_already_at_the_resize_size_is_a_plain_cut() {
    let image = noise(256, 256, 2);
    let view = model_view(&image, &preset("opennsfw"));
    let cut = image::imageops::crop_imm(&image, 16, 16, 224, 224).to_image();
    assert_eq!(view, cut);
}

#[test]
fn crop_larger_than_the_image_is_padded_black() {
    let p = Preprocess {
        crop: (300, 200),
        ..preset("caffe")
    };
    // 256 x 256 stays as it is; the crop hangs 22 pixels over on the left and right.
    let prepared = prepare(&solid(256, 256), &p);
    assert_eq!(prepared.window.x0, -22.0);
    assert_eq!(prepared.window.y0, 28.0);
    let view = model_view(&solid(256, 256), &p);
    assert_eq!(view.get_pixel(21, 100).0, [0, 0, 0]);
    assert_eq!(view.get_pixel(22, 100).0, SOLID);
    assert_eq!(view.get_pixel(277, 100).0, SOLID);
    assert_eq!(view.get_pixel(278, 100).0, [0, 0, 0]);
}

/// A model input of another aspect than the preset's: whatever the photo's aspect, the crop
/// stays inside the photo.
#[test]
fn non_square_inputs_crop_inside_the_image() {
    for (input_w, input_h) in [(320, 224), (224, 320), (300, 32)] {
        let p = preset("torchvision").with_input_size(input_w, input_h);
        for (w, h) in [(300, 451), (451, 300), (768, 576), (64, 64)] {
            let window = prepare(&noise(w, h, 1), &p).window;
            let (x1, y1) = window.to_image(input_w as f32, input_h as f32);
            assert!(
                window.x0 >= 0.0 && window.y0 >= 0.0,
                "{w}x{h} -> {input_w}x{input_h}: {window:?}"
            );
            assert!(
                x1 <= w as f32 + 1e-3 && y1 <= h as f32 + 1e-3,
                "{w}x{h} -> {input_w}x{input_h}: {window:?}"
            );
        }
    }
}

#[test]
fn degenerate_sizes_do_not_panic() {
    let p = preset("torchvision");
    let empty = prepare(&RgbImage::new(0, 0), &p);
    assert_eq!(empty.tensor.shape(), &[1, 3, 224, 224]);
    let thin = prepare(&noise(1, 5000, 3), &p);
    assert_eq!(thin.tensor.shape(), &[1, 3, 224, 224]);
    let nothing = Preprocess { crop: (0, 0), ..p };
    assert_eq!(
        prepare(&noise(10, 10, 4), &nothing).tensor.shape(),
        &[1, 3, 0, 0]
    );
}

#[test]
fn batch_of_two() {
    let p = preset("torchvision");
    let images = [solid(300, 200), noise(180, 240, 5)];
    let batch = prepare_batch(&images, &p);
    assert_eq!(batch.shape(), &[2, 3, 224, 224]);
    let one = 3 * 224 * 224;
    for (i, image) in images.iter().enumerate() {
        let single = prepare(image, &p).tensor;
        assert_eq!(
            &batch.data()[i * one..(i + 1) * one],
            single.data(),
            "image {i}"
        );
    }

    let nhwc = prepare_batch(&images, &preset("opennsfw"));
    assert_eq!(nhwc.shape(), &[2, 224, 224, 3]);
    assert_eq!(prepare_batch(&[], &p).shape(), &[0, 3, 224, 224]);
}

fn fixture(name: &str) -> RgbImage {
    load_image(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

/// `tests/data/pattern*.png` were written by Pillow 9.4 and torchvision 0.14:
///
/// ```python
/// src = Image.fromarray(np.random.default_rng(7).integers(0, 256, (23, 37, 3), dtype=np.uint8))
/// src.resize((w, h), Image.BILINEAR)                       # pattern_exact_{w}x{h}.png
/// T.Compose([T.Resize(20), T.CenterCrop(15)])(src)         # pattern_short20_crop15x15.png
/// T.Compose([T.Resize(20), T.CenterCrop((18, 40))])(src)   # pattern_short20_crop40x18.png
/// ```
#[test]
fn resize_and_crop_match_pil_and_torchvision_bit_for_bit() {
    let src = fixture("pattern.png");
    assert_eq!(src.dimensions(), (37, 23));
    let base = preset("torchvision");
    for (w, h) in [(16, 11), (61, 40), (52, 9)] {
        let p = Preprocess {
            resize: Resize::Exact {
                width: w,
                height: h,
            },
            crop: (w, h),
            ..base.clone()
        };
        assert_eq!(
            model_view(&src, &p),
            fixture(&format!("pattern_exact_{w}x{h}.png")),
            "{w}x{h}"
        );
    }
    // 37 x 23 -> 32 x 20; offsets round(8.5) = 8 and round(2.5) = 2; the wide crop pads.
    for (w, h) in [(15, 15), (40, 18)] {
        let p = Preprocess {
            resize: Resize::ShorterSide(20),
            crop: (w, h),
            ..base.clone()
        };
        let expected = fixture(&format!("pattern_short20_crop{w}x{h}.png"));
        assert_eq!(model_view(&src, &p), expected, "crop {w}x{h}");
    }
}
