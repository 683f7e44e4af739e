//! Quantized convolution throughput at real GoogLeNet and ResNet-50 layer shapes, per int8
//! micro-kernel, single-threaded, weights packed once outside the timed loop, u8 in and out.
//!
//! Throughput is reported in elements = multiply-accumulates, so criterion's "Gelem/s" reads
//! directly as GMAC/s; compare with the `vpmaddwd` peak printed first.
//!
//! `cargo bench -p kestrel-kernels --bench int8 -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

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

/// Single-core multiply-accumulates per second (GMAC/s) of a register-only loop of twelve
/// dependent-per-chain `vpmaddwd` + `vpaddd` chains: the int8 peak the AVX2 kernel can approach.
#[cfg(target_arch = "x86_64")]
fn vpmaddwd_peak_gmacs() -> Option<f64> {
    use std::arch::x86_64::*;
    use std::time::Instant;

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
    let iters = 50_000_000u64;
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        // SAFETY: AVX2 was detected above.
        black_box(unsafe { run(iters) });
        best = best.max((iters * 12 * 16) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    Some(best)
}

#[cfg(not(target_arch = "x86_64"))]
fn vpmaddwd_peak_gmacs() -> Option<f64> {
    None
}

fn bench_conv_i8(c: &mut Criterion) {
    if let Some(peak) = vpmaddwd_peak_gmacs() {
        println!("avx2: measured single-core vpmaddwd int8 peak {peak:.1} GMAC/s");
    }
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
            group.bench_function(BenchmarkId::from_parameter(kernel.name()), |bench| {
                bench.iter(|| {
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
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_conv_i8);
criterion_main!(benches);
