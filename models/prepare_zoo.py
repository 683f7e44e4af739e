#!/usr/bin/env python3
"""Turn the ONNX model-zoo graphs shipped in the onnx wheel into test models.

The PyPI onnx wheel carries the classic model-zoo classifiers in
onnx/backend/test/data/light/ with their structure intact but every large
weight replaced by a ConstantOfShape node filled with 0.02 (the small
tensors, such as some biases and batch-norm statistics, are kept as
initializers). A network whose weights are all equal hides many bugs, so
this script gives every Conv / Gemm / BatchNormalization parameter new,
random values of the same shape, stored as initializers:

  * Conv and Gemm weights: normal * sqrt(2 / fan_in) (He initialisation),
    so activations stay of order one through the whole network;
  * biases: normal * 0.1;
  * BatchNormalization: scale uniform(0.8, 1.2), bias normal * 0.1, mean
    normal * 0.1, variance uniform(0.8, 1.2); the batch norm closing a
    residual branch (its output feeds an Add/Sum and its Conv reads a
    tensor that no other Conv reads) gets a scale of uniform(0.2, 0.4) so
    the residual sums do not grow from block to block.

Everything else is left as it is: node names and order, attributes, opset
and IR version (3: initializers are also listed as graph inputs, as in the
original zoo files), shape constants such as Reshape targets, and unused
inputs. The random numbers come from numpy.random.default_rng with a fixed
seed per model, so the output is the same on every machine.

Each result is checked with onnx.checker (full check) and strict shape
inference, then run once with onnxruntime on a fixed random input: every
intermediate tensor must be finite, the root mean square of every Conv
output must lie in [0.05, 20], and the logits (the Softmax input) must not
all be equal.

Usage (inside the venv made by models/python_env.sh):
  python models/prepare_zoo.py [--out models/cache/zoo] [--force] [NAME...]
Writes <out>/<name>.onnx for inception_v1, resnet50, bvlc_alexnet,
zfnet512, vgg19 and squeezenet.
"""

import argparse
import collections
import hashlib
import os
import sys
import time
import zlib

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

MODELS = ["inception_v1", "resnet50", "bvlc_alexnet", "zfnet512", "vgg19", "squeezenet"]
HERE = os.path.dirname(os.path.abspath(__file__))


def light_dir():
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def tensor_shapes(graph):
    """Shape of every float parameter: initializers and ConstantOfShape outputs."""
    inits = {i.name: i for i in graph.initializer}
    shapes = {}
    for i in graph.initializer:
        if i.data_type == onnx.TensorProto.FLOAT:
            shapes[i.name] = tuple(i.dims)
    for n in graph.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in inits:
            shapes[n.output[0]] = tuple(int(d) for d in numpy_helper.to_array(inits[n.input[0]]))
    return shapes


def parameter_roles(graph, shapes):
    """Map parameter name -> (role, fan_in) for Conv, Gemm and BatchNormalization inputs."""
    consumers = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            consumers[i].append(n)
    producers = {o: n for n in graph.node for o in n.output}
    inits = {i.name: i for i in graph.initializer}

    # A parameter may reach its operator through a Reshape (inception_v1's
    # classifier weight does): follow one Reshape hop.
    def target(name):
        users = consumers.get(name, [])
        if len(users) == 1 and users[0].op_type == "Reshape" and users[0].input[0] == name:
            r = users[0]
            shape = tuple(int(d) for d in numpy_helper.to_array(inits[r.input[1]]))
            return r.output[0], shape
        return name, shapes[name]

    roles = {}
    for name in shapes:
        tname, shape = target(name)
        for n in consumers.get(tname, []):
            slot = list(n.input).index(tname)
            if n.op_type == "Conv":
                if slot == 1:
                    roles[name] = ("weight", int(np.prod(shape[1:])))
                elif slot == 2:
                    roles[name] = ("bias", None)
            elif n.op_type == "Gemm":
                if slot == 1:
                    k = shape[1] if attr(n, "transB", 0) else shape[0]
                    roles[name] = ("weight", int(k))
                elif slot == 2:
                    roles[name] = ("bias", None)
                elif slot == 0 and name not in roles:
                    raise SystemExit(f"{name}: constant Gemm input A is not supported")
            elif n.op_type == "BatchNormalization" and slot >= 1:
                role = ["bn_scale", "bn_bias", "bn_mean", "bn_var"][slot - 1]
                if role == "bn_scale" and closes_residual(n, consumers, producers):
                    role = "bn_scale_residual"
                roles[name] = (role, None)
    return roles


def closes_residual(bn, consumers, producers):
    if not any(c.op_type in ("Add", "Sum") for c in consumers.get(bn.output[0], [])):
        return False
    conv = producers.get(bn.input[0])
    if conv is None or conv.op_type != "Conv":
        return False
    # A projection shortcut's Conv shares its input with the residual branch.
    return sum(c.op_type == "Conv" for c in consumers[conv.input[0]]) == 1


def random_value(rng, role, fan_in, shape):
    if role == "weight":
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
    if role in ("bias", "bn_bias", "bn_mean"):
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)
    if role in ("bn_scale", "bn_var"):
        return rng.uniform(0.8, 1.2, shape).astype(np.float32)
    if role == "bn_scale_residual":
        return rng.uniform(0.2, 0.4, shape).astype(np.float32)
    raise ValueError(role)


def randomize(model, seed):
    graph = model.graph
    shapes = tensor_shapes(graph)
    roles = parameter_roles(graph, shapes)
    unused = [n for n in shapes if n not in roles and n in {i for nd in graph.node for i in nd.input}]
    if unused:
        raise SystemExit(f"parameters with no known role: {unused[:5]}")
    rng = np.random.default_rng(seed)
    new = {}
    for name in sorted(roles):  # sorted: independent of graph order
        role, fan_in = roles[name]
        new[name] = random_value(rng, role, fan_in, shapes[name])

    # Drop the ConstantOfShape nodes that made parameters, their shape inputs,
    # and the old initializers of replaced parameters.
    cos = [n for n in graph.node if n.op_type == "ConstantOfShape" and n.output[0] in new]
    shape_inputs = {n.input[0] for n in cos}
    still_used = {i for n in graph.node if n not in cos for i in n.input}
    dead_inits = {s for s in shape_inputs if s not in still_used} | (set(new) & {i.name for i in graph.initializer})
    keep_nodes = [n for n in graph.node if n not in cos]
    del graph.node[:]
    graph.node.extend(keep_nodes)
    keep_inits = [i for i in graph.initializer if i.name not in dead_inits]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    graph.initializer.extend(numpy_helper.from_array(new[n], n) for n in sorted(new))

    # IR 3: every initializer is also a graph input; keep the original order
    # of the inputs and give the new parameters typed entries.
    old_inputs = {i.name: i for i in graph.input}
    inputs = []
    for i in graph.input:
        if i.name in dead_inits - set(new):
            continue
        if i.name in new:
            inputs.append(helper.make_tensor_value_info(i.name, onnx.TensorProto.FLOAT, new[i.name].shape))
        else:
            inputs.append(i)
    for n in sorted(new):
        if n not in old_inputs:
            inputs.append(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, new[n].shape))
    del graph.input[:]
    graph.input.extend(inputs)
    return len(cos), len(new)


def data_input(model):
    inits = {i.name for i in model.graph.initializer}
    used = {i for n in model.graph.node for i in n.input}
    real = [i for i in model.graph.input if i.name not in inits and i.name in used]
    if len(real) != 1:
        raise SystemExit(f"expected one data input, found {[i.name for i in real]}")
    return real[0]


def dims(vi):
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]


def check_with_onnxruntime(path, model, seed):
    """Run once, exposing every intermediate tensor; return a summary dict."""
    import onnxruntime as ort

    inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    probe = onnx.ModelProto()
    probe.CopyFrom(inferred)
    outputs = {o.name for o in probe.graph.output}
    for vi in inferred.graph.value_info:
        if vi.name not in outputs:
            probe.graph.output.append(vi)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inp = data_input(model)
    x = np.random.default_rng(seed).standard_normal(dims(inp), dtype=np.float32)
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(names, {inp.name: x})))

    bad = [n for n, v in values.items() if not np.all(np.isfinite(v))]
    if bad:
        raise SystemExit(f"{path}: non-finite values in {bad[:5]}")
    conv_rms = []
    for n in model.graph.node:
        if n.op_type == "Conv":
            v = values[n.output[0]]
            conv_rms.append(float(np.sqrt(np.mean(np.square(v, dtype=np.float64)))))
    softmax = [n for n in model.graph.node if n.op_type == "Softmax"]
    logits = values[softmax[-1].input[0]].ravel()
    probs = values[model.graph.output[0].name].ravel()
    lo, hi = min(conv_rms), max(conv_rms)
    if not (0.05 <= lo and hi <= 20):
        raise SystemExit(f"{path}: Conv output RMS out of range [{lo:.3g}, {hi:.3g}]")
    if float(np.std(logits)) < 1e-3:
        raise SystemExit(f"{path}: logits are (nearly) all equal")
    return {
        "conv_rms": (lo, hi),
        "logits_std": float(np.std(logits)),
        "top1": int(np.argmax(probs)),
        "top1_p": float(np.max(probs)),
    }


def describe(model):
    g = model.graph
    inp = data_input(model)
    ops = collections.Counter(n.op_type for n in g.node)
    opset = ",".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import)
    outs = ", ".join(f"{o.name} {dims(o)}" for o in g.output)
    return (
        f"  opset {opset}, IR {model.ir_version}, input {inp.name} {dims(inp)}, output {outs}\n"
        f"  ops: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items()))
    )


def stamp_for(name):
    h = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(f.read())
    with open(os.path.join(light_dir(), f"light_{name}.onnx"), "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def up_to_date(out, stamp):
    try:
        with open(out + ".stamp") as f:
            return os.path.exists(out) and f.read().strip() == stamp
    except FileNotFoundError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "cache", "zoo"))
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    ap.add_argument("names", nargs="*", default=MODELS)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    for name in args.names:
        if name not in MODELS:
            sys.exit(f"unknown model {name}; choose from {MODELS}")
        t0 = time.time()
        out = os.path.join(args.out, f"{name}.onnx")
        stamp = stamp_for(name)
        if not args.force and up_to_date(out, stamp):
            print(f"{name}: up to date ({out})")
            continue
        model = onnx.load(os.path.join(light_dir(), f"light_{name}.onnx"))
        seed = zlib.crc32(name.encode())
        n_cos, n_params = randomize(model, seed)
        onnx.checker.check_model(model, full_check=True)
        summary = check_with_onnxruntime(out, model, seed)
        tmp = out + ".tmp"
        onnx.save(model, tmp)
        os.replace(tmp, out)
        with open(out + ".stamp", "w") as f:
            f.write(stamp + "\n")
        lo, hi = summary["conv_rms"]
        print(
            f"{name}: {n_params} parameters randomised ({n_cos} ConstantOfShape removed), "
            f"{os.path.getsize(out) / 1e6:.0f} MB, {time.time() - t0:.1f} s\n{describe(model)}\n"
            f"  check: Conv output RMS {lo:.2f}..{hi:.2f}, logits std {summary['logits_std']:.2f}, "
            f"top-1 {summary['top1']} p={summary['top1_p']:.3f}"
        )


if __name__ == "__main__":
    main()
