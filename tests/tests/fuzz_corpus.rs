//! The fuzz targets' seeds and every crash the fuzzer found, replayed through the same checks
//! (`kestrel_tests::fuzz_checks`) as part of the normal test suite.
//!
//! `fuzz/seeds/<target>/` holds small valid inputs the fuzzer starts from, and
//! `fuzz/regressions/<target>/` each input that once crashed a target, named after the fault.
//! `write_seed_corpora` (ignored by default) regenerates the seeds:
//! `cargo test --release -p kestrel-tests --test fuzz_corpus -- --ignored`.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ImageFormat, RgbImage};
use kestrel_graph::Dim;
use kestrel_tests::fuzz_checks;
use kestrel_tests::onnx_builder::{attr_int, attr_ints, ModelBuilder};
use kestrel_tests::random_tensor;

fn fuzz_dir() -> PathBuf {
    kestrel_tests::repo_root().join("fuzz")
}

/// Every file of `fuzz/<kind>/<target>/`, sorted.
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut count = 0;
    for kind in ["seeds", "regressions"] {
        for path in files(kind, target) {
            let bytes = std::fs::read(&path).unwrap();
            let name = path.display().to_string();
            std::panic::catch_unwind(|| check(&bytes))
                .unwrap_or_else(|_| panic!("{target}: {name} panicked"));
            count += 1;
        }
    }
    count
}

#[test]
fn kst_load_seeds_and_regressions() {
    assert!(replay("kst_load", fuzz_checks::kst_load) > 0);
}

#[test]
fn onnx_import_seeds_and_regressions() {
    assert!(
        replay("onnx_import", |b| {
            let _ = fuzz_checks::onnx_import(b);
        }) > 0
    );
}

#[test]
fn image_decode_seeds_and_regressions() {
    assert!(replay("image_decode", fuzz_checks::image_decode) > 0);
}

/// The committed seeds still do what they are there for: the ONNX seeds import and run.
#[test]
fn onnx_seeds_import_and_run() {
    for path in files("seeds", "onnx_import") {
        let bytes = std::fs::read(&path).unwrap();
        assert!(fuzz_checks::onnx_import(&bytes), "{}", path.display());
    }
}

/// Small models that between them use most of the operators the importer knows.
fn seed_models() -> Vec<(&'static str, Vec<u8>)> {
    let x = |c: usize, hw: usize| {
        [
            Dim::Free("N".into()),
            Dim::Fixed(c),
            Dim::Fixed(hw),
            Dim::Fixed(hw),
        ]
    };
    let cnn = ModelBuilder::new(13)
        .input("x", &x(3, 6))
        .weights(
            "W",
            &[4, 3, 3, 3],
            random_tensor(&[4, 3, 3, 3], 1).into_data(),
        )
        .weights("B", &[4], random_tensor(&[4], 2).into_data())
        .weights("Wf", &[5, 4], random_tensor(&[5, 4], 3).into_data())
        .output("y")
        .node(
            "Conv",
            "conv",
            &["x", "W", "B"],
            &["c"],
            vec![attr_ints("pads", &[1, 1, 1, 1])],
        )
        .node("Relu", "relu", &["c"], &["r"], vec![])
        .node(
            "MaxPool",
            "pool",
            &["r"],
            &["p"],
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("strides", &[2, 2]),
                attr_int("ceil_mode", 1),
            ],
        )
        .node("GlobalAveragePool", "gap", &["p"], &["g"], vec![])
        .node(
            "Flatten",
            "flatten",
            &["g"],
            &["f"],
            vec![attr_int("axis", 1)],
        )
        .node(
            "Gemm",
            "fc",
            &["f", "Wf"],
            &["l"],
            vec![attr_int("transB", 1)],
        )
        .node(
            "Softmax",
            "softmax",
            &["l"],
            &["y"],
            vec![attr_int("axis", 1)],
        )
        .bytes();
    let branches = ModelBuilder::new(13)
        .input("x", &x(4, 5))
        .weights(
            "W1",
            &[4, 4, 1, 1],
            random_tensor(&[4, 4, 1, 1], 4).into_data(),
        )
        .weights(
            "W2",
            &[4, 2, 3, 3],
            random_tensor(&[4, 2, 3, 3], 5).into_data(),
        )
        .weights("S", &[4], random_tensor(&[4], 6).into_data())
        .weights("Z", &[4], random_tensor(&[4], 7).into_data())
        .weights("V", &[4], vec![1.0; 4])
        .output("y")
        .node("Conv", "a", &["x", "W1"], &["a"], vec![])
        .node(
            "BatchNormalization",
            "bn",
            &["a", "S", "Z", "Z", "V"],
            &["b"],
            vec![],
        )
        .node(
            "Conv",
            "g",
            &["x", "W2"],
            &["g"],
            vec![attr_int("group", 2), attr_ints("pads", &[1, 1, 1, 1])],
        )
        .node("Add", "add", &["b", "g"], &["s"], vec![])
        .node("Relu", "relu", &["s"], &["r"], vec![])
        .node(
            "Concat",
            "cat",
            &["r", "x"],
            &["c"],
            vec![attr_int("axis", 1)],
        )
        .node(
            "AveragePool",
            "avg",
            &["c"],
            &["y"],
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("pads", &[0, 0, 1, 1]),
            ],
        )
        .bytes();
    vec![("cnn.onnx", cnn), ("branches.onnx", branches)]
}

fn encoded(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
#[ignore = "writes the committed seed corpora under fuzz/seeds"]
fn write_seed_corpora() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = fuzz_dir().join("seeds").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    for (name, bytes) in seed_models() {
        write("onnx_import", name, &bytes);
        let graph = kestrel_onnx::import_bytes(&bytes, None).unwrap();
        let (graph, _) = kestrel_optimizer::optimize(&graph).unwrap();
        let kst = kestrel_format::to_bytes(&graph, Default::default()).unwrap();
        write(
            "kst_load",
            &Path::new(name).with_extension("kst").to_string_lossy(),
            &kst,
        );
        // Spelled so that options added later keep their defaults.
        #[allow(clippy::needless_update)]
        let f16 = kestrel_format::WriteOptions {
            f16_weights: true,
            ..Default::default()
        };
        let kst = kestrel_format::to_bytes(&graph, f16).unwrap();
        write(
            "kst_load",
            &Path::new(name).with_extension("f16.kst").to_string_lossy(),
            &kst,
        );
    }
    let gradient = RgbImage::from_fn(7, 5, |x, y| {
        image::Rgb([(x * 30) as u8, (y * 50) as u8, 128])
    });
    write(
        "image_decode",
        "rgb.png",
        &encoded(&gradient, ImageFormat::Png),
    );
    write(
        "image_decode",
        "rgb.jpg",
        &encoded(&gradient, ImageFormat::Jpeg),
    );
    let grey = image::DynamicImage::ImageRgb8(gradient.clone()).into_luma_alpha8();
    let mut out = Cursor::new(Vec::new());
    grey.write_to(&mut out, ImageFormat::Png).unwrap();
    write("image_decode", "grey-alpha.png", &out.into_inner());
    let grey = image::DynamicImage::ImageRgb8(gradient).into_luma8();
    let mut out = Cursor::new(Vec::new());
    grey.write_to(&mut out, ImageFormat::Jpeg).unwrap();
    write("image_decode", "grey.jpg", &out.into_inner());
}
