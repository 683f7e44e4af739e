//! Procedural rendering of one sample: background, distractors, then the object.

use crate::rng::{sin_cos, Rng};
use crate::Shape;

type Rgb = [f32; 3];

/// Floating-point RGB image in [0, 1], row-major.
#[derive(Clone)]
pub(crate) struct Canvas {
    pub(crate) size: usize,
    pub(crate) px: Vec<Rgb>,
}

impl Canvas {
    fn new(size: usize) -> Self {
        Canvas {
            size,
            px: vec![[0.0; 3]; size * size],
        }
    }

    pub(crate) fn to_rgb8(&self) -> image::RgbImage {
        let side = self.size as u32;
        image::RgbImage::from_fn(side, side, |x, y| {
            let p = self.px[y as usize * self.size + x as usize];
            image::Rgb(p.map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8))
        })
    }

    /// Alpha-blends `colour` over the pixels a 2x2-supersampled `inside` test hits.
    fn fill(&mut self, inside: impl Fn(f32, f32) -> bool, colour: impl Fn(f32, f32) -> Rgb) {
        for y in 0..self.size {
            for x in 0..self.size {
                let cover = coverage(x, y, &inside);
                if cover > 0.0 {
                    let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
                    let p = &mut self.px[y * self.size + x];
                    *p = mix(*p, colour(cx, cy), cover);
                }
            }
        }
    }
}

/// Fraction of the four sub-pixel samples of pixel (x, y) that fall inside.
fn coverage(x: usize, y: usize, inside: impl Fn(f32, f32) -> bool) -> f32 {
    const OFFSETS: [(f32, f32); 4] = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)];
    let hits = OFFSETS
        .iter()
        .filter(|(dx, dy)| inside(x as f32 + dx, y as f32 + dy))
        .count();
    hits as f32 * 0.25
}

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [0, 1, 2].map(|i| a[i] + (b[i] - a[i]) * t)
}

pub(crate) fn luma(c: Rgb) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

fn hsv(h: f32, s: f32, v: f32) -> Rgb {
    let h6 = (h - h.floor()) * 6.0;
    let sector = h6.floor();
    let f = h6 - sector;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match sector as u32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

fn random_colour(rng: &mut Rng, sat: (f32, f32), val: (f32, f32)) -> Rgb {
    let h = rng.unit();
    let s = rng.range(sat.0, sat.1);
    let v = rng.range(val.0, val.1);
    hsv(h, s, v)
}

/// Smooth value noise on a `cells` x `cells` lattice spanning `extent` pixels.
struct ValueNoise {
    cells: usize,
    scale: f32,
    lattice: Vec<f32>,
}

impl ValueNoise {
    fn new(rng: &mut Rng, cells: usize, extent: f32) -> Self {
        let lattice = (0..(cells + 1) * (cells + 1)).map(|_| rng.unit()).collect();
        ValueNoise {
            cells,
            scale: cells as f32 / extent,
            lattice,
        }
    }

    fn at(&self, x: f32, y: f32) -> f32 {
        let max = self.cells as f32 - 1e-3;
        let gx = (x * self.scale).clamp(0.0, max);
        let gy = (y * self.scale).clamp(0.0, max);
        let (ix, iy) = (gx as usize, gy as usize);
        let (fx, fy) = (smoothstep(gx - ix as f32), smoothstep(gy - iy as f32));
        let row = self.cells + 1;
        let v = |i: usize, j: usize| self.lattice[j * row + i];
        let top = v(ix, iy) + (v(ix + 1, iy) - v(ix, iy)) * fx;
        let bottom = v(ix, iy + 1) + (v(ix + 1, iy + 1) - v(ix, iy + 1)) * fx;
        top + (bottom - top) * fy
    }
}

fn smoothstep(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Periodic stripes in [0, 1] along a random direction.
struct Stripes {
    dir: (f32, f32),
    freq: f32,
    phase: f32,
}

impl Stripes {
    fn new(rng: &mut Rng, period: f32) -> Self {
        let (s, c) = sin_cos(rng.angle());
        let freq = std::f32::consts::TAU / period;
        Stripes {
            dir: (c, s),
            freq,
            phase: rng.angle(),
        }
    }

    fn at(&self, x: f32, y: f32) -> f32 {
        let t = (x * self.dir.0 + y * self.dir.1) * self.freq + self.phase;
        0.5 + 0.5 * sin_cos(t).0
    }
}

/// Smooth noise, optional stripes and an optional gradient, in muted colours.
pub(crate) fn background(rng: &mut Rng, size: usize) -> Canvas {
    let side = size as f32;
    let unit = side / 96.0;
    let c0 = random_colour(rng, (0.0, 0.6), (0.1, 0.9));
    let c1 = random_colour(rng, (0.0, 0.6), (0.1, 0.9));
    let coarse_cells = 2 + rng.below(5) as usize;
    let coarse = ValueNoise::new(rng, coarse_cells, side);
    let fine_cells = 10 + rng.below(10) as usize;
    let fine = ValueNoise::new(rng, fine_cells, side);
    let fine_amp = rng.range(0.0, 0.15);

    let stripes = rng.chance(0.5).then(|| {
        let period = rng.range(4.0, 16.0) * unit;
        let s = Stripes::new(rng, period);
        (
            s,
            random_colour(rng, (0.0, 0.7), (0.1, 0.9)),
            rng.range(0.1, 0.35),
        )
    });
    let gradient = rng.chance(0.5).then(|| {
        let (s, c) = sin_cos(rng.angle());
        (c / side, s / side, rng.range(-0.3, 0.3))
    });

    let mut canvas = Canvas::new(size);
    for y in 0..size {
        for x in 0..size {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let mut p = mix(c0, c1, coarse.at(fx, fy));
            let grain = (fine.at(fx, fy) - 0.5) * fine_amp;
            if let Some((s, colour, amp)) = &stripes {
                p = mix(p, *colour, s.at(fx, fy) * amp);
            }
            let shade = gradient.map_or(0.0, |(gx, gy, amp)| {
                amp * ((fx - side / 2.0) * gx + (fy - side / 2.0) * gy)
            });
            canvas.px[y * size + x] = p.map(|v| v + grain + shade);
        }
    }
    canvas
}

/// Small blobs and thin line segments, all much smaller than the smallest object, so
/// that colour edges alone do not mark the object.
pub(crate) fn distractors(rng: &mut Rng, canvas: &mut Canvas) {
    let side = canvas.size as f32;
    let unit = side / 96.0;

    for _ in 0..3 + rng.below(6) {
        let (cx, cy) = (rng.range(0.0, side), rng.range(0.0, side));
        let (rx, ry) = (rng.range(1.5, 5.5) * unit, rng.range(1.5, 5.5) * unit);
        let (s, c) = sin_cos(rng.angle());
        let colour = random_colour(rng, (0.0, 1.0), (0.1, 1.0));
        canvas.fill(
            |x, y| {
                let (dx, dy) = (x - cx, y - cy);
                let (u, v) = ((dx * c + dy * s) / rx, (dy * c - dx * s) / ry);
                u * u + v * v <= 1.0
            },
            |_, _| colour,
        );
    }

    for _ in 0..2 + rng.below(4) {
        let (x0, y0) = (rng.range(0.0, side), rng.range(0.0, side));
        let len = rng.range(0.1, 0.35) * side;
        let (s, c) = sin_cos(rng.angle());
        let half_width = rng.range(0.5, 1.3) * unit;
        let colour = random_colour(rng, (0.0, 1.0), (0.1, 1.0));
        canvas.fill(
            |x, y| {
                let t = ((x - x0) * c + (y - y0) * s).clamp(0.0, len);
                let (dx, dy) = (x - x0 - t * c, y - y0 - t * s);
                dx * dx + dy * dy <= half_width * half_width
            },
            |_, _| colour,
        );
    }
}

/// Per-pixel sensor-like noise.
pub(crate) fn grain(rng: &mut Rng, canvas: &mut Canvas, amp: f32) {
    for p in &mut canvas.px {
        let n = (rng.unit() + rng.unit() - 1.0) * amp;
        *p = p.map(|v| v + n);
    }
}

/// Membership test in the shape's own frame, where it fits the unit disk.
fn shape_contains(
    shape: Shape,
    star: &[(f32, f32)],
    triangle: &[(f32, f32)],
    u: f32,
    v: f32,
) -> bool {
    let r2 = u * u + v * v;
    match shape {
        Shape::Disk => r2 <= 1.0,
        Shape::Ring => (0.5 * 0.5..=1.0).contains(&r2),
        Shape::Square => u.abs().max(v.abs()) <= 0.75,
        Shape::Cross => {
            let (a, b) = (u.abs(), v.abs());
            (a <= 0.3 && b <= 0.95) || (b <= 0.3 && a <= 0.95)
        }
        Shape::Triangle => in_polygon(triangle, u, v),
        Shape::Star => in_polygon(star, u, v),
    }
}

/// Even-odd crossing test.
fn in_polygon(poly: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let ((xi, yi), (xj, yj)) = (poly[i], poly[j]);
        if (yi > y) != (yj > y) && x < xi + (y - yi) * (xj - xi) / (yj - yi) {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Regular polygon (or star when `inner` < 1) with a vertex pointing up.
fn polygon(points: usize, inner: f32) -> Vec<(f32, f32)> {
    let step = std::f32::consts::PI / points as f32;
    (0..2 * points)
        .filter_map(|k| {
            let r = if k % 2 == 0 { 1.0 } else { inner };
            if inner >= 1.0 && k % 2 == 1 {
                return None;
            }
            let (s, c) = sin_cos(k as f32 * step - std::f32::consts::FRAC_PI_2);
            Some((r * c, r * s))
        })
        .collect()
}

/// Draws the object and returns its per-pixel coverage in [0, 1].
pub(crate) fn object(rng: &mut Rng, canvas: &mut Canvas, shape: Shape) -> Vec<f32> {
    let size = canvas.size;
    let side = size as f32;
    let unit = side / 96.0;

    let radius = rng.range(0.125, 0.3) * side;
    let aspect = rng.range(0.85, 1.15);
    let (ax, ay) = (radius * aspect, radius / aspect);
    let reach = ax.max(ay);
    // Any rotation of the unit disk scaled by (ax, ay) stays within `reach` of the
    // centre, so the whole object is always inside the image.
    let cx = rng.range(reach, side - reach);
    let cy = rng.range(reach, side - reach);
    let (sin, cos) = sin_cos(rng.angle());
    let local = move |x: f32, y: f32| {
        let (dx, dy) = (x - cx, y - cy);
        ((dx * cos + dy * sin) / ax, (dy * cos - dx * sin) / ay)
    };

    let (base, accent) = object_colours(rng, canvas, (cx, cy), reach);
    let texture = Texture::new(rng, unit);
    let grain_amp = rng.range(0.0, 0.04);

    let star = polygon(5, 0.45);
    let triangle = polygon(3, 1.0);
    let inside = |x: f32, y: f32| {
        let (u, v) = local(x, y);
        shape_contains(shape, &star, &triangle, u, v)
    };

    let mut cover = vec![0.0; size * size];
    for y in 0..size {
        for x in 0..size {
            let c = coverage(x, y, inside);
            if c > 0.0 {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let (u, v) = local(px, py);
                let n = (rng.unit() + rng.unit() - 1.0) * grain_amp;
                let colour = mix(base, accent, texture.at(px, py, u, v)).map(|ch| ch + n);
                let p = &mut canvas.px[y * size + x];
                *p = mix(*p, colour, c);
                cover[y * size + x] = c;
            }
        }
    }
    cover
}

/// A base colour that stands out from the local background in brightness, and an
/// accent for the texture that keeps to the same side of the background.
fn object_colours(rng: &mut Rng, canvas: &Canvas, centre: (f32, f32), reach: f32) -> (Rgb, Rgb) {
    let size = canvas.size;
    let lo = |c: f32| (c - reach).max(0.0) as usize;
    let hi = |c: f32| ((c + reach) as usize).min(size);
    let (mut sum, mut n) = (0.0f32, 0.0f32);
    for y in lo(centre.1)..hi(centre.1) {
        for x in lo(centre.0)..hi(centre.0) {
            sum += luma(canvas.px[y * size + x]);
            n += 1.0;
        }
    }
    let bg = sum / n.max(1.0);

    let mut base = random_colour(rng, (0.2, 1.0), (0.1, 1.0));
    for _ in 0..64 {
        if (luma(base) - bg).abs() >= 0.25 {
            break;
        }
        base = random_colour(rng, (0.2, 1.0), (0.1, 1.0));
    }
    let brighter = luma(base) > bg;
    if (luma(base) - bg).abs() < 0.25 {
        // Rare fallback when the background is mid-grey and every draw was close.
        let v = if bg < 0.5 { 0.95 } else { 0.05 };
        base = [v; 3];
    }
    let shift = rng.range(0.15, 0.45);
    let hue_shift = random_colour(rng, (0.3, 1.0), (0.5, 1.0));
    let accent = if brighter {
        mix(mix(base, [1.0; 3], shift), hue_shift, 0.2)
    } else {
        mix(base, [0.0; 3], shift).map(|c| c * 0.9)
    };
    (base, accent)
}

/// Surface pattern of the object; chosen independently of the class.
enum Texture {
    Noise(ValueNoise),
    Stripes(Stripes),
    Checker { cell: f32 },
    Shading { dir: (f32, f32) },
}

impl Texture {
    fn new(rng: &mut Rng, unit: f32) -> Self {
        match rng.below(4) {
            0 => {
                let cells = 6 + rng.below(10) as usize;
                Texture::Noise(ValueNoise::new(rng, cells, 96.0 * unit))
            }
            1 => {
                let period = rng.range(3.0, 9.0) * unit;
                Texture::Stripes(Stripes::new(rng, period))
            }
            2 => Texture::Checker {
                cell: rng.range(0.15, 0.5),
            },
            _ => {
                let (s, c) = sin_cos(rng.angle());
                Texture::Shading { dir: (c, s) }
            }
        }
    }

    /// Accent weight at image point (x, y), whose shape-frame coordinates are (u, v).
    fn at(&self, x: f32, y: f32, u: f32, v: f32) -> f32 {
        match self {
            Texture::Noise(n) => n.at(x, y),
            Texture::Stripes(s) => s.at(x, y),
            Texture::Checker { cell } => {
                let parity = ((u / cell).floor() + (v / cell).floor()) as i64;
                (parity.rem_euclid(2)) as f32
            }
            Texture::Shading { dir } => (0.5 + 0.5 * (u * dir.0 + v * dir.1)).clamp(0.0, 1.0),
        }
    }
}
