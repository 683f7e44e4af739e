//! GEMM and convolution throughput at real CNN layer shapes, per kernel implementation.
//!
//! Throughput is reported in elements = multiply-accumulates, so criterion's "Gelem/s" reads
//! directly as GMAC/s; compare with the FMA peak printed first.
//!
//! `cargo bench -p kestrel-kernels --bench gemm -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kestrel_kernels::{conv2d_f32_with, fma_peak_gmacs, gemm_f32_with, Conv2dGeometry, Isa};

/// A layer's product: out[m, n] += A[m, k] * B[k, n] (B stored [n, k] when `b_transposed`).
struct GemmShape {
    layer: &'static str,
    m: usize,
    n: usize,
    k: usize,
    b_transposed: bool,
}

const GEMM_SHAPES: [GemmShape; 6] = [
    // ResNet-50 res2a_branch2a: 1x1, 64 -> 64 channels at 56x56.
    GemmShape {
        layer: "resnet50_res2a_branch2a_1x1",
        m: 64,
        n: 56 * 56,
        k: 64,
        b_transposed: false,
    },
    // ResNet-50 res3 3x3 (128 -> 128 at 28x28) as its im2col product, k = 128 * 9.
    GemmShape {
        layer: "resnet50_res3_branch2b_3x3",
        m: 128,
        n: 28 * 28,
        k: 1152,
        b_transposed: false,
    },
    // ResNet-50 res5 1x1 expansion: 512 -> 2048 at 7x7.
    GemmShape {
        layer: "resnet50_res5_branch2c_1x1",
        m: 2048,
        n: 7 * 7,
        k: 512,
        b_transposed: false,
    },
    // GoogLeNet inception_3a 1x1: 192 -> 64 at 28x28.
    GemmShape {
        layer: "googlenet_inception3a_1x1",
        m: 64,
        n: 28 * 28,
        k: 192,
        b_transposed: false,
    },
    // GoogLeNet inception_3a 3x3 (96 -> 128 at 28x28) as its im2col product, k = 96 * 9.
    GemmShape {
        layer: "googlenet_inception3a_3x3",
        m: 128,
        n: 28 * 28,
        k: 864,
        b_transposed: false,
    },
    // ResNet-50 fc1000 on one image; weights stored [1000, 2048] as in ONNX Gemm transB=1.
    GemmShape {
        layer: "resnet50_fc1000",
        m: 1,
        n: 1000,
        k: 2048,
        b_transposed: true,
    },
];

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            (((i as u32).wrapping_mul(2_654_435_761) ^ seed) >> 8) as f32 / (1 << 24) as f32 - 0.5
        })
        .collect()
}

fn print_peak() {
    for isa in Isa::available() {
        if let Some(gmacs) = fma_peak_gmacs(isa, Duration::from_secs(1)) {
            println!(
                "{}: measured single-core fp32 FMA peak {gmacs:.1} GMAC/s",
                isa.name()
            );
        }
    }
}

fn bench_gemm(c: &mut Criterion) {
    print_peak();
    for s in &GEMM_SHAPES {
        let a = data(s.m * s.k, 1);
        let b = data(s.k * s.n, 2);
        let mut out = vec![0.0f32; s.m * s.n];
        let mut group = c.benchmark_group(format!("gemm/{}", s.layer));
        group.throughput(Throughput::Elements((s.m * s.n * s.k) as u64));
        for isa in Isa::available() {
            group.bench_function(BenchmarkId::from_parameter(isa.name()), |bench| {
                bench.iter(|| {
                    gemm_f32_with(
                        isa,
                        s.m,
                        s.n,
                        s.k,
                        black_box(&a),
                        false,
                        black_box(&b),
                        s.b_transposed,
                        1.0,
                        &mut out,
                    )
                })
            });
        }
        group.finish();
    }
}

/// A 3x3, stride 1, pad 1 convolution at `hw x hw`, run end to end (im2col included).
fn conv3x3(cin: usize, cout: usize, hw: usize) -> Conv2dGeometry {
    Conv2dGeometry {
        in_channels: cin,
        in_h: hw,
        in_w: hw,
        out_channels: cout,
        out_h: hw,
        out_w: hw,
        kernel_h: 3,
        kernel_w: 3,
        stride_h: 1,
        stride_w: 1,
        dilation_h: 1,
        dilation_w: 1,
        pad_top: 1,
        pad_left: 1,
        groups: 1,
    }
}

fn bench_conv(c: &mut Criterion) {
    let layers = [
        ("resnet50_res3_branch2b_3x3", conv3x3(128, 128, 28)),
        ("googlenet_inception3a_3x3", conv3x3(96, 128, 28)),
    ];
    for (layer, g) in layers {
        let input = data(g.in_channels * g.in_h * g.in_w, 3);
        let weights = data(g.weights_len(), 4);
        let bias = data(g.out_channels, 5);
        let mut out = vec![0.0f32; g.out_channels * g.out_h * g.out_w];
        let mut group = c.benchmark_group(format!("conv/{layer}"));
        group.throughput(Throughput::Elements(g.macs()));
        for isa in Isa::available() {
            group.bench_function(BenchmarkId::from_parameter(isa.name()), |bench| {
                bench.iter(|| {
                    conv2d_f32_with(isa, &g, black_box(&input), &weights, Some(&bias), &mut out)
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_gemm, bench_conv);
criterion_main!(benches);
