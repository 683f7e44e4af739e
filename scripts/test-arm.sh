#!/usr/bin/env bash
# Cross-compiles the kernels for the Raspberry Pi targets and runs their tests under qemu:
# aarch64 as a Cortex-A72 (Pi 4: NEON, no dot product) and as a Cortex-A76 (Pi 5: NEON with
# the dot-product instructions), and 32-bit armv7 with NEON (a Pi on a 32-bit OS).
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

for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    echo "== clippy, kernels for $target"
    cargo clippy -q -p kestrel-kernels --release --target "$target" --all-targets -- -D warnings
done
