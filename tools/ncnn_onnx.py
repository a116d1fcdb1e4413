#!/usr/bin/env python3
"""Writes an ONNX file from an ncnn SR model (.param + .bin), for running the same network
in onnxruntime and OpenVINO next to VSR and ncnn (tools/bench_peers.py). Built with the
`onnx` package's helpers from the ncnn weights themselves: no PyTorch, no model hub.

Covers the layers of the Real-ESRGAN family (realesr-animevideov3-*, realesrgan-x4plus*):
Input, Split, Convolution (with its fused ReLU / leaky ReLU), PReLU, PixelShuffle, Interp
(nearest), BinaryOp (add, sub, mul with a blob or a scalar), Eltwise (sum with coefficients)
and Concat over channels. Anything else is refused by name.

Usage:
    python3 tools/ncnn_onnx.py --param M.param --bin M.bin --out M.onnx [--check]

--check runs the ONNX file in onnxruntime and the ncnn model in PyPI's `ncnn` on the same
random 64x48 input and fails unless they agree within 1e-4.
"""

import argparse
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FP16_TAG = 0x01306B47
FP32_TAGS = (0, 0x0002C056)


def parse_param(path):
    """Layers as (type, name, inputs, outputs, params{key: int|float|list})."""
    with open(path) as f:
        lines = [l.split() for l in f.read().splitlines() if l.strip()]
    if lines[0] != ["7767517"]:
        sys.exit(f"{path}: not an ncnn .param (magic {lines[0]})")
    layers = []
    for parts in lines[2:]:
        kind, name, nin, nout = parts[0], parts[1], int(parts[2]), int(parts[3])
        ins = parts[4:4 + nin]
        outs = parts[4 + nin:4 + nin + nout]
        params = {}
        for kv in parts[4 + nin + nout:]:
            k, v = kv.split("=", 1)
            k = int(k)
            if k <= -23300:
                values = v.split(",")[1:]
                params[-23300 - k] = [float(x) if any(c in x for c in ".e") else int(x) for x in values]
            else:
                params[k] = float(v) if any(c in v for c in ".e") else int(v)
        layers.append((kind, name, ins, outs, params))
    return layers


class Weights:
    """Reads ncnn .bin blobs in order: tagged (fp32 or fp16) weights, raw fp32 the rest."""

    def __init__(self, path):
        self.data = open(path, "rb").read()
        self.at = 0

    def raw(self, n):
        v = np.frombuffer(self.data, np.float32, n, self.at).copy()
        self.at += 4 * n
        return v

    def tagged(self, n):
        (tag,) = struct.unpack_from("<I", self.data, self.at)
        self.at += 4
        if tag == FP16_TAG:
            v = np.frombuffer(self.data, np.float16, n, self.at).astype(np.float32)
            self.at += (2 * n + 3) // 4 * 4
            return v
        if tag in FP32_TAGS:
            return self.raw(n)
        sys.exit(f"weight encoding tag {tag:#x} is not fp32 or fp16")


def convert(param_path, bin_path):
    layers = parse_param(param_path)
    weights = Weights(bin_path)
    nodes, inits = [], []
    alias = {}
    name_of = lambda b: alias.get(b, b)
    graph_input = None
    produced = []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    for kind, name, ins, outs, p in layers:
        ins = [name_of(b) for b in ins]
        if kind == "Input":
            graph_input = outs[0]
            continue
        if kind == "Split":
            for o in outs:
                alias[o] = ins[0]
            continue
        out = outs[0]
        produced.append(out)
        if kind == "Convolution":
            oc, kw = p[0], p.get(1, 1)
            kh = p.get(11, kw)
            dw = p.get(2, 1)
            sw = p.get(3, 1)
            pl = p.get(4, 0)
            pt, pr = p.get(14, pl), p.get(15, pl)
            pb = p.get(16, pt)
            if min(pl, pt, pr, pb) < 0:
                sys.exit(f"{name}: automatic padding is not supported")
            size = p[6]
            ic = size // (oc * kh * kw)
            w = weights.tagged(size).reshape(oc, ic, kh, kw)
            b = weights.raw(oc) if p.get(5, 0) else np.zeros(oc, np.float32)
            act = p.get(9, 0)
            conv_out = out if act == 0 else out + "_conv"
            nodes.append(helper.make_node(
                "Conv", [ins[0], const(name + "_w", w), const(name + "_b", b)], [conv_out],
                kernel_shape=[kh, kw], strides=[p.get(13, sw), sw],
                dilations=[p.get(12, dw), dw], pads=[pt, pl, pb, pr]))
            if act == 1:
                nodes.append(helper.make_node("Relu", [conv_out], [out]))
            elif act == 2:
                slope = p.get(10, [0.0])[0]
                nodes.append(helper.make_node("LeakyRelu", [conv_out], [out], alpha=float(slope)))
            elif act != 0:
                sys.exit(f"{name}: fused activation {act} is not supported")
        elif kind == "PReLU":
            n = p.get(0, 1)
            slope = weights.raw(n).reshape(n, 1, 1)
            nodes.append(helper.make_node("PRelu", [ins[0], const(name + "_s", slope)], [out]))
        elif kind == "PixelShuffle":
            if p.get(1, 0) != 0:
                sys.exit(f"{name}: only the channel-first pixel shuffle is supported")
            nodes.append(helper.make_node("DepthToSpace", [ins[0]], [out], blocksize=p[0], mode="CRD"))
        elif kind == "Interp":
            if p.get(0, 0) != 1 or p.get(3, 0) or p.get(4, 0):
                sys.exit(f"{name}: only nearest resizing by a scale is supported")
            scales = const(name + "_scales", [1, 1, p.get(1, 1.0), p.get(2, 1.0)])
            nodes.append(helper.make_node(
                "Resize", [ins[0], "", scales], [out], mode="nearest",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
        elif kind == "BinaryOp":
            op = {0: "Add", 1: "Sub", 2: "Mul"}.get(p.get(0, 0))
            if op is None:
                sys.exit(f"{name}: BinaryOp {p.get(0)} is not supported")
            other = const(name + "_b", p.get(2, 0.0)) if p.get(1, 0) else ins[1]
            nodes.append(helper.make_node(op, [ins[0], other], [out]))
        elif kind == "Eltwise":
            if p.get(0, 1) != 1:
                sys.exit(f"{name}: only summing Eltwise is supported")
            coeffs = p.get(1, [])
            terms = []
            for i, b in enumerate(ins):
                if coeffs and coeffs[i] != 1.0:
                    scaled = f"{name}_t{i}"
                    nodes.append(helper.make_node("Mul", [b, const(scaled + "_c", coeffs[i])], [scaled]))
                    terms.append(scaled)
                else:
                    terms.append(b)
            nodes.append(helper.make_node("Sum", terms, [out]))
        elif kind == "Concat":
            if p.get(0, 0) != 0:
                sys.exit(f"{name}: only channel concatenation is supported")
            nodes.append(helper.make_node("Concat", ins, [out], axis=1))
        else:
            sys.exit(f"{name}: layer type {kind} is not supported")
    if weights.at != len(weights.data):
        sys.exit(f"{bin_path}: {len(weights.data) - weights.at} bytes left over")
    output = produced[-1]
    graph = helper.make_graph(
        nodes, "sr",
        [helper.make_tensor_value_info(graph_input, TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, 3, None, None])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, graph_input, output


def ncnn_run(param, binp, inp, out, x, threads=2):
    import ncnn
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    net.load_param(param)
    net.load_model(binp)
    ex = net.create_extractor()
    ex.input(inp, ncnn.Mat(x[0]))
    _, y = ex.extract(out)
    return np.array(y)[None]


def check(path, param, binp, inp, out):
    import onnxruntime as ort
    rng = np.random.default_rng(7)
    x = rng.random((1, 3, 48, 64), dtype=np.float32)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {inp: x})[0]
    want = ncnn_run(param, binp, inp, out, x)
    diff = float(np.abs(got - want).max())
    print(f"onnx vs ncnn on a 64x48 input: max difference {diff:.2e}")
    if got.shape != want.shape or diff > 1e-4:
        sys.exit(f"the ONNX file does not match ncnn ({got.shape} vs {want.shape}, {diff})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--param", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    model, inp, out = convert(a.param, a.bin)
    onnx.save(model, a.out)
    print(f"wrote {a.out}: {len(model.graph.node)} nodes, input {inp}, output {out}")
    if a.check:
        check(a.out, a.param, a.bin, inp, out)


if __name__ == "__main__":
    main()
