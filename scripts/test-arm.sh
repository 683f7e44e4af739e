#!/usr/bin/env bash
# Cross-compiles the kernels for the Raspberry Pi targets and runs their tests under qemu:
# aarch64 as a Cortex-A72 (Pi 4: NEON, no dot product) and as a Cortex-A76 (Pi 5: NEON with
# the dot-product instructions), and 32-bit armv7 with NEON (a Pi on a 32-bit OS).
#
# Then one whole-model check on each: the host's `kestrel` compiles the bundled tiny models to
# .kst and records their outputs for a fixed input; the format crate's recorded_outputs test,
# cross-built (the runtime and format crates do not need the ONNX importer), loads the same
# files on the target and compares (tolerance stated in the test).
#
#   bash scripts/test-arm.sh
#
# Run as root on Debian, it installs the cross linkers and qemu when they are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need=()
for p in gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf qemu-user; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages: ${need[*]} (run as root or apt-get install them)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf >/dev/null

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc

for cpu in cortex-a72 cortex-a76; do
    echo "== kernels on aarch64, qemu -cpu $cpu"
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu $cpu -L /usr/aarch64-linux-gnu" \
        cargo test --release -q -p kestrel-kernels --target aarch64-unknown-linux-gnu
done

# qemu-arm has no 32-bit Cortex-A72 model; the Cortex-A15 runs the same ARMv7 NEON code.
echo "== kernels on armv7 (32-bit), qemu -cpu cortex-a15"
CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm -cpu cortex-a15 -L /usr/arm-linux-gnueabihf" \
    cargo test --release -q -p kestrel-kernels --target armv7-unknown-linux-gnueabihf

echo "== whole model: host records outputs with kestrel compile / kestrel run"
recorded="$PWD/target/arm-recorded"
rm -rf "$recorded"
mkdir -p "$recorded"
cargo build --release -q -p kestrel-cli
kestrel=target/release/kestrel
for model in googlenet_tiny resnet_tiny; do
    "$kestrel" compile "models/synthetic/$model.onnx" -o "$recorded/$model.kst" >/dev/null
    # A fixed, smooth input in [-2, 2] for the models' 1x3x96x96 image, as float32 .npy.
    perl -e '
        my @shape = (1, 3, 96, 96);
        my $n = 1; $n *= $_ for @shape;
        my $dict = "{\x27descr\x27: \x27<f4\x27, \x27fortran_order\x27: False, \x27shape\x27: ("
            . join(", ", @shape) . "), }";
        $dict .= " " x (63 - (10 + length($dict)) % 64) . "\n";
        binmode STDOUT;
        print "\x93NUMPY\x01\x00", pack("v", length($dict)), $dict,
            pack("f<*", map { 2 * sin(0.37 * $_) * cos(0.011 * $_) } 0 .. $n - 1);
    ' >"$recorded/$model.input.npy"
    "$kestrel" run "$recorded/$model.kst" --input "$recorded/$model.input.npy" \
        -o "$recorded/$model.out" >/dev/null
done
export KESTREL_RECORDED_DIR="$recorded"

for cpu in cortex-a72 cortex-a76; do
    echo "== whole model on aarch64, qemu -cpu $cpu"
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu $cpu -L /usr/aarch64-linux-gnu" \
        cargo test --release -q -p kestrel-format --target aarch64-unknown-linux-gnu \
        --test recorded_outputs -- --nocapture
done
echo "== whole model on armv7 (32-bit), qemu -cpu cortex-a15"
CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm -cpu cortex-a15 -L /usr/arm-linux-gnueabihf" \
    cargo test --release -q -p kestrel-format --target armv7-unknown-linux-gnueabihf \
    --test recorded_outputs -- --nocapture

for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    echo "== clippy, kernels for $target"
    cargo clippy -q -p kestrel-kernels --release --target "$target" --all-targets -- -D warnings
done
