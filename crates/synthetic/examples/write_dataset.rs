//! Writes a synthetic dataset: `write_dataset DIR SEED COUNT [SIZE]`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: write_dataset DIR SEED COUNT [SIZE]";
    if !(3..=4).contains(&args.len()) {
        eprintln!("{usage}");
        return ExitCode::FAILURE;
    }
    let number = |s: &str, what: &str| {
        s.parse::<u64>()
            .map_err(|e| format!("{what} {s:?} is not a number: {e}"))
    };
    let parsed = (|| -> Result<(u64, u64, u32), String> {
        let seed = number(&args[1], "SEED")?;
        let count = number(&args[2], "COUNT")?;
        let size = match args.get(3) {
            Some(s) => u32::try_from(number(s, "SIZE")?).map_err(|e| e.to_string())?,
            None => kestrel_synthetic::DEFAULT_SIZE,
        };
        if size < 16 {
            return Err(format!("SIZE must be at least 16, got {size}"));
        }
        Ok((seed, count, size))
    })();
    let (seed, count, size) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}\n{usage}");
            return ExitCode::FAILURE;
        }
    };
    let dir = PathBuf::from(&args[0]);
    match kestrel_synthetic::write_dataset(&dir, seed, count, size) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write dataset to {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
