#!/usr/bin/env python3
"""VSR against its peers on the CPU, in one alternating run: the same network (an ncnn SR
model), frame size and thread count in VSR (`vsr bench`), PyPI's ncnn (kept loaded),
onnxruntime and OpenVINO at f32 and, where the CPU has it, bf16. The ONNX file the last two
need is written from the ncnn weights (tools/ncnn_onnx.py) and checked against ncnn first.

Usage:
    python3 tools/bench_peers.py --models DIR --model NAME --width W --height H \
        --threads N [--rounds 7] --vsr PATH_TO_VSR_BINARY

Each round runs every engine once, in turn, so that a noisy neighbour slows them alike; the
median of the rounds is reported per engine, with its ratio to VSR's, and OpenVINO's bf16
output is compared with its f32 output in 8-bit levels. The network is run raw (no padding
or tiling), on a W x H input.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ncnn_onnx  # noqa: E402


def vsr_once(vsr, models, model, w, h, threads):
    env = dict(os.environ, VSR_MODELS_DIR=models)
    r = subprocess.run(
        [vsr, "bench", "--model", model, "--width", str(w), "--height", str(h),
         "--threads", str(threads), "--runs", "1", "--warmup", "1"],
        env=env, capture_output=True, text=True, check=True)
    lines = [l.strip() for l in r.stdout.splitlines() if l.strip()]
    floor = next((l for l in lines if l.startswith("floor_s_per_frame=")), None)
    return float(lines[-1].split("=", 1)[1]), floor


def timed(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--width", type=int, default=480)
    ap.add_argument("--height", type=int, default=270)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--vsr", required=True)
    ap.add_argument("--onnx", default=None, help="where to write the ONNX file")
    a = ap.parse_args()

    import ncnn
    import onnxruntime as ort
    import openvino as ov

    param = os.path.join(a.models, a.model + ".param")
    binp = os.path.join(a.models, a.model + ".bin")
    onnx_path = a.onnx or os.path.join("target", a.model + ".onnx")
    model, inp, out = ncnn_onnx.convert(param, binp)
    ncnn_onnx.onnx.save(model, onnx_path)
    ncnn_onnx.check(onnx_path, param, binp, inp, out)

    rng = np.random.default_rng(1)
    x = rng.random((1, 3, a.height, a.width), dtype=np.float32)

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = a.threads
    net.load_param(param)
    net.load_model(binp)

    def ncnn_run():
        ex = net.create_extractor()
        ex.input(inp, ncnn.Mat(x[0]))
        ex.extract(out)

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])

    core = ov.Core()
    ov_model = core.read_model(onnx_path)
    ov_model.reshape({inp: [1, 3, a.height, a.width]})
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    compiled = {}
    for precision in ["f32"] + (["bf16"] if "BF16" in caps else []):
        compiled[precision] = core.compile_model(ov_model, "CPU", {
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": a.threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
        })
    requests = {p: c.create_infer_request() for p, c in compiled.items()}

    engines = {
        "ncnn": ncnn_run,
        "onnxruntime": lambda: session.run(None, {inp: x}),
    }
    for p, req in requests.items():
        engines[f"openvino-{p}"] = (lambda req: lambda: req.infer({inp: x}))(req)
    for run in engines.values():  # warm-up
        run()

    times = {"vsr": []}
    times.update({k: [] for k in engines})
    floor = None
    for r in range(a.rounds):
        t, floor = vsr_once(a.vsr, a.models, a.model, a.width, a.height, a.threads)
        times["vsr"].append(t)
        for name, run in engines.items():
            times[name].append(timed(run))
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in times.items()), flush=True)

    print(f"model={a.model} input={a.width}x{a.height} threads={a.threads} rounds={a.rounds}")
    if floor:
        print(f"vsr {floor}")
    ours = statistics.median(times["vsr"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name}_median_s_per_frame={m:.6f} ({m / ours:.2f}x VSR's time)")
    if "bf16" in requests:
        f32 = requests["f32"].infer({inp: x})[0]
        bf16 = requests["bf16"].infer({inp: x})[0]
        levels = np.abs(np.clip(bf16, 0, 1) * 255 - np.clip(f32, 0, 1) * 255)
        print(f"openvino bf16 vs f32: max {levels.max():.2f} levels, mean {levels.mean():.3f}")


if __name__ == "__main__":
    main()
