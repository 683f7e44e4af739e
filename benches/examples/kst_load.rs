//! Loading a compiled `.kst` graph against importing (and optimizing) its ONNX model.
//!
//! `cargo run --release -p kestrel-benches --example kst_load -- [MODEL.onnx] [RUNS]`
//! (default: models/cache/zoo/resnet50.onnx, 5 runs). Prints the median of each step and the
//! ratios. The page cache is warm for both: this measures parsing and copying, not the disk.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kestrel_format::WriteOptions;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(f());
                start.elapsed()
            })
            .collect(),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let mut args = std::env::args().skip(1);
    let model = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "models/cache/zoo/resnet50.onnx".into()),
    );
    let runs: usize = args
        .next()
        .map_or(5, |r| r.parse().expect("RUNS is a number"));
    let import = || kestrel_onnx::import_file(&model).expect("the model imports");
    let optimize = |g| {
        kestrel_optimizer::optimize(&g)
            .expect("the graph optimizes")
            .0
    };
    let graph = optimize(import());

    let dir = std::env::temp_dir().join(format!("kestrel-kst-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f32_path = dir.join("model.kst");
    let f16_path = dir.join("model-f16.kst");
    let size = kestrel_format::write_file(&graph, &f32_path, WriteOptions::default()).unwrap();
    let size16 =
        kestrel_format::write_file(&graph, &f16_path, WriteOptions { f16_weights: true }).unwrap();

    let t_import = time(runs, import);
    let t_import_opt = time(runs, || optimize(import()));
    let t_kst = time(runs, || kestrel_format::load_file(&f32_path).unwrap());
    let t_kst16 = time(runs, || kestrel_format::load_file(&f16_path).unwrap());

    println!(
        "{}: {} nodes; .kst {:.1} MiB (f16 {:.1} MiB); median of {runs} runs",
        model.display(),
        graph.nodes.len(),
        size as f64 / (1 << 20) as f64,
        size16 as f64 / (1 << 20) as f64
    );
    println!("import ONNX             {:>9.2} ms", ms(t_import));
    println!("import ONNX + optimize  {:>9.2} ms", ms(t_import_opt));
    println!("load .kst (f32)         {:>9.2} ms", ms(t_kst));
    println!("load .kst (f16)         {:>9.2} ms", ms(t_kst16));
    println!(
        "load .kst is {:.0}x faster than import + optimize ({:.0}x than import alone); \
         f16: {:.1}x",
        ms(t_import_opt) / ms(t_kst),
        ms(t_import) / ms(t_kst),
        ms(t_import_opt) / ms(t_kst16)
    );
    std::fs::remove_dir_all(&dir).ok();
}
