#!/usr/bin/env bash
# Create (or refresh) the Python environment used by the scripts in models/.
#
#   bash models/python_env.sh        # creates .venv at the repository root
#
# The venv sees Debian's site-packages (torch 1.13, torchvision 0.14, PIL)
# and adds the pinned wheels from models/requirements.txt. Running it again
# is a no-op unless requirements.txt changed. When run as root on a Debian
# machine it apt-installs the system packages it needs if they are missing.
#
# Other scripts may `source` this file: it then only defines functions and
# KESTREL_VENV / KESTREL_PY, and `kestrel_python_env` does the work.
set -euo pipefail

KESTREL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KESTREL_VENV="$KESTREL_ROOT/.venv"
KESTREL_PY="$KESTREL_VENV/bin/python"

# Debian packages the model tooling relies on.
KESTREL_APT_BASE=(python3-venv python3-pip python3-torch python3-torchvision python3-pil)

# kestrel_apt_ensure PKG...: install the packages that are not installed yet.
kestrel_apt_ensure() {
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages: ${missing[*]} (run as root or apt-get install them)" >&2
        return 1
    fi
    echo "apt-get install ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
}

kestrel_python_env() {
    kestrel_apt_ensure "${KESTREL_APT_BASE[@]}"
    local req="$KESTREL_ROOT/models/requirements.txt"
    local stamp="$KESTREL_VENV/.kestrel-requirements.sha256"
    local want
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    if [ -x "$KESTREL_PY" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    if [ ! -x "$KESTREL_PY" ]; then
        /usr/bin/python3 -m venv --system-site-packages "$KESTREL_VENV"
    fi
    "$KESTREL_PY" -m pip install -q --disable-pip-version-check -r "$req"
    # Debian's torch must still import against the venv's numpy.
    "$KESTREL_PY" - <<'PY'
import numpy, onnx, onnxruntime, torch, torchvision
torch.from_numpy(numpy.zeros(2, dtype=numpy.float32)).sum().item()
PY
    echo "$want" >"$stamp"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    kestrel_python_env
fi
