#!/usr/bin/env bash
# Everything the full test suite reads from models/cache/: the Python environment, the
# real-weight models and photos, and the zoo and torchvision topologies with random weights.
#
#   bash models/fetch_all.sh
#
# Idempotent: a second run checks the checksums and returns in about a second.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash models/python_env.sh
bash models/fetch_real.sh
.venv/bin/python models/prepare_zoo.py
.venv/bin/python models/export_torchvision.py
