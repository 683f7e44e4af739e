//! Class activation maps as 2-D images: resizing, statistics and the localisation box.

/// A 2-D map, row-major: pixel `(x, y)` is `data[y * width + x]`.
///
/// Every method expects `data.len() == width * height`; a map that breaks this is treated as
/// empty (no box, NaN statistics, a zero map when upsampled).
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

/// A pixel box, `x0..x1` by `y0..y1` (inclusive start, exclusive end), in the pixel
/// coordinates of the map it was found in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CamBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl CamBox {
    pub fn width(&self) -> f32 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> f32 {
        self.y1 - self.y0
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// Intersection over union; 0 when the union is empty.
    pub fn iou(&self, other: &CamBox) -> f32 {
        let ix = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let iy = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }

    /// The box with x coordinates multiplied by `sx` and y by `sy` (map pixels to image pixels).
    pub fn scaled(&self, sx: f32, sy: f32) -> CamBox {
        CamBox {
            x0: self.x0 * sx,
            y0: self.y0 * sy,
            x1: self.x1 * sx,
            y1: self.y1 * sy,
        }
    }
}

impl Heatmap {
    /// A map, or `None` when `data` does not hold `width * height` values.
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Option<Heatmap> {
        (width.checked_mul(height) == Some(data.len())).then_some(Heatmap {
            width,
            height,
            data,
        })
    }

    pub fn get(&self, x: usize, y: usize) -> Option<f32> {
        if x >= self.width || y >= self.height {
            return None;
        }
        self.pixels()?.get(y * self.width + x).copied()
    }

    /// The pixels, when the map is consistent.
    fn pixels(&self) -> Option<&[f32]> {
        (self.width.checked_mul(self.height) == Some(self.data.len())).then_some(&self.data[..])
    }

    /// The largest value, ignoring NaN; NaN when there is none.
    pub fn max(&self) -> f32 {
        self.pixels()
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .reduce(f32::max)
            .unwrap_or(f32::NAN)
    }

    /// The smallest value, ignoring NaN; NaN when there is none.
    pub fn min(&self) -> f32 {
        self.pixels()
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .reduce(f32::min)
            .unwrap_or(f32::NAN)
    }

    /// The mean value; NaN for an empty map.
    pub fn mean(&self) -> f32 {
        let pixels = self.pixels().unwrap_or_default();
        let sum: f64 = pixels.iter().map(|&v| f64::from(v)).sum();
        (sum / pixels.len() as f64) as f32
    }

    /// Bilinear resize with half-pixel centres, as torch's
    /// `F.interpolate(mode="bilinear", align_corners=False)` computes it in f32: output pixel `i`
    /// samples source coordinate `max(0, (i + 0.5) * in / out - 0.5)`, and the last row and
    /// column repeat at the far edge. An empty source gives a zero map.
    pub fn upsample(&self, width: usize, height: usize) -> Heatmap {
        let mut data = vec![0.0f32; width * height];
        let src = match self.pixels() {
            Some(p) if !p.is_empty() => p,
            _ => {
                return Heatmap {
                    width,
                    height,
                    data,
                }
            }
        };
        let xs = linear_taps(self.width, width);
        let ys = linear_taps(self.height, height);
        let sw = self.width;
        for (out_row, &(y0, y1, a0, a1)) in data.chunks_exact_mut(width.max(1)).zip(&ys) {
            let (r0, r1) = (&src[y0 * sw..][..sw], &src[y1 * sw..][..sw]);
            for (o, &(x0, x1, b0, b1)) in out_row.iter_mut().zip(&xs) {
                let top = r0[x0] * b0 + r0[x1] * b1;
                let bottom = r1[x0] * b0 + r1[x1] * b1;
                *o = top * a0 + bottom * a1;
            }
        }
        Heatmap {
            width,
            height,
            data,
        }
    }

    /// Box around the largest 8-connected region of pixels `>= fraction * max`.
    ///
    /// This is the CAM paper's localisation rule as the synthetic task's reference
    /// (`largest_region_box` in `models/train_synthetic.py`) computes it: the threshold is
    /// `fraction * max` rounded once to f32 (numpy forms the product in f64, then compares in
    /// f32); regions are numbered in row-major order of their first pixel and a tie keeps the
    /// earlier region; the box spans the region's pixels with exclusive ends.
    ///
    /// Returns `None` (the reference's empty `(0, 0, 0, 0)` box) when no pixel passes: an empty
    /// map, a map holding NaN (numpy's max is then NaN and every comparison false), or a map
    /// whose maximum is negative (then `fraction * max > max` for fraction < 1). A map of zeros
    /// passes everywhere (`0 >= 0`) and gives the whole map.
    pub fn bounding_box(&self, fraction: f32) -> Option<CamBox> {
        let pixels = self.pixels()?;
        if pixels.is_empty() || pixels.iter().any(|v| v.is_nan()) {
            return None;
        }
        let threshold = (f64::from(fraction) * f64::from(self.max())) as f32;
        let mask: Vec<bool> = pixels.iter().map(|&v| v >= threshold).collect();
        largest_region(&mask, self.width, self.height)
    }
}

/// For each of `out` output positions: the two source indices and their weights.
fn linear_taps(input: usize, out: usize) -> Vec<(usize, usize, f32, f32)> {
    let scale = input as f32 / out as f32;
    (0..out)
        .map(|i| {
            let real = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (real as usize).min(input - 1);
            let i1 = if i0 + 1 < input { i0 + 1 } else { i0 };
            let l1 = (real - i0 as f32).clamp(0.0, 1.0);
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

/// Box of the largest 8-connected region of `mask`, the first in row-major order on a tie.
fn largest_region(mask: &[bool], width: usize, height: usize) -> Option<CamBox> {
    let mut seen = vec![false; mask.len()];
    let mut stack = Vec::new();
    let mut best: Option<(usize, [usize; 4])> = None;
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (sx, sy) = (start % width, start / width);
        let (mut count, mut x0, mut y0, mut x1, mut y1) = (0, sx, sy, sx, sy);
        while let Some(p) = stack.pop() {
            let (x, y) = (p % width, p / width);
            count += 1;
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            for ny in y.saturating_sub(1)..(y + 2).min(height) {
                for nx in x.saturating_sub(1)..(x + 2).min(width) {
                    let q = ny * width + nx;
                    if mask[q] && !seen[q] {
                        seen[q] = true;
                        stack.push(q);
                    }
                }
            }
        }
        match best {
            Some((n, _)) if n >= count => {}
            _ => best = Some((count, [x0, y0, x1 + 1, y1 + 1])),
        }
    }
    best.map(|(_, [x0, y0, x1, y1])| CamBox {
        x0: x0 as f32,
        y0: y0 as f32,
        x1: x1 as f32,
        y1: y1 as f32,
    })
}
