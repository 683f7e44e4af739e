//! Loading a compiled `.kst` graph against importing and optimizing its ONNX model.
//!
//! `cargo bench -p kestrel-benches --bench kst_load`
//!
//! Reads models/cache/zoo/resnet50.onnx when `bash models/fetch_all.sh` has fetched it, and the
//! bundled models/synthetic/resnet_tiny.onnx otherwise (set `KESTREL_BENCH_MODEL` to choose).
//! The page cache is warm for every step: this measures parsing, checking and copying, not the
//! disk.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use kestrel_format::WriteOptions;

fn model_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Some(path) = std::env::var_os("KESTREL_BENCH_MODEL") {
        return PathBuf::from(path);
    }
    let zoo = root.join("models/cache/zoo/resnet50.onnx");
    if zoo.is_file() {
        zoo
    } else {
        root.join("models/synthetic/resnet_tiny.onnx")
    }
}

fn load(c: &mut Criterion) {
    let model = model_path();
    let name = model
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let import = || kestrel_onnx::import_file(&model).expect("the model imports");
    let optimize = |g| {
        kestrel_optimizer::optimize(&g)
            .expect("the graph optimizes")
            .0
    };
    let graph = optimize(import());
    let dir = std::env::temp_dir().join(format!("kestrel-kst-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let f32_path = dir.join("model.kst");
    let f16_path = dir.join("model-f16.kst");
    kestrel_format::write_file(&graph, &f32_path, WriteOptions::default()).expect("write .kst");
    kestrel_format::write_file(&graph, &f16_path, WriteOptions { f16_weights: true })
        .expect("write f16 .kst");

    let mut group = c.benchmark_group(format!("load_{name}"));
    group.sample_size(10);
    group.bench_function("import_onnx_and_optimize", |b| {
        b.iter(|| optimize(import()))
    });
    group.bench_function("load_kst_f32", |b| {
        b.iter(|| kestrel_format::load_file(&f32_path).expect("load"))
    });
    group.bench_function("load_kst_f16", |b| {
        b.iter(|| kestrel_format::load_file(&f16_path).expect("load"))
    });
    group.finish();
    std::fs::remove_dir_all(&dir).ok();
}

criterion_group!(benches, load);
criterion_main!(benches);
