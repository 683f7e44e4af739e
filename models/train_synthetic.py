#!/usr/bin/python3
"""Trains the two reference CNNs on the synthetic localization task and exports them to ONNX.

Run from the repository root with Debian's PyTorch:

    /usr/bin/python3 models/train_synthetic.py

It renders the datasets with the `kestrel-synthetic` crate (training seed 1, validation
seed 2, held-out evaluation seed 3), trains `googlenet_tiny` and `resnet_tiny` on two CPU
threads, reports classification accuracy and the Class Activation Map box metric on the
held-out set, and writes to models/synthetic/:

    googlenet_tiny.onnx, resnet_tiny.onnx, labels.txt, SHA256SUMS

The pre-processing, tensor names and CAM metric are described in models/README.md; the
code here is their reference.
"""

import argparse
import csv
import hashlib
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "models" / "synthetic"

TRAIN_SEED, VAL_SEED, EVAL_SEED = 1, 2, 3
SIZE = 96
MEAN, STD = 0.5, 0.5
CAM_THRESHOLD = 0.2
CELLS = 12            # feature-map side of both networks at SIZE 96
CAM_WEIGHT = 1.0      # weight of the CAM box term in the training loss
OPSET = 13


# ---------------------------------------------------------------- data


def render(dir_: Path, seed: int, count: int) -> None:
    subprocess.run(
        ["cargo", "run", "--quiet", "--release", "-p", "kestrel-synthetic",
         "--example", "write_dataset", "--", str(dir_), str(seed), str(count), str(SIZE)],
        cwd=ROOT, check=True)


def load(dir_: Path):
    """Images as uint8 [N, 3, H, W], classes as int64 [N], boxes as float [N, 4]."""
    with open(dir_ / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    images = np.stack([np.asarray(Image.open(dir_ / r["file"]).convert("RGB")) for r in rows])
    classes = np.array([int(r["class"]) for r in rows])
    boxes = np.array([[float(r[k]) for k in ("x0", "y0", "x1", "y1")] for r in rows])
    names = (dir_ / "labels.txt").read_text().split()
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(classes), boxes, names


def normalise(images_u8: torch.Tensor) -> torch.Tensor:
    return (images_u8.float() / 255.0 - MEAN) / STD


def augment(*tensors: torch.Tensor):
    """The same random flips and quarter turns applied to every [N, C, H, W] tensor given
    (images and their box masks): every class is closed under them."""
    n = tensors[0].shape[0]
    flip_x, turn, flip_y = (torch.rand(n) < 0.5 for _ in range(3))
    out = []
    for x in tensors:
        x = torch.where(flip_x[:, None, None, None], x.flip(3), x)
        x = torch.where(turn[:, None, None, None], x.transpose(2, 3), x)
        out.append(torch.where(flip_y[:, None, None, None], x.flip(2), x))
    return out


def box_masks(boxes: np.ndarray, cells: int) -> torch.Tensor:
    """[N, 1, cells, cells]: the fraction of each feature-map cell inside the object's box."""
    edges = torch.arange(cells + 1, dtype=torch.float32) * (SIZE / cells)
    lo, hi = edges[:-1], edges[1:]
    b = torch.from_numpy(boxes).float()

    def overlap(a0, a1):  # [N, cells]
        return ((torch.minimum(a1[:, None], hi) - torch.maximum(a0[:, None], lo)).clamp(min=0)
                / (SIZE / cells))

    ox, oy = overlap(b[:, 0], b[:, 2]), overlap(b[:, 1], b[:, 3])
    return (oy[:, :, None] * ox[:, None, :])[:, None]


def cam_loss(model, feats: torch.Tensor, classes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Makes the true class's CAM positive on feature-map cells inside the object's box and
    negative on cells outside it (cells the box edge cuts through are left free).

    CAM boxes are read at 20% of the map's maximum; trained on the label alone, the maps of
    these small networks are blobs a cell or two wider than the object, so the boxes come
    out far too large. The exported network is unchanged (features -> global average pool
    -> fc): the term only shapes the features it learns. It is a logistic loss on the raw
    map, so it needs no normalisation by the map's maximum, which is unstable early on.
    """
    cam = torch.einsum("bk,bkhw->bhw", model.fc.weight[classes], feats)
    mask = masks[:, 0]
    decided = ((mask < 0.05) | (mask > 0.5)).float()
    target = (mask > 0.5).float()
    loss = F.binary_cross_entropy_with_logits(cam, target, reduction="none")
    return (loss * decided).sum() / decided.sum().clamp(min=1)


# ---------------------------------------------------------------- models


class ConvReLU(nn.Sequential):
    """Conv -> BatchNorm -> ReLU. Without batch norm this GoogLeNet does not train from its
    default initialisation (the loss stays at ln 6)."""

    def __init__(self, cin, cout, k, stride=1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Inception(nn.Module):
    """1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max-pool -> 1x1, concatenated on channels."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.b1 = ConvReLU(cin, c1, 1)
        self.b3 = nn.Sequential(ConvReLU(cin, c3r, 1), ConvReLU(c3r, c3, 3))
        self.b5 = nn.Sequential(ConvReLU(cin, c5r, 1), ConvReLU(c5r, c5, 5))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), ConvReLU(cin, cp, 1))
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class CamNet(nn.Module):
    """features -> global average pool -> (dropout) -> fc; the shape CAM needs.

    The pool and the flatten export as GlobalAveragePool and Flatten (a plain
    `mean((2, 3))` would export as ReduceMean).
    """

    def forward(self, x):
        return self.classify(self.features(x))

    def classify(self, feats):
        return self.fc(self.drop(torch.flatten(F.adaptive_avg_pool2d(feats, 1), 1)))


class GoogLeNetTiny(CamNet):
    def __init__(self, classes):
        super().__init__()
        a = Inception(48, 16, 16, 24, 8, 8, 8)
        b = Inception(a.out_channels, 24, 24, 32, 8, 16, 8)
        c = Inception(b.out_channels, 32, 32, 48, 8, 16, 16)
        d = Inception(c.out_channels, 32, 32, 48, 8, 16, 16)
        self.features = nn.Sequential(
            ConvReLU(3, 24, 5, 2),        # 48x48
            nn.MaxPool2d(3, 2, 1),        # 24x24
            ConvReLU(24, 24, 1),
            ConvReLU(24, 48, 3),
            a, b,
            nn.MaxPool2d(3, 2, 1),        # 12x12
            c, d,
        )
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(d.out_channels, classes)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNetTiny(CamNet):
    def __init__(self, classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True),  # 48x48
            nn.MaxPool2d(3, 2, 1),        # 24x24
            BasicBlock(24, 24),
            BasicBlock(24, 48, 2),        # 12x12, projection shortcut
            BasicBlock(48, 48),
            BasicBlock(48, 64),           # 1x1 projection to widen
            BasicBlock(64, 64),
        )
        self.drop = nn.Identity()
        self.fc = nn.Linear(64, classes)


ARCHS = {"googlenet_tiny": GoogLeNetTiny, "resnet_tiny": ResNetTiny}


# ---------------------------------------------------------------- CAM metric


def largest_region_box(mask: np.ndarray):
    """Box (x0, y0, x1, y1), exclusive ends, of the largest 8-connected True region."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    best, best_box = 0, (0, 0, 0, 0)
    for sy, sx in zip(*np.nonzero(mask)):
        if seen[sy, sx]:
            continue
        seen[sy, sx] = True
        queue = deque([(sy, sx)])
        n, x0, y0, x1, y1 = 0, sx, sy, sx, sy
        while queue:
            y, x = queue.popleft()
            n += 1
            x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                        seen[yy, xx] = True
                        queue.append((yy, xx))
        # Ties keep the region found first in row-major order.
        if n > best:
            best, best_box = n, (x0, y0, x1 + 1, y1 + 1)
    return best_box


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@torch.no_grad()
def evaluate(model, images, classes, boxes, batch=100):
    """Accuracy and, for the CAM of the predicted class and of the true class, the
    fraction of boxes with IoU >= 0.5 and the IoUs themselves."""
    model.eval()
    correct, ious = 0, {"pred": [], "true": []}
    for i in range(0, len(images), batch):
        x = normalise(images[i:i + batch])
        feats = model.features(x)                          # [B, K, h, w]
        logits = model.fc(torch.flatten(F.adaptive_avg_pool2d(feats, 1), 1))
        pred = logits.argmax(1)
        correct += (pred == classes[i:i + batch]).sum().item()
        for which, cls in (("pred", pred), ("true", classes[i:i + batch])):
            w = model.fc.weight[cls]                       # [B, K]
            cam = torch.einsum("bk,bkhw->bhw", w, feats)[:, None]
            cam = F.interpolate(cam, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
            for j, c in enumerate(cam.numpy()):
                box = largest_region_box(c >= CAM_THRESHOLD * c.max())
                ious[which].append(iou(box, boxes[i + j]))
    ious = {k: np.array(v) for k, v in ious.items()}
    frac = {k: float((v >= 0.5).mean()) for k, v in ious.items()}
    return correct / len(images), frac, ious


# ---------------------------------------------------------------- training


def train(name, data, epochs, batch, lr, log):
    torch.manual_seed(0)
    (xtr, ytr, btr), (xva, yva, bva) = data["train"], data["val"]
    model = ARCHS[name](len(data["names"]))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * (len(xtr) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    gen = torch.Generator().manual_seed(1)
    start = time.time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for s in range(len(xtr) // batch):
            idx = order[s * batch:(s + 1) * batch]
            x, masks = augment(normalise(xtr[idx]), box_masks(btr[idx.numpy()], CELLS))
            feats = model.features(x)
            loss = (F.cross_entropy(model.classify(feats), ytr[idx])
                    + CAM_WEIGHT * cam_loss(model, feats, ytr[idx], masks))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        acc, cam, _ = evaluate(model, xva, yva, bva)
        log(f"{name} epoch {epoch + 1}/{epochs}: loss {total / (s + 1):.3f} "
            f"val acc {acc:.3f} cam@0.5 pred {cam['pred']:.3f} true {cam['true']:.3f} "
            f"({time.time() - start:.0f}s)")
    return model


def export(model, path: Path):
    model.eval()
    torch.onnx.export(
        model, torch.zeros(1, 3, SIZE, SIZE), str(path),
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        # Keeps BatchNormalization nodes in the graph: the engine must fold them itself.
        # TrainingMode.EVAL would run the exporter's eval peephole pass, which fuses every
        # Conv+BatchNormalization pair (and then aliases the identical zero biases through
        # Identity nodes); PRESERVE on a model in eval mode skips that pass and still
        # exports inference-mode BatchNormalization and no Dropout.
        do_constant_folding=False,
        training=torch.onnx.TrainingMode.PRESERVE,
    )


ALLOWED_OPS = {"Conv", "BatchNormalization", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool",
               "Concat", "Add", "Flatten", "Reshape", "Gemm", "MatMul", "Softmax", "Identity"}


def check_export(model, path: Path, x: torch.Tensor) -> str:
    """Checks the exported graph's operators and compares its output with the model's.

    Uses onnx and onnxruntime when they are importable (the .venv made by
    models/python_env.sh has both) and is skipped otherwise.
    """
    try:
        import onnx
        import onnxruntime
    except ImportError:
        return f"{path.name}: onnx/onnxruntime not available, export not checked"
    graph = onnx.load(str(path)).graph
    ops = sorted({n.op_type for n in graph.node})
    extra = set(ops) - ALLOWED_OPS
    if extra:
        raise RuntimeError(f"{path.name}: unexpected operators {sorted(extra)}")
    with torch.no_grad():
        want = model.eval()(x).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input": x.numpy()})[0]
    diff = float(np.abs(got - want).max())
    if diff > 1e-3 or (got.argmax(1) != want.argmax(1)).any():
        raise RuntimeError(f"{path.name}: onnxruntime differs from torch by {diff}")
    return (f"{path.name}: {path.stat().st_size} bytes, {len(graph.node)} nodes, ops {ops}, "
            f"onnxruntime matches torch (max |diff| {diff:.2e})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="keep rendered datasets here (default: a temporary folder)")
    p.add_argument("--train-count", type=int, default=8000)
    p.add_argument("--eval-count", type=int, default=300)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--models", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    np.random.seed(0)
    log = lambda msg: print(msg, flush=True)  # noqa: E731

    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp)
        data = {}
        for split, seed, count in (("train", TRAIN_SEED, args.train_count), ("val", VAL_SEED, 500),
                                   ("eval", EVAL_SEED, args.eval_count)):
            dir_ = root / f"{split}-seed{seed}-{count}"
            if not (dir_ / "labels.csv").exists():
                render(dir_, seed, count)
            *data[split], names = load(dir_)
            data["names"] = names
        log(f"datasets ready ({time.time() - start:.0f}s)")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "labels.txt").write_text("\n".join(data["names"]) + "\n")
    xev, yev, bev = data["eval"]
    results = {}
    for name in args.models:
        t = time.time()
        model = train(name, data, args.epochs, args.batch, args.lr, log)
        secs = time.time() - t
        acc, cam, ious = evaluate(model, xev, yev, bev)
        results[name] = (acc, cam, {k: float(np.median(v)) for k, v in ious.items()}, secs)
        export(model, args.out / f"{name}.onnx")
        log(check_export(model, args.out / f"{name}.onnx", normalise(xev[:16])))

    files = sorted(p.name for p in args.out.iterdir() if p.suffix in (".onnx", ".txt"))
    with open(args.out / "SHA256SUMS", "w") as f:
        for fname in files:
            f.write(f"{hashlib.sha256((args.out / fname).read_bytes()).hexdigest()}  {fname}\n")

    log(f"held-out set: seed {EVAL_SEED}, {len(xev)} images")
    for name, (acc, cam, med, secs) in results.items():
        log(f"{name}: accuracy {acc:.3f}, CAM box IoU>=0.5: predicted class {cam['pred']:.3f} "
            f"(median IoU {med['pred']:.3f}), true class {cam['true']:.3f} "
            f"(median IoU {med['true']:.3f}); trained in {secs:.0f}s")
    log(f"total {time.time() - start:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
