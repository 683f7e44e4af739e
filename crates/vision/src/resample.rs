//! PIL's antialiased bilinear resize, computed only over the window a crop keeps.
//!
//! The coefficients, their fixed-point form and the rounding follow Pillow's
//! `libImaging/Resample.c`, so a torchvision `Resize` + `CenterCrop` of the same RGB pixels
//! gives the same bytes. Each output sample depends only on its own index, which is what
//! lets the crop be resampled without resampling the rest of the image.

use std::ops::Range;

use image::RgbImage;

/// Fraction bits of the fixed-point weights: `32 - 8 - 2` as in Pillow, so that 8-bit
/// samples times weights summing to one fit an `i32` with room for rounding error.
const PRECISION_BITS: u32 = 22;
const ONE: i32 = 1 << PRECISION_BITS;

/// The source samples one output sample reads: `weights[k]` applies to `start + k`.
#[derive(Clone, Debug, PartialEq)]
struct Taps {
    start: usize,
    weights: Vec<i32>,
}

impl Taps {
    fn end(&self) -> usize {
        self.start + self.weights.len()
    }
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs` for output sample `out` of a resize from `in_size` to
/// `out_size`, followed by `normalize_coeffs_8bpc`. The filter widens with the downscale
/// factor, which is what makes the resize antialiased.
fn bilinear_taps(in_size: u32, out_size: u32, out: u32) -> Taps {
    let scale = f64::from(in_size) / f64::from(out_size);
    let filter_scale = scale.max(1.0);
    let support = filter_scale;
    let inv_filter_scale = 1.0 / filter_scale;
    let center = (f64::from(out) + 0.5) * scale;

    // `as` truncates toward zero, as Pillow's `(int)` casts do.
    let min = ((center - support + 0.5) as i64).max(0);
    let max = ((center + support + 0.5) as i64).min(i64::from(in_size));
    let weights: Vec<f64> = (min..max)
        .map(|x| triangle((x as f64 - center + 0.5) * inv_filter_scale))
        .collect();
    let total: f64 = weights.iter().sum();
    let weights = weights
        .iter()
        .map(|&w| {
            let w = if total != 0.0 { w / total } else { w };
            (0.5 + w * f64::from(ONE)) as i32
        })
        .collect();
    Taps {
        start: min as usize,
        weights,
    }
}

/// Taps for `count` consecutive output samples starting at `offset` (which may lie outside
/// `0..out_size`; those samples are `None` and come out black).
fn axis_taps(in_size: u32, out_size: u32, offset: i64, count: u32) -> Vec<Option<Taps>> {
    (0..i64::from(count))
        .map(|i| {
            let out = offset + i;
            if in_size == 0 || out < 0 || out >= i64::from(out_size) {
                return None;
            }
            // The same size is an exact copy; Pillow skips that pass as well.
            Some(if in_size == out_size {
                Taps {
                    start: out as usize,
                    weights: vec![ONE],
                }
            } else {
                bilinear_taps(in_size, out_size, out as u32)
            })
        })
        .collect()
}

/// Pillow's `clip8`: the rounded fixed-point sum as an 8-bit sample.
fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i64 = 1 << (PRECISION_BITS - 1);

/// The `crop` window at `offset` of `image` resized to `size`. Samples of the window that
/// fall outside the resized image are black, as torchvision's `CenterCrop` pads them.
pub(crate) fn resize_window(
    image: &RgbImage,
    size: (u32, u32),
    offset: (i64, i64),
    crop: (u32, u32),
) -> RgbImage {
    let (in_w, in_h) = image.dimensions();
    let (crop_w, crop_h) = crop;
    let columns = axis_taps(in_w, size.0, offset.0, crop_w);
    let rows = axis_taps(in_h, size.1, offset.1, crop_h);
    let mut out = RgbImage::new(crop_w, crop_h);

    // Source rows the vertical pass reads.
    let used: Range<usize> = match (
        rows.iter().flatten().map(|t| t.start).min(),
        rows.iter().flatten().map(Taps::end).max(),
    ) {
        (Some(first), Some(last)) => first..last,
        _ => return out,
    };

    // Horizontal pass: [used rows, crop_w, 3], rounded to 8 bits as in Pillow.
    let src = image.as_raw();
    let row_len = in_w as usize * 3;
    let mut temp = vec![0u8; used.len() * crop_w as usize * 3];
    for (y, temp_row) in used.clone().zip(temp.chunks_exact_mut(crop_w as usize * 3)) {
        let src_row = &src[y * row_len..(y + 1) * row_len];
        for (taps, px) in columns.iter().zip(temp_row.chunks_exact_mut(3)) {
            let Some(taps) = taps else { continue };
            let mut sum = [HALF; 3];
            for (k, &w) in taps.weights.iter().enumerate() {
                let s = &src_row[(taps.start + k) * 3..][..3];
                for c in 0..3 {
                    sum[c] += i64::from(s[c]) * i64::from(w);
                }
            }
            for c in 0..3 {
                px[c] = clip8(sum[c]);
            }
        }
    }

    // Vertical pass over the intermediate rows.
    let temp_row_len = crop_w as usize * 3;
    for (v, taps) in rows.iter().enumerate() {
        let Some(taps) = taps else { continue };
        for (u, column) in columns.iter().enumerate() {
            if column.is_none() {
                continue;
            }
            let mut sum = [HALF; 3];
            for (k, &w) in taps.weights.iter().enumerate() {
                let t = &temp[(taps.start + k - used.start) * temp_row_len + u * 3..][..3];
                for c in 0..3 {
                    sum[c] += i64::from(t[c]) * i64::from(w);
                }
            }
            out.put_pixel(u as u32, v as u32, image::Rgb(sum.map(clip8)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_are_normalised_and_cover_the_filter() {
        for (in_size, out_size) in [(300, 256), (256, 300), (4000, 224), (7, 3), (3, 7)] {
            for out in 0..out_size {
                let taps = bilinear_taps(in_size, out_size, out);
                let total: i32 = taps.weights.iter().sum();
                assert!((total - ONE).abs() <= taps.weights.len() as i32, "{taps:?}");
                assert!(taps.end() <= in_size as usize);
            }
        }
    }

    #[test]
    fn halving_averages_pixel_pairs() {
        // Downscaling by two widens the triangle to [-2, 2]; its centre falls between two
        // source pixels, which get weights 3/8 each and their outer neighbours 1/8.
        let taps = bilinear_taps(8, 4, 1);
        assert_eq!(taps.start, 1);
        let expected = [0.125, 0.375, 0.375, 0.125].map(|w| (0.5 + w * f64::from(ONE)) as i32);
        assert_eq!(taps.weights, expected);
    }

    #[test]
    fn window_outside_the_image_is_black() {
        let image = RgbImage::from_pixel(4, 4, image::Rgb([200, 100, 50]));
        let out = resize_window(&image, (4, 4), (-1, -2), (6, 8));
        for (x, y, px) in out.enumerate_pixels() {
            let inside = (1..5).contains(&x) && (2..6).contains(&y);
            assert_eq!(
                px.0,
                if inside { [200, 100, 50] } else { [0, 0, 0] },
                "({x}, {y})"
            );
        }
    }
}
