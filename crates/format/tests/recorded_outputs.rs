//! Compiled models run on this machine against outputs recorded on another.
//!
//! This is the whole-model check for the ARM targets: the host compiles each model to `.kst`
//! and records its outputs for a fixed input with `kestrel compile` and `kestrel run`; this
//! test, cross-built and run under qemu by `scripts/test-arm.sh`, loads the same files, runs
//! them with the target's kernels and compares.
//!
//! `KESTREL_RECORDED_DIR` names a folder holding, for each model NAME, `NAME.kst`,
//! `NAME.input.npy` (its one input, float32) and `NAME.out/` (what `kestrel run -o` wrote: one
//! `OUTPUT.npy` per graph output). Unset, the test is skipped; set, the folder must hold at
//! least one model and every file of each.
//!
//! Tolerance: each output element within 1e-4 of the output's largest |value| (at least
//! 1e-6). The host (AVX2 FMA, 6 x 16 tiles) and the target (NEON, other tiles and depth
//! blocks, `vmla` on armv7) sum every dot product in a different order; over a tiny model's
//! twenty-odd layers that moves results by about 1e-6 relative, while a wrong kernel moves
//! them by the size of the values themselves.

use std::path::{Path, PathBuf};

use kestrel_format::load_file;
use kestrel_graph::Tensor;
use kestrel_runtime::Session;

const DIR_ENV: &str = "KESTREL_RECORDED_DIR";
const RELATIVE_TOLERANCE: f32 = 1e-4;

#[test]
fn compiled_models_reproduce_recorded_outputs() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        eprintln!(
            "{DIR_ENV} is not set: no recorded outputs to check (scripts/test-arm.sh sets it)"
        );
        return;
    };
    let dir = PathBuf::from(dir);
    let mut models: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{DIR_ENV}={}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "kst"))
        .collect();
    models.sort();
    assert!(
        !models.is_empty(),
        "{DIR_ENV}={}: no .kst file in the folder",
        dir.display()
    );
    for model in &models {
        check_model(model);
    }
}

fn check_model(kst: &Path) {
    let stem = kst.with_extension("");
    let graph = load_file(kst).unwrap_or_else(|e| panic!("{e}"));
    let input = read_npy(&stem.with_extension("input.npy"));
    let names: Vec<String> = graph
        .outputs
        .iter()
        .map(|&id| graph.value(id).name.clone())
        .collect();
    let session = Session::new(graph).unwrap_or_else(|e| panic!("{}: {e}", kst.display()));
    let outputs = session
        .run(vec![input])
        .unwrap_or_else(|e| panic!("{}: {e}", kst.display()));
    assert_eq!(outputs.len(), names.len());
    let out_dir = stem.with_extension("out");
    for (name, got) in names.iter().zip(&outputs) {
        let want = read_npy(&out_dir.join(format!("{}.npy", file_name(name))));
        let what = format!("{} output {name:?}", kst.display());
        assert_eq!(got.shape(), want.shape(), "{what}: shape");
        let scale = want
            .data()
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()))
            .max(1e-2);
        let tol = RELATIVE_TOLERANCE * scale;
        let mut worst = 0.0f32;
        for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
            assert!(
                (g - w).abs() <= tol,
                "{what}: element {i}: got {g}, recorded {w} (tolerance {tol})"
            );
            worst = worst.max((g - w).abs());
        }
        println!(
            "{what}: {} values, largest difference {worst:e} (tolerance {tol:e})",
            want.len()
        );
    }
}

/// The file name `kestrel run` gives an output: awkward characters become `_`.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Reads a little-endian float32, C-order `.npy` file (format version 1, 2 or 3); panics with
/// the file's name on anything else.
fn read_npy(path: &Path) -> Tensor {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_npy(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_npy(bytes: &[u8]) -> Result<Tensor, String> {
    let rest = bytes
        .strip_prefix(b"\x93NUMPY")
        .ok_or("not a .npy file (bad magic)")?;
    let (&major, rest) = rest.split_first().ok_or("truncated header")?;
    let rest = rest.get(1..).ok_or("truncated header")?;
    let (header_len, rest) = match major {
        1 => {
            let (len, rest) = rest.split_at_checked(2).ok_or("truncated header")?;
            (u16::from_le_bytes([len[0], len[1]]) as usize, rest)
        }
        2 | 3 => {
            let (len, rest) = rest.split_at_checked(4).ok_or("truncated header")?;
            (
                u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize,
                rest,
            )
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let (header, data) = rest
        .split_at_checked(header_len)
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
    if !compact.contains("'descr':'<f4'") {
        return Err(format!(
            "only little-endian float32 is read, header: {header}"
        ));
    }
    if !compact.contains("'fortran_order':False") {
        return Err("only C-order arrays are read".into());
    }
    let dims = compact
        .split_once("'shape':(")
        .and_then(|(_, s)| s.split_once(')'))
        .ok_or("header has no shape")?
        .0;
    let shape = dims
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|_| format!("bad dimension {d:?}"))
        })
        .collect::<Result<Vec<usize>, String>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape overflows")?;
    if count.checked_mul(4) != Some(data.len()) {
        return Err(format!(
            "shape {shape:?} needs {count} floats, the file holds {} bytes of data",
            data.len()
        ));
    }
    let values = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Tensor::new(shape, values).ok_or_else(|| "element count does not match the shape".into())
}
