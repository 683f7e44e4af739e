//! Quantized convolution throughput at real GoogLeNet and ResNet-50 layer shapes, per int8
//! micro-kernel, single-threaded (rayon's global pool is given one thread), weights packed
//! once outside the timed loop, u8 in and out.
//!
//! Throughput is reported in elements = multiply-accumulates, so criterion's "Gelem/s" reads
//! directly as GMAC/s. Before each layer's criterion run the bench also measures the
//! single-core `vpmaddwd` peak and then the layer itself, both as the best of many short runs
//! (on a shared machine a short run is the one that can go undisturbed), and prints a summary
//! line with the layer's GMAC/s and its share of that adjacent peak; the table at the end
//! repeats them against the highest peak of the run, ready for the README.
//!
//! `cargo bench -p kestrel-kernels --bench int8 -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kestrel_kernels::{
    conv2d_i8, pack_conv_weights_i8_with, Conv2dGeometry, Int8Input, Int8Kernel, Int8Output,
    QuantizedData,
};

/// A square convolution with "same" padding at `hw x hw`, `stride` 1.
fn conv(cin: usize, cout: usize, hw: usize, kernel: usize) -> Conv2dGeometry {
    Conv2dGeometry {
        in_channels: cin,
        in_h: hw,
        in_w: hw,
        out_channels: cout,
        out_h: hw,
        out_w: hw,
        kernel_h: kernel,
        kernel_w: kernel,
        stride_h: 1,
        stride_w: 1,
        dilation_h: 1,
        dilation_w: 1,
        pad_top: kernel / 2,
        pad_left: kernel / 2,
        groups: 1,
    }
}

fn layers() -> Vec<(&'static str, Conv2dGeometry)> {
    vec![
        // ResNet-50 stage shapes: the bottleneck 1x1s and 3x3s of each stage.
        ("resnet50_res2a_branch2a_1x1", conv(64, 64, 56, 1)),
        ("resnet50_res2a_branch2b_3x3", conv(64, 64, 56, 3)),
        ("resnet50_res3a_branch2b_3x3", conv(128, 128, 28, 3)),
        ("resnet50_res4a_branch2b_3x3", conv(256, 256, 14, 3)),
        ("resnet50_res4a_branch2c_1x1", conv(256, 1024, 14, 1)),
        ("resnet50_res5a_branch2b_3x3", conv(512, 512, 7, 3)),
        ("resnet50_res5a_branch2c_1x1", conv(512, 2048, 7, 1)),
        // GoogLeNet inception_3a branches and a 5x5 of inception_4a.
        ("googlenet_inception3a_1x1", conv(192, 64, 28, 1)),
        ("googlenet_inception3a_3x3", conv(96, 128, 28, 3)),
        ("googlenet_inception4a_5x5", conv(16, 48, 14, 5)),
    ]
}

fn bytes(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed).rotate_right(13) as u8)
        .collect()
}

/// Iterations of one timed peak run: about half a millisecond, like one layer run, so that
/// on a shared machine a best-of-many pick sees the peak loop and the layers equally often
/// undisturbed by the scheduler (long runs are almost always interrupted and would understate
/// the peak).
const PEAK_ITERS: u64 = 250_000;

/// Single-core multiply-accumulates per second (GMAC/s) of a register-only loop of twelve
/// dependent-per-chain `vpmaddwd` + `vpaddd` chains: the int8 peak the AVX2 kernel can approach.
#[cfg(target_arch = "x86_64")]
fn vpmaddwd_peak_gmacs(iters: u64, runs: usize) -> Option<f64> {
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX2 must be available.
    #[target_feature(enable = "avx2")]
    unsafe fn run(iters: u64) -> i32 {
        let b = _mm256_set1_epi16(black_box(5));
        let mut acc = [_mm256_set1_epi16(black_box(3)); 12];
        for _ in 0..iters {
            // Each chain feeds its own product, so nothing is loop-invariant; twelve chains of
            // multiply (3-4 cycles) + add (1) keep two multiply pipes full.
            for v in acc.iter_mut() {
                *v = _mm256_add_epi32(*v, _mm256_madd_epi16(*v, b));
            }
        }
        let mut sum = _mm256_setzero_si256();
        for v in acc {
            sum = _mm256_add_epi32(sum, v);
        }
        _mm256_cvtsi256_si32(sum)
    }

    if !std::is_x86_feature_detected!("avx2") {
        return None;
    }
    let mut best = 0.0f64;
    for _ in 0..runs {
        let t = Instant::now();
        // SAFETY: AVX2 was detected above.
        black_box(unsafe { run(iters) });
        best = best.max((iters * 12 * 16) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    Some(best)
}

#[cfg(not(target_arch = "x86_64"))]
fn vpmaddwd_peak_gmacs(_iters: u64, _runs: usize) -> Option<f64> {
    None
}

/// Best GMAC/s of `f` (which does `macs` multiply-accumulates) over at least `min_runs` runs
/// and at least `min_secs` seconds.
fn best_gmacs(macs: u64, min_runs: usize, min_secs: f64, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut best = 0.0f64;
    let mut runs = 0;
    while runs < min_runs || start.elapsed().as_secs_f64() < min_secs {
        let t = Instant::now();
        f();
        best = best.max(macs as f64 / t.elapsed().as_secs_f64() / 1e9);
        runs += 1;
    }
    best
}

fn bench_conv_i8(c: &mut Criterion) {
    // Single-threaded: the kernels run in the global pool, which gets one thread (and the
    // calling thread runs it inline).
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("the global pool is configured once, here");
    let mut run_peak = vpmaddwd_peak_gmacs(PEAK_ITERS, 400).unwrap_or(0.0);
    if run_peak > 0.0 {
        println!("avx2: measured single-core vpmaddwd int8 peak {run_peak:.1} GMAC/s");
    }
    let mut summary = Vec::new();
    for (layer, g) in layers() {
        let input = bytes(g.in_channels * g.in_h * g.in_w, 1);
        let weights: Vec<i8> = bytes(g.weights_len(), 2)
            .into_iter()
            .map(|v| v as i8)
            .collect();
        let scales = vec![0.01f32; g.out_channels];
        let bias: Vec<i32> = (0..g.out_channels as i32).map(|i| i * 37 - 500).collect();
        let mut out = vec![0u8; g.out_channels * g.out_h * g.out_w];
        let mut group = c.benchmark_group(format!("conv_i8/{layer}"));
        group.throughput(Throughput::Elements(g.macs()));
        group.sample_size(10);
        for kernel in Int8Kernel::available() {
            let packed = pack_conv_weights_i8_with(kernel, &g, &weights, &scales);
            let mut run = || {
                conv2d_i8(
                    &g,
                    Int8Input {
                        data: QuantizedData::U8(black_box(&input)),
                        scale: 0.02,
                        zero_point: 128,
                    },
                    &packed,
                    Some(&bias),
                    true,
                    Int8Output::U8 {
                        data: &mut out,
                        scale: 0.5,
                        zero_point: 3,
                        residual: None,
                    },
                )
            };
            {
                // The adjacent peak: same clock and the same share of the core as the layer.
                let peak = vpmaddwd_peak_gmacs(PEAK_ITERS, 100).unwrap_or(0.0);
                run_peak = run_peak.max(peak);
                let gmacs = if kernel == Int8Kernel::Generic {
                    best_gmacs(g.macs(), 3, 0.0, &mut run)
                } else {
                    best_gmacs(g.macs(), 30, 1.0, &mut run)
                };
                let share = if peak > 0.0 {
                    100.0 * gmacs / peak
                } else {
                    0.0
                };
                println!(
                    "summary {layer} {kernel}: {gmacs:.1} GMAC/s, {share:.0}% of the adjacent \
                     peak {peak:.1} GMAC/s"
                );
                summary.push((layer, kernel, gmacs));
                group.bench_function(BenchmarkId::from_parameter(kernel.name()), |bench| {
                    bench.iter(&mut run)
                });
            }
        }
        group.finish();
    }
    if run_peak > 0.0 {
        println!("\nhighest single-core vpmaddwd peak of the run: {run_peak:.1} GMAC/s");
    }
    println!("| layer | kernel | GMAC/s | % of peak |");
    for (layer, kernel, gmacs) in summary {
        println!(
            "| {layer} | {kernel} | {gmacs:.1} | {:.0}% |",
            100.0 * gmacs / run_peak
        );
    }
}

criterion_group!(benches, bench_conv_i8);
criterion_main!(benches);
