#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after another, SECONDS each:
#
#   scripts/fuzz.sh SECONDS [TARGET...]      (default: every target)
#
# Installs what it needs: a nightly toolchain (libFuzzer's sanitizer flags are nightly-only;
# if none can be installed, the stable toolchain is used with RUSTC_BOOTSTRAP=1) and
# cargo-fuzz. Each target's corpus grows in fuzz/corpus/TARGET, starting from the committed
# seeds in fuzz/seeds/TARGET and the bundled model; a crash stops the run, leaves the input in
# fuzz/artifacts/TARGET and makes this script fail. Logs go to fuzz/logs/TARGET.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(kst_load onnx_import image_decode)
fi

if rustup run nightly rustc --version >/dev/null 2>&1 \
    || rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
    cargo=(cargo +nightly)
else
    echo "fuzz: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
    export RUSTC_BOOTSTRAP=1
    cargo=(cargo)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
"${cargo[@]}" --version
cargo fuzz --version

# Per target: the longest input worth trying (a little over the largest seed).
max_len() {
    case $1 in
        onnx_import) echo 400000 ;;
        kst_load) echo 600000 ;;
        *) echo 65536 ;;
    esac
}

mkdir -p fuzz/logs
for target in "${targets[@]}"; do
    corpus=fuzz/corpus/$target
    mkdir -p "$corpus"
    if [ "$target" = onnx_import ]; then
        cp -n models/synthetic/googlenet_tiny.onnx "$corpus/" 2>/dev/null || true
    fi
    if [ "$target" = kst_load ] && [ -x target/release/kestrel ] && [ ! -e "$corpus/googlenet_tiny.kst" ]; then
        target/release/kestrel compile models/synthetic/googlenet_tiny.onnx \
            -o "$corpus/googlenet_tiny.kst" >/dev/null || true
    fi
    echo "== fuzz $target for ${seconds}s"
    status=0
    (cd fuzz && "${cargo[@]}" fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 \
        -max_len="$(max_len "$target")" -print_final_stats=1) >"fuzz/logs/$target.log" 2>&1 \
        || status=$?
    grep -E "^#[0-9]+ +DONE|^Done [0-9]+ runs|stat::number_of_executed_units|panicked at|SUMMARY|Test unit written" \
        "fuzz/logs/$target.log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "fuzz/logs/$target.log" >&2
        echo "fuzz: $target failed (status $status); the input is in fuzz/artifacts/$target" >&2
        exit "$status"
    fi
done
