//! Drawing a map over the image it explains.

use image::{Rgb, RgbImage};

use crate::heatmap::{CamBox, Heatmap};

/// The jet colormap at `t` in 0..=1 (dark blue, blue, cyan, yellow, red, dark red), as the
/// usual piecewise-linear approximation of MATLAB's. Values outside 0..=1 are clamped and NaN
/// maps to 0.
pub fn jet(t: f32) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let channel = |centre: f32| {
        let v = (1.5 - (4.0 * t - centre).abs()).clamp(0.0, 1.0);
        (v * 255.0).round() as u8
    };
    [channel(3.0), channel(2.0), channel(1.0)]
}

/// The image with `map` drawn over it: the map normalised from its min to its max, coloured with
/// [`jet`] and blended in at `alpha` (clamped to 0..=1; NaN counts as 0), and `bbox` outlined in
/// white. A map of another size than the image is resized to it with [`Heatmap::upsample`], and
/// `bbox` (in the map's pixels) is scaled with it. Non-finite map values draw as the low end of
/// the colormap.
pub fn overlay(image: &RgbImage, map: &Heatmap, alpha: f32, bbox: Option<&CamBox>) -> RgbImage {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let mut out = image.clone();
    if width == 0 || height == 0 {
        return out;
    }
    let alpha = if alpha.is_nan() {
        0.0
    } else {
        alpha.clamp(0.0, 1.0)
    };
    let consistent =
        !map.data.is_empty() && map.width.checked_mul(map.height) == Some(map.data.len());

    if consistent {
        let resized;
        let map = if (map.width, map.height) == (width, height) {
            map
        } else {
            resized = map.upsample(width, height);
            &resized
        };
        let (lo, hi) = (map.min(), map.max());
        let range = hi - lo;
        for (pixel, &v) in out.pixels_mut().zip(&map.data) {
            let t = if range > 0.0 && v.is_finite() {
                (v - lo) / range
            } else {
                0.0
            };
            let colour = jet(t);
            for (c, &heat) in pixel.0.iter_mut().zip(&colour) {
                *c = (f32::from(*c) * (1.0 - alpha) + f32::from(heat) * alpha).round() as u8;
            }
        }
    }

    if let Some(b) = bbox {
        let (sx, sy) = if consistent {
            (
                width as f32 / map.width as f32,
                height as f32 / map.height as f32,
            )
        } else {
            (1.0, 1.0)
        };
        outline(&mut out, &b.scaled(sx, sy));
    }
    out
}

/// Draws the edges of `b` (image pixels) inside the box, a line about 1% of the image thick.
fn outline(image: &mut RgbImage, b: &CamBox) {
    if ![b.x0, b.y0, b.x1, b.y1].iter().all(|v| v.is_finite()) {
        return;
    }
    let (w, h) = (image.width(), image.height());
    let clamp = |v: f32, max: u32| v.round().clamp(0.0, max as f32) as u32;
    let (x0, x1) = (clamp(b.x0, w), clamp(b.x1, w));
    let (y0, y1) = (clamp(b.y0, h), clamp(b.y1, h));
    let thick = (w.min(h) / 100).max(1);
    for y in y0..y1 {
        for x in x0..x1 {
            let edge = x < x0 + thick || x + thick >= x1 || y < y0 + thick || y + thick >= y1;
            if edge {
                image.put_pixel(x, y, Rgb([255, 255, 255]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_runs_blue_to_red() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(0.5), [128, 255, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
        assert_eq!(jet(f32::NAN), jet(0.0));
        assert_eq!(jet(7.0), jet(1.0));
    }

    #[test]
    fn overlay_blends_and_outlines() {
        let image = RgbImage::from_pixel(8, 8, Rgb([100, 100, 100]));
        let map = Heatmap::new(2, 2, vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        let bbox = CamBox {
            x0: 1.0,
            y0: 1.0,
            x1: 2.0,
            y1: 2.0,
        };
        let out = overlay(&image, &map, 0.5, Some(&bbox));
        assert_eq!(out.dimensions(), (8, 8));
        // The box is scaled by 4: its edge runs through (4, 4) and its inside is blended.
        assert_eq!(out.get_pixel(4, 4).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(7, 7).0, [255, 255, 255]);
        assert_ne!(out.get_pixel(5, 5).0, [255, 255, 255]);
        // The top-left corner is the map's minimum: half grey, half dark blue.
        assert_eq!(out.get_pixel(0, 0).0, [50, 50, 114]);

        let untouched = overlay(&image, &map, 0.0, None);
        assert_eq!(untouched, image);
    }

    #[test]
    fn overlay_survives_degenerate_maps() {
        let image = RgbImage::from_pixel(4, 3, Rgb([10, 20, 30]));
        let flat = Heatmap::new(4, 3, vec![1.0; 12]).unwrap();
        let out = overlay(&image, &flat, 1.0, None);
        assert!(out.pixels().all(|p| p.0 == jet(0.0)));
        let broken = Heatmap {
            width: 5,
            height: 5,
            data: vec![f32::NAN; 3],
        };
        let nan_box = CamBox {
            x0: f32::NAN,
            y0: 0.0,
            x1: 1.0,
            y1: 1.0,
        };
        assert_eq!(overlay(&image, &broken, 0.5, Some(&nan_box)), image);
        let empty = RgbImage::new(0, 0);
        assert_eq!(overlay(&empty, &flat, 0.5, None).dimensions(), (0, 0));
    }
}
