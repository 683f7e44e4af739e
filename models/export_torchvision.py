#!/usr/bin/env python3
"""Export torchvision classifiers with random weights to ONNX.

No trained torchvision weights can be downloaded here, but the graphs that
users export from torchvision are what the engine must run, so this builds
the same topologies with weights=None and a fixed torch seed:

  googlenet  (aux_logits=False, init_weights=True)
  resnet18
  resnet50

Each is exported in eval mode the way a user would export it (the exporter's
defaults: batch norm folded into Conv, constants folded), opset 13, input
"input" [N,3,224,224] with N dynamic, output "logits" [N,1000], to
<out>/<name>.onnx, then checked with onnx.checker and once with onnxruntime
against torch on a batch of two.

Usage (inside the venv made by models/python_env.sh):
  python models/export_torchvision.py [--out models/cache/torchvision] [--force] [NAME...]
"""

import argparse
import hashlib
import os
import sys
import time
import warnings

import numpy as np
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20240601


def build(name):
    if name == "googlenet":
        return torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    if name == "resnet18":
        return torchvision.models.resnet18(weights=None)
    if name == "resnet50":
        return torchvision.models.resnet50(weights=None)
    raise KeyError(name)


MODELS = ["googlenet", "resnet18", "resnet50"]


def stamp():
    h = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(f.read())
    h.update(f"{torch.__version__} {torchvision.__version__}".encode())
    return h.hexdigest()


def up_to_date(out, want):
    try:
        with open(out + ".stamp") as f:
            return os.path.exists(out) and f.read().strip() == want
    except FileNotFoundError:
        return False


def export(name, out):
    import onnx
    import onnxruntime as ort

    torch.manual_seed(SEED)
    model = build(name).eval()
    x = torch.randn(1, 3, 224, 224)
    tmp = out + ".tmp"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            x,
            tmp,
            opset_version=13,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    m = onnx.load(tmp)
    onnx.checker.check_model(m, full_check=True)
    xb = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want = model(xb).numpy()
    sess = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": xb.numpy()})[0]
    err = float(np.abs(got - want).max())
    if got.shape != (2, 1000) or err > 1e-3 * max(1.0, float(np.abs(want).max())):
        sys.exit(f"{name}: onnxruntime differs from torch (max abs {err})")
    if float(np.std(got)) < 1e-3:
        sys.exit(f"{name}: logits are (nearly) all equal")
    os.replace(tmp, out)
    ops = sorted({n.op_type for n in m.graph.node})
    return f"{len(m.graph.node)} nodes ({', '.join(ops)}), logits std {np.std(got):.3f}, ort vs torch {err:.1e}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "cache", "torchvision"))
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    ap.add_argument("names", nargs="*", default=MODELS)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    want = stamp()
    for name in args.names:
        if name not in MODELS:
            sys.exit(f"unknown model {name}; choose from {MODELS}")
        out = os.path.join(args.out, f"{name}.onnx")
        if not args.force and up_to_date(out, want):
            print(f"{name}: up to date ({out})")
            continue
        t0 = time.time()
        info = export(name, out)
        with open(out + ".stamp", "w") as f:
            f.write(want + "\n")
        print(f"{name}: wrote {out}: {info}, {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
