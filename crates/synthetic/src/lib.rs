//! The project's synthetic localization task.
//!
//! Every sample is a square RGB image holding exactly one filled object of one of
//! [`NUM_CLASSES`] shapes, at a random position, scale (box side roughly 25% to 60%
//! of the image side), aspect and rotation, with a surface colour and pattern drawn
//! independently of the class. The background is smooth noise with optional stripes
//! and gradient, cluttered with small blobs and line segments that are never object
//! shapes. The object's box is known exactly: it is the tight box of every pixel the
//! object touches.
//!
//! Samples are a pure function of `(seed, index, size)`: the generator uses its own
//! SplitMix64 stream and arithmetic-only trigonometry, so images are bit-identical
//! across platforms and dependency versions. The project uses three seeds:
//!
//! | seed | use |
//! |---|---|
//! | [`TRAIN_SEED`] = 1 | training |
//! | [`VAL_SEED`] = 2 | validation during training |
//! | [`EVAL_SEED`] = 3 | held-out evaluation (accuracy and CAM box IoU) |

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

mod render;
mod rng;

use rng::Rng;

pub const NUM_CLASSES: usize = 6;

/// Class names, indexed by class id.
pub const CLASS_NAMES: [&str; NUM_CLASSES] =
    ["disk", "square", "triangle", "cross", "ring", "star"];

pub const DEFAULT_SIZE: u32 = 96;

pub const TRAIN_SEED: u64 = 1;
pub const VAL_SEED: u64 = 2;
pub const EVAL_SEED: u64 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Disk,
    Square,
    Triangle,
    Cross,
    Ring,
    Star,
}

impl Shape {
    const ALL: [Shape; NUM_CLASSES] = [
        Shape::Disk,
        Shape::Square,
        Shape::Triangle,
        Shape::Cross,
        Shape::Ring,
        Shape::Star,
    ];
}

/// Axis-aligned box in pixels, `x0..x1` by `y0..y1` (inclusive-exclusive).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl BBox {
    /// Zero for empty or inverted boxes.
    pub fn area(&self) -> f32 {
        (self.x1 - self.x0).max(0.0) * (self.y1 - self.y0).max(0.0)
    }

    /// Intersection over union; zero when both boxes are empty.
    pub fn iou(&self, other: &BBox) -> f32 {
        let inter = BBox {
            x0: self.x0.max(other.x0),
            y0: self.y0.max(other.y0),
            x1: self.x1.min(other.x1),
            y1: self.y1.min(other.y1),
        }
        .area();
        let union = self.area() + other.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }
}

pub struct Sample {
    pub image: image::RgbImage,
    pub class: usize,
    pub bbox: BBox,
}

/// A sample together with what the tests need to check it against.
// Only the tests read `background` and `coverage`.
#[cfg_attr(not(test), allow(dead_code))]
struct Rendered {
    sample: Sample,
    /// The image just before the object was drawn.
    background: image::RgbImage,
    /// Fraction of each pixel covered by the object, row-major.
    coverage: Vec<f32>,
}

/// Sample `index` of the stream with this `seed`, as a `size` x `size` image.
///
/// Each sample depends only on its own arguments, so any subset of a stream can be
/// generated in any order or in parallel.
pub fn sample(seed: u64, index: u64, size: u32) -> Sample {
    render(seed, index, size).sample
}

fn render(seed: u64, index: u64, size: u32) -> Rendered {
    assert!(
        size >= 16,
        "images smaller than 16 pixels cannot hold a recognisable shape"
    );
    let mut rng = Rng::for_sample(seed, index);
    let class = rng.below(NUM_CLASSES as u32) as usize;

    let mut canvas = render::background(&mut rng, size as usize);
    render::distractors(&mut rng, &mut canvas);
    let amp = rng.range(0.0, 0.04);
    render::grain(&mut rng, &mut canvas, amp);
    let background = canvas.to_rgb8();

    let coverage = render::object(&mut rng, &mut canvas, Shape::ALL[class]);
    let bbox = covered_box(&coverage, size as usize);
    Rendered {
        sample: Sample {
            image: canvas.to_rgb8(),
            class,
            bbox,
        },
        background,
        coverage,
    }
}

/// Tight box around the pixels with non-zero coverage.
fn covered_box(coverage: &[f32], size: usize) -> BBox {
    let (mut x0, mut y0, mut x1, mut y1) = (size, size, 0, 0);
    for (i, _) in coverage.iter().enumerate().filter(|(_, &c)| c > 0.0) {
        let (x, y) = (i % size, i / size);
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x + 1);
        y1 = y1.max(y + 1);
    }
    BBox {
        x0: x0 as f32,
        y0: y0 as f32,
        x1: x1 as f32,
        y1: y1 as f32,
    }
}

/// Writes samples `0..count` of stream `seed` to `dir` as `NNNNNN.png`, with
/// `labels.csv` (`file,class,x0,y0,x1,y1`, class as an index) and `labels.txt`
/// (class names, one per line, in index order).
pub fn write_dataset(dir: &Path, seed: u64, count: u64, size: u32) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;

    // Threads take interleaved indices; labels are gathered and then written in order.
    let mut rows: Vec<(u64, usize, BBox)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || -> io::Result<Vec<(u64, usize, BBox)>> {
                    let mut rows = Vec::new();
                    for index in (t..count).step_by(threads as usize) {
                        let s = sample(seed, index, size);
                        let path = dir.join(file_name(index));
                        s.image.save(&path).map_err(io::Error::other)?;
                        rows.push((index, s.class, s.bbox));
                    }
                    Ok(rows)
                })
            })
            .collect();
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.join().expect("dataset worker panicked")?);
        }
        Ok::<_, io::Error>(all)
    })?;
    rows.sort_by_key(|r| r.0);

    let mut csv = String::from("file,class,x0,y0,x1,y1\n");
    for (index, class, b) in rows {
        let name = file_name(index);
        writeln!(csv, "{name},{class},{},{},{},{}", b.x0, b.y0, b.x1, b.y1)
            .expect("writing to a String cannot fail");
    }
    fs::write(dir.join("labels.csv"), csv)?;
    fs::write(dir.join("labels.txt"), CLASS_NAMES.join("\n") + "\n")
}

fn file_name(index: u64) -> String {
    format!("{index:06}.png")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_deterministic() {
        for index in [0, 1, 17, 1000] {
            let a = sample(TRAIN_SEED, index, DEFAULT_SIZE);
            let b = sample(TRAIN_SEED, index, DEFAULT_SIZE);
            assert_eq!(a.image, b.image);
            assert_eq!(a.class, b.class);
            assert_eq!(a.bbox, b.bbox);
        }
        let other = sample(VAL_SEED, 0, DEFAULT_SIZE);
        assert_ne!(sample(TRAIN_SEED, 0, DEFAULT_SIZE).image, other.image);
    }

    /// Pins a few exact values so that an accidental change to the generator, which
    /// would silently change every dataset, fails here.
    #[test]
    fn samples_are_pinned() {
        let s = sample(EVAL_SEED, 0, DEFAULT_SIZE);
        let digest = s.image.as_raw().iter().fold(0u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
        });
        assert_eq!((s.class, s.bbox, digest), PINNED);
    }

    const PINNED: (usize, BBox, u64) = (
        0,
        BBox {
            x0: 10.0,
            y0: 32.0,
            x1: 64.0,
            y1: 88.0,
        },
        4_564_569_782_021_984_288,
    );

    #[test]
    fn boxes_lie_inside_the_image_and_have_the_promised_size() {
        for size in [48, 96, 160] {
            for index in 0..200 {
                let b = sample(TRAIN_SEED, index, size).bbox;
                let side = size as f32;
                assert!(0.0 <= b.x0 && b.x0 < b.x1 && b.x1 <= side, "{b:?}");
                assert!(0.0 <= b.y0 && b.y0 < b.y1 && b.y1 <= side, "{b:?}");
                let longest = (b.x1 - b.x0).max(b.y1 - b.y0) / side;
                assert!((0.15..=0.7).contains(&longest), "{longest} {b:?}");
            }
        }
    }

    #[test]
    fn box_matches_drawn_pixels() {
        let size = DEFAULT_SIZE as usize;
        for index in 0..100 {
            let r = render(VAL_SEED, index, DEFAULT_SIZE);
            let b = r.sample.bbox;
            let mut changed_inside = 0;
            let mut covered = 0;
            for (i, &c) in r.coverage.iter().enumerate() {
                let (x, y) = ((i % size) as u32, (i / size) as u32);
                let (before, after) =
                    (r.background.get_pixel(x, y), r.sample.image.get_pixel(x, y));
                let in_box =
                    (b.x0..b.x1).contains(&(x as f32)) && (b.y0..b.y1).contains(&(y as f32));
                if c == 0.0 {
                    assert_eq!(before, after, "pixel ({x}, {y}) changed outside the object");
                } else {
                    assert!(in_box, "covered pixel ({x}, {y}) outside {b:?}");
                    covered += 1;
                    changed_inside += usize::from(before != after);
                }
            }
            // Tight: every edge of the box holds at least one covered pixel.
            let at = |x: f32, y: f32| r.coverage[y as usize * size + x as usize] > 0.0;
            let (x0, y0, x1, y1) = (b.x0, b.y0, b.x1 - 1.0, b.y1 - 1.0);
            assert!((b.y0 as u32..b.y1 as u32).any(|y| at(x0, y as f32)));
            assert!((b.y0 as u32..b.y1 as u32).any(|y| at(x1, y as f32)));
            assert!((b.x0 as u32..b.x1 as u32).any(|x| at(x as f32, y0)));
            assert!((b.x0 as u32..b.x1 as u32).any(|x| at(x as f32, y1)));
            assert!(
                changed_inside * 10 >= covered * 9,
                "object barely visible: {index}"
            );
        }
    }

    #[test]
    fn objects_stand_out_from_their_surroundings() {
        for index in 0..100 {
            let r = render(EVAL_SEED, index, DEFAULT_SIZE);
            let (mut diff, mut n) = (0.0, 0.0);
            for (i, &c) in r.coverage.iter().enumerate().filter(|(_, &c)| c == 1.0) {
                let _ = c;
                let (x, y) = ((i % 96) as u32, (i / 96) as u32);
                let luma = |p: &image::Rgb<u8>| render::luma(p.0.map(|v| v as f32 / 255.0));
                diff += (luma(r.sample.image.get_pixel(x, y)) - luma(r.background.get_pixel(x, y)))
                    .abs();
                n += 1.0;
            }
            assert!(
                diff / n > 0.1,
                "sample {index}: mean luma change {}",
                diff / n
            );
        }
    }

    #[test]
    fn classes_are_roughly_balanced() {
        let n = 3000;
        let mut counts = [0usize; NUM_CLASSES];
        for index in 0..n {
            counts[sample(TRAIN_SEED, index, 32).class] += 1;
        }
        let expected = n as usize / NUM_CLASSES;
        for (class, &c) in counts.iter().enumerate() {
            assert!(
                c.abs_diff(expected) < expected / 5,
                "{}: {c} of {n}",
                CLASS_NAMES[class]
            );
        }
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = BBox {
            x0: 0.0,
            y0: 0.0,
            x1: 10.0,
            y1: 10.0,
        };
        let b = BBox {
            x0: 5.0,
            y0: 0.0,
            x1: 15.0,
            y1: 10.0,
        };
        let far = BBox {
            x0: 20.0,
            y0: 20.0,
            x1: 30.0,
            y1: 30.0,
        };
        assert_eq!(a.area(), 100.0);
        assert_eq!(a.iou(&a), 1.0);
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&far), 0.0);
        let empty = BBox {
            x0: 3.0,
            y0: 3.0,
            x1: 3.0,
            y1: 3.0,
        };
        assert_eq!(empty.iou(&empty), 0.0);
    }

    #[test]
    fn dataset_files_and_labels_agree() {
        let dir = std::env::temp_dir().join(format!("kestrel-synthetic-{}", std::process::id()));
        write_dataset(&dir, VAL_SEED, 5, 48).unwrap();
        let csv = fs::read_to_string(dir.join("labels.csv")).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "file,class,x0,y0,x1,y1");
        assert_eq!(lines.len(), 6);
        for (index, line) in lines[1..].iter().enumerate() {
            let s = sample(VAL_SEED, index as u64, 48);
            let b = s.bbox;
            let want = format!(
                "{:06}.png,{},{},{},{},{}",
                index, s.class, b.x0, b.y0, b.x1, b.y1
            );
            assert_eq!(*line, want);
            let img = image::open(dir.join(format!("{index:06}.png")))
                .unwrap()
                .to_rgb8();
            assert_eq!(img, s.image);
        }
        let names = fs::read_to_string(dir.join("labels.txt")).unwrap();
        assert_eq!(names.lines().collect::<Vec<_>>(), CLASS_NAMES);
        fs::remove_dir_all(&dir).unwrap();
    }
}
