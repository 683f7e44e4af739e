//! Shared helpers of Kestrel's integration tests.
//!
//! The whole-model tests compare Kestrel with tract, which plays the fp32 oracle: both run the
//! same ONNX file on the same input, and every output must agree to a tolerance relative to the
//! largest value tract produces. When they do not, [`oracle::first_divergence`] names the first
//! Kestrel value that parts from tract's tensor of the same name.
//!
//! Model files are generated locally into `models/cache/` and are not part of the repository:
//! [`model_file`] skips a test (with a note) when one is missing, unless
//! `KESTREL_REQUIRE_MODELS=1` asks for missing models to be failures.

pub mod fuzz_checks;
pub mod naive;
pub mod onnx_builder;
pub mod oracle;
pub mod photos;

use std::path::{Path, PathBuf};

use kestrel_graph::Tensor;

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where `models/fetch_all.sh` puts the generated and fetched models and photos.
pub fn cache_dir() -> PathBuf {
    repo_root().join("models").join("cache")
}

/// Whether a missing model file must fail the test instead of skipping it.
pub fn models_required() -> bool {
    std::env::var("KESTREL_REQUIRE_MODELS").is_ok_and(|v| v == "1")
}

/// `path` if it exists. Otherwise prints why the test is skipped and returns `None`, or panics
/// when `KESTREL_REQUIRE_MODELS=1`.
pub fn required_file(path: PathBuf, how_to_get_it: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    if models_required() {
        panic!("{} is missing; {how_to_get_it}", path.display());
    }
    eprintln!(
        "note: {} is missing, test skipped ({how_to_get_it}; set KESTREL_REQUIRE_MODELS=1 to make \
         this a failure)",
        path.display()
    );
    None
}

/// A model or photo under `models/cache/`, see [`required_file`].
pub fn model_file(relative: &str) -> Option<PathBuf> {
    required_file(
        cache_dir().join(relative),
        "run `bash models/fetch_all.sh` to create it",
    )
}

/// A deterministic pseudo-random generator (SplitMix64), so every run sees the same inputs.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f64() as f32
    }

    /// Standard normal, by Box-Muller.
    pub fn normal(&mut self) -> f32 {
        let u = 1.0 - self.next_f64();
        let v = self.next_f64();
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

/// A tensor of standard-normal values drawn from `seed`.
pub fn random_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let len = shape.iter().product();
    let data = (0..len).map(|_| rng.normal()).collect();
    Tensor::new(shape.to_vec(), data).expect("length matches shape")
}

/// A tensor of values uniform in `[lo, hi)` drawn from `seed`.
pub fn uniform_tensor(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let len = shape.iter().product();
    let data = (0..len).map(|_| rng.uniform(lo, hi)).collect();
    Tensor::new(shape.to_vec(), data).expect("length matches shape")
}

/// Largest absolute difference between two equally long slices (NaN if either holds a NaN
/// where the other does not).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "compared slices differ in length");
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            // Equal infinities and NaN against NaN count as agreement.
            if (x.is_nan() && y.is_nan()) || x == y {
                0.0
            } else {
                (x - y).abs()
            }
        })
        .fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m })
}

/// Largest absolute value (0 for an empty slice).
pub fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0.0, |m, &v| m.max(v.abs()))
}

/// Indices of the `k` largest values, largest first.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[j].total_cmp(&values[i]));
    order.truncate(k);
    order
}

/// Reads a float32 `.npy` file into a tensor.
pub fn read_npy(path: &Path) -> Tensor {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let data: Vec<f32> = npy
        .into_vec()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tensor::new(shape, data).expect("npy length matches its shape")
}
