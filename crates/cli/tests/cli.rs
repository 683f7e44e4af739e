//! End-to-end tests of the `kestrel` binary on the bundled synthetic-task models.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model(name: &str) -> PathBuf {
    root().join("models/synthetic").join(format!("{name}.onnx"))
}

fn kestrel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the kestrel binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A scratch folder unique to one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kestrel-cli-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes held-out sample `index` as a PNG and returns its path and sample.
fn sample_png(dir: &Path, index: u64) -> (PathBuf, kestrel_synthetic::Sample) {
    let sample = kestrel_synthetic::sample(kestrel_synthetic::EVAL_SEED, index, 96);
    let path = dir.join(format!("sample{index}.png"));
    sample.image.save(&path).unwrap();
    (path, sample)
}

/// Asserts a failed run printed exactly one error line containing every `needle`.
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        stdout(out)
    );
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "error {err:?} does not mention {needle:?}"
        );
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn classify_names_the_true_class() {
    let dir = scratch("classify");
    let (path, sample) = sample_png(&dir, 0);
    for name in ["googlenet_tiny", "resnet_tiny"] {
        let out = kestrel(&[
            "classify",
            model(name).to_str().unwrap(),
            path.to_str().unwrap(),
            "--preset",
            "synthetic",
            "--json",
            "-k",
            "3",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        let top = v["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["class"], sample.class, "{name}: {v}");
        assert_eq!(top[0]["name"], kestrel_synthetic::CLASS_NAMES[sample.class]);
    }
}

#[test]
fn cam_writes_overlay_raw_map_and_box() {
    let dir = scratch("cam");
    let (path, sample) = sample_png(&dir, 1);
    let overlay = dir.join("overlay.png");
    let raw = dir.join("raw.npy");
    let out = kestrel(&[
        "cam",
        model("resnet_tiny").to_str().unwrap(),
        path.to_str().unwrap(),
        "--preset",
        "synthetic",
        "--json",
        "-o",
        overlay.to_str().unwrap(),
        "--raw-out",
        raw.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["map"]["width"], 12);
    assert_eq!(v["map"]["height"], 12);
    assert_eq!(v["map"]["data"].as_array().unwrap().len(), 144);
    let b: Vec<f64> = v["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let t = sample.bbox;
    let inter = (b[2].min(t.x1 as f64) - b[0].max(t.x0 as f64)).max(0.0)
        * (b[3].min(t.y1 as f64) - b[1].max(t.y0 as f64)).max(0.0);
    assert!(inter > 0.0, "CAM box {b:?} misses the object {t:?}");
    let png = image::open(&overlay).unwrap();
    assert_eq!((png.width(), png.height()), (96, 96));
    assert!(std::fs::metadata(&raw).unwrap().len() > 144 * 4);
}

#[test]
fn cam_refuses_a_class_out_of_range() {
    let dir = scratch("cam-class");
    let (path, _) = sample_png(&dir, 2);
    let out = kestrel(&[
        "cam",
        model("googlenet_tiny").to_str().unwrap(),
        path.to_str().unwrap(),
        "--preset",
        "synthetic",
        "--class",
        "6",
    ]);
    assert_one_line_error(&out, &["class 6"]);
}

#[test]
fn inspect_reports_layers_macs_and_cam_tail() {
    let out = kestrel(&["inspect", model("googlenet_tiny").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Conv"), "{text}");
    assert!(text.contains("Concat"), "{text}");
    assert!(text.contains("GMAC"), "{text}");
    assert!(text.contains("CAM: applies"), "{text}");
    assert!(text.contains("ChannelSlice"), "{text}");
    assert!(text.contains("merge-parallel-1x1 x"), "{text}");
    assert!(text.contains("fused: "), "{text}");
}

/// The fused graph by default, with what the optimizer did; the imported one on request. Both
/// classify the same image the same way.
#[test]
fn inspect_shows_the_fused_graph_and_no_optimize_the_imported_one() {
    let m = model("resnet_tiny");
    let m = m.to_str().unwrap();
    let fused = stdout(&kestrel(&["inspect", m]));
    assert!(fused.contains("Conv 3x3/1 +add +relu"), "{fused}");
    assert!(fused.contains("fold-batch-norm x13"), "{fused}");
    assert!(!fused.contains("BatchNormalization"), "{fused}");
    let imported = stdout(&kestrel(&["inspect", m, "--no-optimize"]));
    assert!(imported.contains("BatchNormalization"), "{imported}");
    assert!(imported.contains("not optimized"), "{imported}");

    let dir = scratch("no-optimize");
    let (image, _) = sample_png(&dir, 5);
    let image = image.to_str().unwrap();
    let classify = |extra: &[&str]| {
        let mut args = vec!["classify", m, image, "--json"];
        args.extend_from_slice(extra);
        let out = kestrel(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        v
    };
    let (a, b) = (classify(&[]), classify(&["--no-optimize"]));
    assert_eq!(a["top"][0]["class"], b["top"][0]["class"], "{a} {b}");
}

#[test]
fn run_reads_and_writes_npy() {
    let dir = scratch("run");
    let input = dir.join("x.npy");
    let data: Vec<f32> = (0..3 * 96 * 96)
        .map(|i| ((i % 17) as f32 - 8.0) / 8.0)
        .collect();
    write_npy(&input, &[1, 3, 96, 96], &data);
    let out_dir = dir.join("out");
    let out = kestrel(&[
        "run",
        model("resnet_tiny").to_str().unwrap(),
        "--input",
        &format!("input={}", input.display()),
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(out_dir.join("logits.npy")).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[1, 6]);
    assert!(npy.into_vec::<f32>().unwrap().iter().all(|v| v.is_finite()));
}

#[test]
fn run_rejects_missing_extra_and_misshaped_inputs() {
    let dir = scratch("run-bad");
    let wrong = dir.join("wrong.npy");
    write_npy(&wrong, &[1, 3, 32, 32], &vec![0.0; 3 * 32 * 32]);
    let m = model("resnet_tiny");
    let m = m.to_str().unwrap();
    let out_dir = dir.join("out");
    let out_dir = out_dir.to_str().unwrap();

    let out = kestrel(&[
        "run",
        m,
        "--input",
        &format!("input={}", wrong.display()),
        "-o",
        out_dir,
    ]);
    assert_one_line_error(&out, &["input", "[1, 3, 32, 32]"]);

    let out = kestrel(&[
        "run",
        m,
        "--input",
        &format!("other={}", wrong.display()),
        "-o",
        out_dir,
    ]);
    assert_one_line_error(&out, &["other", "no such input"]);

    let missing = dir.join("absent.npy");
    let out = kestrel(&[
        "run",
        m,
        "--input",
        &format!("input={}", missing.display()),
        "-o",
        out_dir,
    ]);
    assert_one_line_error(&out, &["absent.npy"]);

    let garbage = dir.join("garbage.npy");
    std::fs::write(&garbage, b"\x93NUMPY\x01\x00garbage").unwrap();
    let out = kestrel(&[
        "run",
        m,
        "--input",
        &format!("input={}", garbage.display()),
        "-o",
        out_dir,
    ]);
    assert_one_line_error(&out, &["garbage.npy"]);
}

#[test]
fn bad_model_and_image_files_give_one_line() {
    let dir = scratch("bad-files");
    let not_onnx = dir.join("model.onnx");
    std::fs::write(&not_onnx, b"this is not a protobuf").unwrap();
    let (image, _) = sample_png(&dir, 3);
    let out = kestrel(&[
        "classify",
        not_onnx.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["model.onnx"]);

    let not_png = dir.join("image.png");
    std::fs::write(&not_png, b"plain text").unwrap();
    let m = model("resnet_tiny");
    let out = kestrel(&["classify", m.to_str().unwrap(), not_png.to_str().unwrap()]);
    assert_one_line_error(&out, &["image.png"]);

    let out = kestrel(&[
        "classify",
        m.to_str().unwrap(),
        image.to_str().unwrap(),
        "--preset",
        "x",
    ]);
    assert_one_line_error(&out, &["x"]);
}

/// The CAM localization claim: for both bundled networks, at least 80% of 200 held-out
/// generated images get a CAM box with IoU >= 0.5 against the true box.
#[test]
fn cam_localizes_the_held_out_synthetic_set() {
    for name in ["googlenet_tiny", "resnet_tiny"] {
        let out = kestrel(&[
            "localize",
            model(name).to_str().unwrap(),
            "--count",
            "200",
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(v["images"], 200);
        let localized = v["cam_iou_at_0_5"].as_f64().unwrap();
        let accuracy = v["accuracy"].as_f64().unwrap();
        assert!(
            localized >= 0.8,
            "{name}: CAM IoU>=0.5 for only {localized:.3} ({v})"
        );
        assert!(accuracy >= 0.9, "{name}: accuracy {accuracy:.3}");
    }
}

fn write_npy(path: &Path, shape: &[u64], data: &[f32]) {
    use npyz::WriterBuilder;
    let mut out = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut out)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
    std::fs::write(path, out).unwrap();
}

#[test]
fn bench_reports_latency_percentiles_and_profile() {
    let m = model("googlenet_tiny");
    let m = m.to_str().unwrap();
    let out = kestrel(&[
        "bench", m, "--runs", "5", "--warmup", "1", "--batch", "2", "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let (min, median, p90, p99) = (
        v["min_ms"].as_f64().unwrap(),
        v["median_ms"].as_f64().unwrap(),
        v["p90_ms"].as_f64().unwrap(),
        v["p99_ms"].as_f64().unwrap(),
    );
    assert!(
        0.0 < min && min <= median && median <= p90 && p90 <= p99,
        "{v}"
    );
    assert_eq!(v["batch"], 2);
    assert!(v["gmac_per_s"].as_f64().unwrap() > 0.0, "{v}");
    let runs: Vec<f64> = v["latencies_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(runs.len(), 5, "{v}");
    assert_eq!(
        runs.iter().copied().fold(f64::INFINITY, f64::min),
        min,
        "{v}"
    );

    let out = kestrel(&["bench", m, "--runs", "2", "--warmup", "0", "--profile"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("GMAC/s") && text.contains("Concat"), "{text}");

    let out = kestrel(&["bench", m, "--runs", "0"]);
    assert_one_line_error(&out, &["--runs"]);
}

#[test]
fn label_files_tolerate_trailing_blank_lines_and_name_themselves_when_wrong() {
    let dir = scratch("labels");
    let (image, sample) = sample_png(&dir, 4);
    let image = image.to_str().unwrap();
    let m = model("resnet_tiny");
    let m = m.to_str().unwrap();
    let names = ["d", "s", "t", "c", "r", "st"];
    let trailing = dir.join("trailing.txt");
    std::fs::write(&trailing, format!("{}\n\n\n", names.join("\n"))).unwrap();
    let out = kestrel(&[
        "classify",
        m,
        image,
        "-k",
        "1",
        "--labels",
        trailing.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(names[sample.class]),
        "{}",
        stdout(&out)
    );

    let short = dir.join("short.txt");
    std::fs::write(&short, "a\nb\n").unwrap();
    let out = kestrel(&["classify", m, image, "--labels", short.to_str().unwrap()]);
    assert_one_line_error(&out, &["short.txt", "2 names", "6 classes"]);

    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let out = kestrel(&["classify", m, image, "--labels", empty.to_str().unwrap()]);
    assert_one_line_error(&out, &["empty.txt", "no classes"]);
}

#[test]
fn option_values_are_checked() {
    let dir = scratch("options");
    let (image, _) = sample_png(&dir, 6);
    let image = image.to_str().unwrap();
    let m = model("resnet_tiny");
    let m = m.to_str().unwrap();
    // Per-channel values as the help shows them, with commas, or space-separated.
    for mean in [
        &["--mean", "0.5,0.5,0.5"][..],
        &["--mean", "0.5", "0.5", "0.5"][..],
    ] {
        let mut args = vec!["classify", m, image, "--preset", "synthetic"];
        args.extend_from_slice(mean);
        let out = kestrel(&args);
        assert!(out.status.success(), "{mean:?}: {}", stderr(&out));
    }
    let out = kestrel(&["classify", m, image, "--mean", "1,2"]);
    assert_one_line_error(&out, &["--mean", "3"]);
    let out = kestrel(&["classify", m, image, "-k", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = kestrel(&["localize", m, "--count", "4000000000"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// A missing file is named once, with the reason once.
#[test]
fn missing_files_are_reported_once() {
    let out = kestrel(&["classify", "/nonexistent/model.onnx", "x.png"]);
    assert_one_line_error(&out, &["/nonexistent/model.onnx"]);
    let err = stderr(&out);
    assert_eq!(err.matches("/nonexistent/model.onnx").count(), 1, "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

#[test]
fn compiled_models_classify_and_explain_like_their_onnx() {
    let dir = scratch("compile");
    let onnx = model("resnet_tiny");
    let kst = dir.join("resnet_tiny.kst");
    let out = kestrel(&[
        "compile",
        onnx.to_str().unwrap(),
        "-o",
        kst.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("resnet_tiny.kst") && text.contains("bytes"),
        "{text}"
    );
    let size = std::fs::metadata(&kst).unwrap().len();
    assert!(text.contains(&size.to_string()), "{text}");

    let (image, _) = sample_png(&dir, 4);
    let json = |args: &[&str]| -> serde_json::Value {
        let out = kestrel(args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };
    let image = image.to_str().unwrap();
    // Labels are found beside the model; the compiled copy lives elsewhere, so name them.
    let labels = root().join("models/synthetic/labels.txt");
    let labels = labels.to_str().unwrap();
    let mut results = Vec::new();
    for m in [onnx.to_str().unwrap(), kst.to_str().unwrap()] {
        let classes = json(&[
            "classify",
            m,
            image,
            "--preset",
            "synthetic",
            "--json",
            "--labels",
            labels,
        ]);
        let cam = json(&["cam", m, image, "--preset", "synthetic", "--json"]);
        results.push((classes, cam["box"].clone(), cam["class"].clone()));
    }
    let (a, b) = (&results[0], &results[1]);
    assert_eq!(a.0, b.0, "classify differs between .onnx and .kst");
    assert_eq!(a.1, b.1, "CAM box differs between .onnx and .kst");
    assert_eq!(a.2, b.2);

    let out = kestrel(&["inspect", kst.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("compiled graph"), "{text}");
    assert!(text.contains("CAM: applies"), "{text}");

    // f16 is smaller and still names the same class.
    let half = dir.join("half.kst");
    let out = kestrel(&[
        "compile",
        onnx.to_str().unwrap(),
        "-o",
        half.to_str().unwrap(),
        "--f16",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::metadata(&half).unwrap().len() < size * 6 / 10);
    let classes = json(&[
        "classify",
        half.to_str().unwrap(),
        image,
        "--preset",
        "synthetic",
        "--json",
        "--labels",
        labels,
    ]);
    assert_eq!(classes["top"][0]["class"], a.0["top"][0]["class"]);
}

#[test]
fn damaged_kst_files_give_one_line() {
    let dir = scratch("bad-kst");
    let kst = dir.join("model.kst");
    let out = kestrel(&[
        "compile",
        model("googlenet_tiny").to_str().unwrap(),
        "-o",
        kst.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut bytes = std::fs::read(&kst).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0x20;
    std::fs::write(&kst, &bytes).unwrap();
    let out = kestrel(&["inspect", kst.to_str().unwrap()]);
    assert_one_line_error(&out, &["model.kst", "checksum"]);
    std::fs::write(&kst, b"").unwrap();
    let out = kestrel(&["inspect", kst.to_str().unwrap()]);
    assert_one_line_error(&out, &["model.kst", "empty"]);
}

/// A directory or FIFO given as the model is refused at once (a FIFO would otherwise block),
/// and `compile` never overwrites the model it reads.
#[test]
fn model_paths_that_are_not_regular_files_or_would_be_overwritten() {
    let dir = scratch("not-regular");
    let folder = dir.join("folder.kst");
    std::fs::create_dir_all(&folder).unwrap();
    let out = kestrel(&["inspect", folder.to_str().unwrap()]);
    assert_one_line_error(&out, &["folder.kst", "not a regular file"]);

    let fifo = dir.join("pipe.onnx");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let out = kestrel(&["inspect", fifo.to_str().unwrap()]);
        assert_one_line_error(&out, &["pipe.onnx", "not a regular file"]);
    }

    let copy = dir.join("model.onnx");
    std::fs::copy(model("resnet_tiny"), &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let out = kestrel(&[
        "compile",
        copy.to_str().unwrap(),
        "-o",
        copy.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["overwrite"]);
    assert_eq!(std::fs::read(&copy).unwrap(), before);
}

fn kestrel_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kestrel"));
    command
        .args(args)
        .current_dir(root())
        .env_remove("RUST_BACKTRACE");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the kestrel binary runs")
}

/// No output of a failed run looks like a Rust panic or backtrace.
fn assert_no_backtrace(out: &Output) {
    let err = stderr(out);
    for needle in [
        "panicked",
        "stack backtrace",
        "RUST_BACKTRACE",
        "note: run with",
    ] {
        assert!(!err.contains(needle), "{needle:?} in {err}");
    }
}

/// Usage errors exit with 2, bad input with 1, internal errors (a panic) with 70; each prints
/// one line and no backtrace, even with RUST_BACKTRACE set for a user mistake.
#[test]
fn exit_statuses_tell_usage_bad_input_and_internal_errors_apart() {
    let dir = scratch("exit-codes");
    let (image, _) = sample_png(&dir, 2);
    let image = image.to_str().unwrap();
    let m = model("resnet_tiny");
    let m = m.to_str().unwrap();

    // 2: the command line does not parse.
    for args in [
        &["frobnicate"][..],
        &["classify"],
        &["classify", m, image, "-k", "many"],
        &["inspect", m, "--no-such-option"],
        &["cam", m, image, "--threshold"],
    ] {
        let out = kestrel_with_env(args, &[("RUST_BACKTRACE", "1")]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("error: "),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_no_backtrace(&out);
    }

    // 1: bad input, whatever RUST_BACKTRACE says.
    let text = dir.join("model.onnx");
    std::fs::write(&text, "not a model").unwrap();
    for args in [
        &["inspect", text.to_str().unwrap()][..],
        &["classify", m, "/nonexistent.png"],
        &["classify", m, image, "--mean", "1,2"],
        &["cam", m, image, "--class", "1000"],
    ] {
        let out = kestrel_with_env(args, &[("RUST_BACKTRACE", "full")]);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert_one_line_error(&out, &[]);
        assert_no_backtrace(&out);
    }

    // 70: a bug. The panic is reported in one line that says it is internal.
    let out = kestrel_with_env(&["inspect", m], &[("KESTREL_INJECT_PANIC", "1")]);
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    assert_one_line_error(&out, &["internal error", "KESTREL_INJECT_PANIC"]);
    assert_no_backtrace(&out);
    // Whoever debugs it can still ask for the backtrace.
    let out = kestrel_with_env(
        &["inspect", m],
        &[("KESTREL_INJECT_PANIC", "1"), ("RUST_BACKTRACE", "1")],
    );
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    assert!(stderr(&out).lines().count() > 1, "{}", stderr(&out));

    // 0: help and version are not errors.
    for args in [&["--help"][..], &["--version"], &["classify", "--help"]] {
        let out = kestrel(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
}

/// The same image gives byte-identical output from one process to the next.
#[test]
fn classify_is_bitwise_repeatable_across_processes() {
    let dir = scratch("repeatable");
    let (image, _) = sample_png(&dir, 4);
    let image = image.to_str().unwrap();
    for name in ["googlenet_tiny", "resnet_tiny"] {
        let m = model(name);
        let args = [
            "classify",
            m.to_str().unwrap(),
            image,
            "--preset",
            "synthetic",
            "--json",
            "-k",
            "6",
        ];
        let first = kestrel(&args);
        assert!(first.status.success(), "{}", stderr(&first));
        for _ in 0..2 {
            assert_eq!(kestrel(&args).stdout, first.stdout, "{name}");
        }
    }
}

/// Images of other sizes than the model's input (here 96x96) are resized to it, and the log
/// says so; a 1x1 image works too.
#[test]
fn images_of_any_size_run_at_the_models_size() {
    let dir = scratch("sizes");
    let m = model("resnet_tiny");
    for (w, h) in [(224, 224), (300, 120), (1, 1), (96, 500)] {
        let path = dir.join(format!("{w}x{h}.png"));
        image::RgbImage::from_pixel(w, h, image::Rgb([200, 30, 30]))
            .save(&path)
            .unwrap();
        let out = kestrel(&[
            "--log",
            "info",
            "classify",
            m.to_str().unwrap(),
            path.to_str().unwrap(),
            "--preset",
            "synthetic",
        ]);
        assert!(out.status.success(), "{w}x{h}: {}", stderr(&out));
        assert!(stderr(&out).contains("96x96"), "{w}x{h}: {}", stderr(&out));
    }
}
