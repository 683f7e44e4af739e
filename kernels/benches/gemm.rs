//! GEMM and convolution throughput at real CNN layer shapes, per kernel implementation.
//!
//! Throughput is reported in elements = multiply-accumulates, so criterion's "Gelem/s" reads
//! directly as GMAC/s; compare with the FMA peak printed first. Convolutions run on one
//! thread with their weights packed beforehand, and a last table gives each one's share of the
//! peak measured around it in the same process.
//!
//! `cargo bench -p kestrel-kernels --bench gemm -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kestrel_kernels::{
    conv2d_f32_packed, fma_peak_gmacs, gemm_f32_with, pack_conv_weights_f32, selected_isa,
    Conv2dGeometry, Isa, PackedConvWeights,
};

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

/// A `kernel x kernel`, stride 1, "same"-padded convolution at `hw x hw`.
fn conv(kernel: usize, cin: usize, cout: usize, hw: usize) -> Conv2dGeometry {
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

/// The stride-1 1x1 and 3x3 convolutions of every ResNet-50 stage, and two of GoogLeNet's.
fn conv_layers() -> Vec<(&'static str, Conv2dGeometry)> {
    vec![
        ("resnet50_res2a_branch2a_1x1", conv(1, 64, 64, 56)),
        ("resnet50_res2a_branch2c_1x1", conv(1, 64, 256, 56)),
        ("resnet50_res2b_branch2a_1x1", conv(1, 256, 64, 56)),
        ("resnet50_res3a_branch2c_1x1", conv(1, 128, 512, 28)),
        ("resnet50_res3b_branch2a_1x1", conv(1, 512, 128, 28)),
        ("resnet50_res4a_branch2c_1x1", conv(1, 256, 1024, 14)),
        ("resnet50_res4b_branch2a_1x1", conv(1, 1024, 256, 14)),
        ("resnet50_res5a_branch2c_1x1", conv(1, 512, 2048, 7)),
        ("resnet50_res5b_branch2a_1x1", conv(1, 2048, 512, 7)),
        ("resnet50_res2a_branch2b_3x3", conv(3, 64, 64, 56)),
        ("resnet50_res3a_branch2b_3x3", conv(3, 128, 128, 28)),
        ("resnet50_res4a_branch2b_3x3", conv(3, 256, 256, 14)),
        ("resnet50_res5a_branch2b_3x3", conv(3, 512, 512, 7)),
        ("googlenet_inception3a_1x1", conv(1, 192, 64, 28)),
        ("googlenet_inception3a_3x3", conv(3, 96, 128, 28)),
    ]
}

/// Operands of one convolution, weights packed once as the runtime does at load time.
struct ConvCase {
    g: Conv2dGeometry,
    input: Vec<f32>,
    packed: PackedConvWeights<'static>,
    bias: Vec<f32>,
    out: Vec<f32>,
}

impl ConvCase {
    fn new(isa: Isa, g: Conv2dGeometry) -> ConvCase {
        let weights = data(g.weights_len(), 4);
        ConvCase {
            g,
            input: data(g.in_channels * g.in_h * g.in_w, 3),
            packed: pack_conv_weights_f32(isa, &g, &weights),
            bias: data(g.out_channels, 5),
            out: vec![0.0f32; g.out_channels * g.out_h * g.out_w],
        }
    }

    fn run(&mut self) {
        conv2d_f32_packed(
            &self.g,
            black_box(&self.input),
            &self.packed,
            Some(&self.bias),
            &mut self.out,
        );
    }
}

/// A pool of one thread: the kernels would otherwise split channels across every core.
fn single_thread() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool")
}

fn bench_conv(c: &mut Criterion) {
    let pool = single_thread();
    for (layer, g) in conv_layers() {
        let mut group = c.benchmark_group(format!("conv/{layer}"));
        group.throughput(Throughput::Elements(g.macs()));
        for isa in Isa::available() {
            let mut case = ConvCase::new(isa, g);
            group.bench_function(BenchmarkId::from_parameter(isa.name()), |bench| {
                pool.install(|| bench.iter(|| case.run()))
            });
        }
        group.finish();
    }
}

/// Best GMAC/s of `case` over about `budget`.
fn best_gmacs(case: &mut ConvCase, budget: Duration) -> f64 {
    let macs = case.g.macs() as f64;
    let started = Instant::now();
    let mut best = f64::MAX;
    while started.elapsed() < budget {
        let t = Instant::now();
        case.run();
        best = best.min(t.elapsed().as_secs_f64());
    }
    macs / best / 1e9
}

/// Each layer's single-thread throughput as a share of the FMA peak measured right before and
/// after it, so that load from other processes on the machine moves both alike.
fn summary(_: &mut Criterion) {
    let isa = selected_isa();
    let budget = Duration::from_millis(400);
    let Some(_) = fma_peak_gmacs(isa, budget) else {
        return;
    };
    let pool = single_thread();
    println!("\n{isa}, one thread, weights prepacked; peak = FMA loop around each layer");
    println!("{:<32} {:>8} {:>8} {:>7}", "layer", "GMAC/s", "peak", "%");
    pool.install(|| {
        for (layer, g) in conv_layers() {
            let mut case = ConvCase::new(isa, g);
            let before = fma_peak_gmacs(isa, budget).unwrap_or(f64::NAN);
            let gmacs = best_gmacs(&mut case, budget);
            let after = fma_peak_gmacs(isa, budget).unwrap_or(f64::NAN);
            let peak = before.max(after);
            println!(
                "{layer:<32} {gmacs:>8.1} {peak:>8.1} {:>6.0}%",
                100.0 * gmacs / peak
            );
        }
    });
}

criterion_group!(benches, bench_gemm, bench_conv, summary);
criterion_main!(benches);
