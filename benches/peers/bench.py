#!/usr/bin/env python3
"""Kestrel against its peers, interleaved, in one run.

    bash benches/peers/run.sh [--quick] [--models googlenet,resnet50] [--threads 1,2]

run.sh builds Kestrel and the tract example, installs the Python peers into
benches/peers/.venv and calls this script. Each model is prepared once for every
engine (out/peers/work/), every (engine, precision, threads) cell is loaded and warmed
up, and then the timed runs are taken in rounds: each round gives every cell one block
of runs, in an order that rotates from round to round, so load from the rest of the
machine falls on all engines alike. The Markdown table goes to standard output and to
out/peers.md.

Engines:
  kestrel      the `kestrel bench --json` command (one invocation per block; the model is
               compiled to .kst first); fp32 only for now, int8 rows say "not yet"
  onnxruntime  fp32; int8 by onnxruntime.quantization.quantize_static: QDQ, u8 activations
               and per-channel s8 weights (the pairing its documentation names as the fast
               one on AVX2; s8 activations measured slower than fp32 here), calibrated on
               the photos in models/cache/photos
  openvino     fp32 (f32 inference precision); int8 by nncf.quantize on the same photos
  ncnn         the model converted by pnnx; fp32 with fp16 storage turned off; int8 needs
               ncnn2table/ncnn2int8, which the pip packages do not ship
  tract        target/release/examples/tract_bench --serve (one thread); int8 runs the
               onnxruntime QDQ model

`--self-test` checks the argument parsing, the statistics and the table on made-up
numbers without running anything.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# name -> (file under models/cache, description)
MODELS = {
    "googlenet": ("zoo/inception_v1.onnx", "GoogLeNet (zoo)"),
    "googlenet-tv": ("torchvision/googlenet.onnx", "GoogLeNet (torchvision)"),
    "resnet18": ("torchvision/resnet18.onnx", "ResNet-18 (torchvision)"),
    "resnet50": ("zoo/resnet50.onnx", "ResNet-50 (zoo)"),
    "resnet50-tv": ("torchvision/resnet50.onnx", "ResNet-50 (torchvision)"),
}
ENGINES = ["kestrel", "onnxruntime", "openvino", "ncnn", "tract"]
ENGINE_NAMES = {
    "kestrel": "Kestrel",
    "onnxruntime": "ONNX Runtime",
    "openvino": "OpenVINO",
    "ncnn": "ncnn",
    "tract": "tract",
}
PRECISIONS = ["fp32", "int8"]
SHAPE = (1, 3, 224, 224)


# ---------------------------------------------------------------------------
# Arguments


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="googlenet,resnet50",
                   help="comma-separated, from: " + ", ".join(MODELS))
    p.add_argument("--engines", default=",".join(ENGINES),
                   help="comma-separated, from: " + ", ".join(ENGINES))
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--runs", type=int, default=None,
                   help="timed runs per cell (default 30, --quick 4)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed runs per cell before the first round (default 3, --quick 1)")
    p.add_argument("--block", type=int, default=None,
                   help="runs per cell per round (default 5, --quick 2)")
    p.add_argument("--calibration", type=int, default=12,
                   help="images for int8 calibration (photos, then generated ones)")
    p.add_argument("--quick", action="store_true", help="few runs: a smoke test, not a measurement")
    p.add_argument("--kestrel", default=os.path.join(ROOT, "target/release/kestrel"))
    p.add_argument("--tract", default=os.path.join(ROOT, "target/release/examples/tract_bench"))
    p.add_argument("--cache", default=os.path.join(ROOT, "models/cache"))
    p.add_argument("--work", default=os.path.join(ROOT, "out/peers/work"),
                   help="where the prepared models go")
    p.add_argument("--out", default=os.path.join(ROOT, "out/peers.md"))
    p.add_argument("--command", default=None, help="the command line to print with the table")
    p.add_argument("--self-test", action="store_true")
    a = p.parse_args(argv)

    def split(value, allowed, what):
        items = [x.strip() for x in value.split(",") if x.strip()]
        if not items:
            p.error(f"--{what} is empty")
        for x in items:
            if allowed is not None and x not in allowed:
                p.error(f"unknown {what[:-1]} {x!r}: want one of {', '.join(allowed)}")
        return items

    a.models = split(a.models, MODELS, "models")
    a.engines = split(a.engines, ENGINES, "engines")
    a.precisions = split(a.precisions, PRECISIONS, "precisions")
    try:
        a.threads = [int(t) for t in split(a.threads, None, "threads")]
    except ValueError:
        p.error("--threads wants comma-separated integers")
    if any(t < 1 for t in a.threads):
        p.error("--threads must be at least 1")
    defaults = (4, 1, 2) if a.quick else (30, 3, 5)
    a.runs = defaults[0] if a.runs is None else a.runs
    a.warmup = defaults[1] if a.warmup is None else a.warmup
    a.block = defaults[2] if a.block is None else a.block
    if a.runs < 1 or a.block < 1 or a.warmup < 0:
        p.error("--runs and --block must be at least 1, --warmup at least 0")
    return a


# ---------------------------------------------------------------------------
# Statistics and the table


def percentile(values, q):
    """Nearest rank on the sorted values, as `kestrel bench` computes it."""
    s = sorted(values)
    return s[int(round((len(s) - 1) * q))]


@dataclasses.dataclass
class Cell:
    model: str
    engine: str
    precision: str
    threads: int
    note: str = ""  # shown after the engine name, e.g. how the int8 model was made
    unavailable: str | None = None  # reason, or None when it ran
    latencies: list = dataclasses.field(default_factory=list)
    runner: object = None

    def key(self):
        return (self.model, self.precision, self.threads)

    def median(self):
        return percentile(self.latencies, 0.5) if self.latencies else None

    def p90(self):
        return percentile(self.latencies, 0.9) if self.latencies else None


def ratios(cells):
    """Kestrel's median over the best peer's, per (model, precision, threads)."""
    out = {}
    for c in cells:
        if c.engine != "kestrel" or c.median() is None:
            continue
        peers = [p for p in cells if p.engine != "kestrel" and p.key() == c.key()
                 and p.median() is not None]
        if peers:
            best = min(peers, key=lambda p: p.median())
            out[c.key()] = (c.median() / best.median(), best)
    return out


def format_table(cells, models_desc):
    r = ratios(cells)
    lines = [
        "| model | engine | precision | threads | median ms | p90 ms | runs | Kestrel / best peer |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    order = {e: i for i, e in enumerate(ENGINES)}
    model_order = {m: i for i, m in enumerate(MODELS)}
    cells = sorted(cells, key=lambda c: (model_order.get(c.model, 99), c.precision, c.threads,
                                         order.get(c.engine, 99)))
    for c in cells:
        engine = ENGINE_NAMES.get(c.engine, c.engine) + (f" ({c.note})" if c.note else "")
        if c.unavailable is not None:
            med, p90, runs = c.unavailable, "", ""
        elif not c.latencies:
            med, p90, runs = "no runs", "", ""
        else:
            med, p90, runs = f"{c.median():.1f}", f"{c.p90():.1f}", str(len(c.latencies))
        ratio = ""
        if c.engine == "kestrel":
            if c.key() in r:
                x, best = r[c.key()]
                ratio = f"**{x:.2f}** (vs {ENGINE_NAMES[best.engine]} {best.median():.1f})"
            elif c.unavailable is None and c.latencies:
                ratio = "no peer ran"
        lines.append(f"| {models_desc.get(c.model, c.model)} | {engine} | {c.precision} | "
                     f"{c.threads} | {med} | {p90} | {runs} | {ratio} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Inputs


def synthetic_input(seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    return rng.standard_normal(SHAPE).astype(np.float32)


def calibration_images(cache, count):
    """Photos from models/cache/photos, shorter side 256, centre crop 224, torchvision
    normalisation (the benchmark's models carry random weights, so any sane convention
    serves); generated images fill up to `count`."""
    import numpy as np
    images = []
    paths = sorted(glob.glob(os.path.join(cache, "photos", "*")))
    try:
        from PIL import Image
    except ImportError:
        paths = []
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
    for path in paths[:count]:
        img = Image.open(path).convert("RGB")
        w, h = img.size
        s = 256 / min(w, h)
        img = img.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - 224) // 2, (h - 224) // 2
        img = img.crop((left, top, left + 224, top + 224))
        x = np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0
        images.append(((x - mean) / std)[None].astype(np.float32))
    seed = 1
    while len(images) < count:
        images.append(synthetic_input(seed))
        seed += 1
    return images


# ---------------------------------------------------------------------------
# Preparing the models


def clean_onnx(src, dst):
    """The model with its input fixed to 1x3x224x224 and its initializers no longer listed
    as graph inputs (the zoo graphs list them, which some converters take for inputs)."""
    import onnx
    if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
        return dst
    m = onnx.load(src)
    opset = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 13:
        # QDQ with per-channel weights needs opset 13.
        from onnx import version_converter
        m = version_converter.convert_version(m, 13)
    m.ir_version = max(m.ir_version, 7)  # from IR 4 on, initializers need not be inputs
    inits = {i.name for i in m.graph.initializer}
    keep = [i for i in m.graph.input if i.name not in inits]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, SHAPE):
        d.ClearField("dim_param")
        d.dim_value = v
    global_average_pools(m)
    fold_weight_reshapes(m)
    onnx.checker.check_model(m)
    onnx.save(m, dst + ".tmp")
    os.replace(dst + ".tmp", dst)
    return dst


def global_average_pools(m):
    """An AveragePool that covers its whole input and leaves out the padding (the zoo
    GoogLeNet's last pool: 7x7 over 6x6 with one padded row and column) is a
    GlobalAveragePool; say so, as not every converter reads the first form."""
    import onnx
    from onnx import helper
    inferred = onnx.shape_inference.infer_shapes(m)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    for i, n in enumerate(m.graph.node):
        if n.op_type != "AveragePool":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        shape = shapes.get(n.input[0])
        out = shapes.get(n.output[0])
        if (not shape or len(shape) != 4 or not out or out[2:] != [1, 1]
                or attrs.get("count_include_pad", 0) or attrs.get("auto_pad", b"NOTSET") != b"NOTSET"
                or any(k < d for k, d in zip(attrs.get("kernel_shape", [0, 0]), shape[2:]))):
            continue
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if pads[0] or pads[1] or any(k - p > d for k, p, d in
                                     zip(attrs["kernel_shape"], pads[2:], shape[2:])):
            continue
        m.graph.node[i].CopyFrom(helper.make_node("GlobalAveragePool", [n.input[0]],
                                                  [n.output[0]], name=n.name))


def fold_weight_reshapes(m):
    """Reshapes of constant weights become the reshaped weights (the zoo graphs reshape
    their 1x1x1000xK classifier weights at run time, which NNCF cannot follow)."""
    from onnx import numpy_helper
    inits = {i.name: i for i in m.graph.initializer}
    consts = {n.output[0]: n for n in m.graph.node if n.op_type == "Constant"}

    def value(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = consts.get(name)
        if node is not None and node.attribute and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    keep = []
    for n in m.graph.node:
        if n.op_type == "Reshape" and n.input[0] in inits and len(n.input) > 1:
            data, shape = value(n.input[0]), value(n.input[1])
            if shape is not None:
                shape = [data.shape[i] if d == 0 else int(d) for i, d in enumerate(shape)]
                folded = numpy_helper.from_array(data.reshape(shape), n.output[0])
                m.graph.initializer.append(folded)
                inits[n.output[0]] = folded
                continue
        keep.append(n)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    used = {i for n in keep for i in n.input} | {o.name for o in m.graph.output}
    unused = [i for i in m.graph.initializer if i.name not in used]
    for i in unused:
        m.graph.initializer.remove(i)


def ort_int8(clean, dst, calib):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(clean):
        return dst
    import onnxruntime as ort
    name = ort.InferenceSession(clean, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: x}

    pre = dst + ".pre.onnx"
    quant_pre_process(clean, pre)
    quantize_static(pre, dst + ".tmp", Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    os.replace(dst + ".tmp", dst)
    os.remove(pre)
    return dst


def openvino_int8(clean, dst, calib):
    if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(clean):
        return dst
    import nncf
    import openvino as ov
    model = ov.Core().read_model(clean)
    q = nncf.quantize(model, nncf.Dataset(calib), preset=nncf.QuantizationPreset.PERFORMANCE,
                      subset_size=len(calib))
    ov.save_model(q, dst)
    return dst


def pnnx_binary():
    import importlib.util
    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pnnx package is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "pnnx")
    if not os.access(path, os.X_OK):
        raise RuntimeError("the pnnx package has no pnnx binary")
    return path


def ncnn_model(clean, workdir):
    base = os.path.join(workdir, "ncnn")
    param, binf = base + ".ncnn.param", base + ".ncnn.bin"
    if os.path.exists(param) and os.path.getmtime(param) >= os.path.getmtime(clean):
        return param, binf
    src = base + ".onnx"
    shutil.copyfile(clean, src)
    shape = ",".join(map(str, SHAPE))
    res = subprocess.run([pnnx_binary(), os.path.basename(src), f"inputshape=[{shape}]",
                          "fp16=0"], cwd=workdir, capture_output=True, text=True)
    if res.returncode != 0 or not os.path.exists(param):
        tail = (res.stdout + res.stderr).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"pnnx failed: {tail[0]}")
    for leftover in glob.glob(base + ".pnnx*") + glob.glob(base + "_*.py") + [src]:
        with contextlib.suppress(OSError):
            os.remove(leftover)
    return param, binf


def kestrel_model(kestrel, clean, workdir):
    dst = os.path.join(workdir, "kestrel.kst")
    if os.path.exists(dst) and os.path.getmtime(dst) >= max(os.path.getmtime(clean),
                                                              os.path.getmtime(kestrel)):
        return dst
    res = subprocess.run([kestrel, "compile", clean, "-o", dst], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"kestrel compile failed: {res.stderr.strip()}")
    return dst


# ---------------------------------------------------------------------------
# Runners: warm(n) runs untimed, block(n) returns n latencies in ms.


class InProcess:
    def __init__(self, fn):
        self.fn = fn

    def warm(self, n):
        for _ in range(n):
            self.fn()

    def block(self, n):
        out = []
        for _ in range(n):
            t = time.perf_counter()
            self.fn()
            out.append((time.perf_counter() - t) * 1e3)
        return out

    def close(self):
        pass


def ort_runner(path, threads, x):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return InProcess(lambda: sess.run(None, {name: x}))


def openvino_runner(path, threads, x):
    import openvino as ov
    core = ov.Core()
    compiled = core.compile_model(path, "CPU", {
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
    })
    req = compiled.create_infer_request()
    return InProcess(lambda: req.infer({0: x}))


def ncnn_runner(param, binf, threads, x):
    import ncnn
    import numpy as np
    net = ncnn.Net()
    net.opt.num_threads = threads
    net.opt.use_fp16_packed = False
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    if net.load_param(param) != 0 or net.load_model(binf) != 0:
        raise RuntimeError("ncnn could not load the converted model")
    inp = ncnn.Mat(np.ascontiguousarray(x[0]))

    def run():
        ex = net.create_extractor()
        ex.input("in0", inp)
        ret, out = ex.extract("out0")
        if ret != 0:
            raise RuntimeError(f"ncnn extract failed ({ret})")
    return InProcess(run)


class TractServer:
    def __init__(self, binary, model):
        self.proc = subprocess.Popen([binary, model, "--serve", "--warmup", "0"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().strip().splitlines()
            raise RuntimeError(err[-1] if err else "tract_bench exited")
        json.loads(line)

    def _run(self, n):
        self.proc.stdin.write(f"run {n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().strip().splitlines()
            raise RuntimeError(err[-1] if err else "tract_bench exited")
        return json.loads(line)["latencies_ms"]

    def warm(self, n):
        if n:
            self._run(n)

    def block(self, n):
        return self._run(n)

    def close(self):
        with contextlib.suppress(Exception):
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


class KestrelCli:
    """One `kestrel bench` invocation per block; each takes one untimed run first, as the
    other engines' first run of a block follows another engine's too."""

    def __init__(self, binary, model, threads):
        self.cmd = [binary, "--threads", str(threads), "bench", model, "--json"]

    def _bench(self, runs, warmup):
        res = subprocess.run(self.cmd + ["--runs", str(runs), "--warmup", str(warmup)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(res.stderr.strip() or "kestrel bench failed")
        return json.loads(res.stdout.strip().splitlines()[-1])

    def warm(self, n):
        self._bench(1, max(0, n - 1))

    def block(self, n):
        out = self._bench(n, 1)
        if "latencies_ms" not in out:
            raise RuntimeError("this kestrel does not print latencies_ms")
        return out["latencies_ms"]

    def close(self):
        pass


# ---------------------------------------------------------------------------
# The run


def short_error(e):
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def versions(engines):
    out = {}
    for engine, module in [("onnxruntime", "onnxruntime"), ("openvino", "openvino"),
                           ("nncf", "nncf"), ("ncnn", "ncnn")]:
        if engine in engines or (engine == "nncf" and "openvino" in engines):
            try:
                import importlib.metadata as md
                out[engine] = md.version(module)
            except Exception:
                out[engine] = "not installed"
    if "tract" in engines:
        out["tract"] = tract_version()
    return out


def tract_version():
    lock = os.path.join(ROOT, "Cargo.lock")
    with contextlib.suppress(OSError):
        lines = open(lock).read().splitlines()
        for i, line in enumerate(lines):
            if line.strip() == 'name = "tract-onnx"' and i + 1 < len(lines):
                return lines[i + 1].split('"')[1]
    return "?"


def machine():
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores"


def load_average():
    with contextlib.suppress(OSError, AttributeError):
        return "%.1f" % os.getloadavg()[0]
    return "?"


def prepare_model(args, model, cells, calib, log):
    """Prepare the model's files and runners for its cells; failures become reasons."""
    src = os.path.join(args.cache, MODELS[model][0])
    workdir = os.path.join(args.work, model)
    os.makedirs(workdir, exist_ok=True)
    if not os.path.exists(src):
        for c in cells:
            c.unavailable = f"unavailable: {MODELS[model][0]} missing (bash models/fetch_all.sh)"
        return
    x = synthetic_input()
    files = {}

    def make(what, fn):
        if what not in files:
            try:
                files[what] = fn()
            except Exception as e:  # reported in the table
                files[what] = e
                log(f"  {model}: preparing {what} failed: {short_error(e)}")
                if os.environ.get("PEERS_DEBUG"):
                    traceback.print_exc()
        if isinstance(files[what], Exception):
            raise RuntimeError(f"{what}: {short_error(files[what])}")
        return files[what]

    clean = lambda: make("onnx", lambda: clean_onnx(src, os.path.join(workdir, "model.onnx")))
    ort_q = lambda: make("onnxruntime int8", lambda: ort_int8(
        clean(), os.path.join(workdir, "ort_int8_qdq.onnx"), calib()))
    for c in cells:
        t0 = time.perf_counter()
        try:
            if c.engine == "kestrel":
                if c.precision == "int8":
                    c.unavailable = "not yet (int8 model path to come)"
                    continue
                if not os.access(args.kestrel, os.X_OK):
                    raise RuntimeError(f"{args.kestrel} not built (cargo build --release)")
                kst = make("kestrel", lambda: kestrel_model(args.kestrel, clean(), workdir))
                c.runner = KestrelCli(args.kestrel, kst, c.threads)
            elif c.engine == "onnxruntime":
                path = clean() if c.precision == "fp32" else ort_q()
                if c.precision == "int8":
                    c.note = "QDQ U8S8"
                c.runner = ort_runner(path, c.threads, x)
            elif c.engine == "openvino":
                if c.precision == "fp32":
                    path = clean()
                else:
                    c.note = "NNCF"
                    path = make("openvino int8", lambda: openvino_int8(
                        clean(), os.path.join(workdir, "openvino_int8.xml"), calib()))
                c.runner = openvino_runner(path, c.threads, x)
            elif c.engine == "ncnn":
                if c.precision == "int8":
                    c.unavailable = ("unavailable: the pip packages ship no "
                                     "ncnn2table/ncnn2int8")
                    continue
                c.note = "pnnx"
                param, binf = make("ncnn", lambda: ncnn_model(clean(), workdir))
                c.runner = ncnn_runner(param, binf, c.threads, x)
            elif c.engine == "tract":
                if c.threads != 1:
                    c.unavailable = "n/a: built single-threaded"
                    continue
                if c.precision == "int8":
                    c.note = "ONNX Runtime's QDQ model"
                if not os.access(args.tract, os.X_OK):
                    raise RuntimeError(f"{args.tract} not built (cargo build --release "
                                       "-p kestrel-benches --example tract_bench)")
                path = clean() if c.precision == "fp32" else ort_q()
                c.runner = TractServer(args.tract, path)
            c.runner.warm(args.warmup)
            log(f"  {model} {c.engine} {c.precision} {c.threads}t ready "
                f"({time.perf_counter() - t0:.1f} s)")
        except Exception as e:
            c.unavailable = f"unavailable: {short_error(e)}"
            c.runner = None
            log(f"  {model} {c.engine} {c.precision} {c.threads}t: {c.unavailable}")
            if os.environ.get("PEERS_DEBUG"):
                traceback.print_exc()


def run_rounds(args, cells, log):
    live = [c for c in cells if c.runner is not None]
    rounds = -(-args.runs // args.block)
    for r in range(rounds):
        n = min(args.block, args.runs - r * args.block)
        shift = r % max(1, len(live))
        for c in live[shift:] + live[:shift]:
            if c.runner is None:
                continue
            try:
                c.latencies.extend(c.runner.block(n))
            except Exception as e:
                c.unavailable = f"failed: {short_error(e)}"
                c.runner.close()
                c.runner = None
            # let spinning worker threads of the last engine go idle
            time.sleep(0.02)
        log(f"  round {r + 1}/{rounds} done")
    for c in live:
        if c.runner is not None:
            c.runner.close()
            c.runner = None


def main(argv):
    args = parse_args(argv)
    if args.self_test:
        return self_test()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = load_average()
    calib_cache = []

    def calib():
        if not calib_cache:
            calib_cache.extend(calibration_images(args.cache, args.calibration))
        return calib_cache

    all_cells = []
    for model in args.models:
        cells = [Cell(model, e, p, t) for p in args.precisions for t in args.threads
                 for e in args.engines]
        log(f"{model}: preparing {len(cells)} cells")
        prepare_model(args, model, cells, calib, log)
        log(f"{model}: {args.runs} runs per cell in blocks of {args.block}")
        run_rounds(args, cells, log)
        all_cells.extend(cells)

    desc = {m: MODELS[m][1] for m in MODELS}
    table = format_table(all_cells, desc)
    vers = versions(args.engines)
    command = args.command or "python benches/peers/bench.py " + " ".join(argv)
    header = [
        f"`{command}`",
        "",
        f"{started:%Y-%m-%d %H:%M} UTC, {machine()}, load average {load_before} before and "
        f"{load_average()} after; batch 1, 224x224, {args.runs} timed runs per cell after "
        f"{args.warmup} warm-up, interleaved in blocks of {args.block}.",
        "Peers: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
    ]
    if args.quick:
        header.append("**--quick: a smoke test, not a measurement.**")
    text = "\n".join(header) + "\n\n" + table + "\n"
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    log(f"wrote {args.out}")
    return 0


def self_test():
    a = parse_args(["--quick", "--models", "googlenet,resnet18", "--threads", "2"])
    assert a.models == ["googlenet", "resnet18"] and a.threads == [2]
    assert (a.runs, a.warmup, a.block) == (4, 1, 2)
    a = parse_args(["--runs", "7"])
    assert (a.runs, a.block, a.threads) == (7, 5, [1, 2])
    for bad in (["--models", "alexnet"], ["--threads", "0"], ["--threads", "x"],
                ["--engines", ""]):
        with contextlib.redirect_stderr(open(os.devnull, "w")):
            try:
                parse_args(bad)
            except SystemExit:
                continue
        raise AssertionError(f"{bad} was accepted")
    assert percentile([5, 1, 4, 2, 3], 0.5) == 3
    assert percentile(list(range(1, 31)), 0.9) == 27
    cells = [
        Cell("googlenet", "kestrel", "fp32", 1, latencies=[30.0, 31.0, 32.0]),
        Cell("googlenet", "onnxruntime", "fp32", 1, latencies=[40.0, 41.0, 42.0]),
        Cell("googlenet", "openvino", "fp32", 1, latencies=[20.0, 21.0, 22.0]),
        Cell("googlenet", "ncnn", "int8", 1, unavailable="unavailable: no tool"),
        Cell("googlenet", "kestrel", "int8", 1, unavailable="not yet"),
        Cell("googlenet", "tract", "fp32", 2, unavailable="n/a: built single-threaded"),
    ]
    table = format_table(cells, {"googlenet": "GoogLeNet (zoo)"})
    assert "**1.48** (vs OpenVINO 21.0)" in table, table
    assert "| ncnn | int8 | 1 | unavailable: no tool |" in table, table
    assert "| Kestrel | int8 | 1 | not yet |" in table, table
    rows = table.splitlines()[2:]
    assert rows[0].startswith("| GoogLeNet (zoo) | Kestrel | fp32 | 1 |"), rows
    assert len(rows) == len(cells)
    print("bench.py self-test: 1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
