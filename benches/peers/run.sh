#!/usr/bin/env bash
# Kestrel against ONNX Runtime, OpenVINO (int8 by NNCF), ncnn (converted by pnnx) and tract,
# interleaved in one run; prints a Markdown table and writes it to out/peers.md.
#
#   bash benches/peers/run.sh [--quick] [--models googlenet,resnet50] [--threads 1,2] [--runs 30]
#
# Builds the kestrel CLI and the tract example (release), installs the Python peers from
# benches/peers/requirements.txt into benches/peers/.venv (about 700 MB; again only when
# that file changes), fetches the models if models/cache lacks them, then runs
# benches/peers/bench.py with the same arguments (`--help` lists them all).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/benches/peers/.venv"
PY="$VENV/bin/python"
REQ="$ROOT/benches/peers/requirements.txt"
# pnnx converts ONNX to ncnn with its own binary; its wheel's torch requirement is only for
# TorchScript input, so it goes in without dependencies (torch would add gigabytes).
PNNX="pnnx==20261020"
cd "$ROOT"

for arg in "$@"; do
    if [ "$arg" = "--self-test" ] || [ "$arg" = "--help" ] || [ "$arg" = "-h" ]; then
        exec python3 benches/peers/bench.py "$@"
    fi
done

want="$(cat "$REQ" <(echo "$PNNX") | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.peers-requirements.sha256"
if [ ! -x "$PY" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing the peers into $VENV" >&2
    [ -x "$PY" ] || python3 -m venv "$VENV"
    "$PY" -m pip install -q --disable-pip-version-check -r "$REQ"
    "$PY" -m pip install -q --disable-pip-version-check --no-deps "$PNNX"
    echo "$want" >"$stamp"
fi

echo "building kestrel and the tract example (release)" >&2
cargo build --release -q -p kestrel-cli
cargo build --release -q -p kestrel-benches --example tract_bench

models_wanted=(models/cache/zoo/inception_v1.onnx models/cache/zoo/resnet50.onnx
               models/cache/torchvision/resnet18.onnx models/cache/photos)
for m in "${models_wanted[@]}"; do
    if [ ! -e "$m" ]; then
        echo "$m is missing: running models/fetch_all.sh" >&2
        bash models/fetch_all.sh
        break
    fi
done

exec "$PY" benches/peers/bench.py --command "bash benches/peers/run.sh $*" "$@"
