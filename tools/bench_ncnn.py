#!/usr/bin/env python3
"""Benchmark an ncnn SR network with PyPI's `ncnn` (CPU) and optionally VSR.

Usage:
    python3 tools/bench_ncnn.py --models DIR --model NAME --width W --height H \
        --threads N [--runs 5] [--vsr PATH_TO_VSR_BINARY]

Runs the raw network (no prepadding / tiling / pre- or post-processing) on a
random W x H x 3 float input in 0..1: one warm-up run, then --runs timed runs
(each: create extractor, input, extract the output blob).  Prints
    ncnn_median_s_per_frame=<float>

ncnn options in effect: ncnn's defaults (its normal fast CPU configuration)
except use_vulkan_compute=False and num_threads=N.  That means winograd /
sgemm convolution, packing layout, lightmode ON, and whatever fp16/bf16
defaults this ncnn build has (the effective values are printed; on CPUs
without native fp16 support ncnn falls back to fp32 kernels).

With --vsr, also runs
    VSR_MODELS_DIR=DIR <vsr> bench --model NAME --width W --height H --threads N
takes the float from the last stdout line `median_s_per_frame=<float>` and
prints vsr_median_s_per_frame=... and ratio_vsr_over_ncnn=...
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import ncnn


def param_io_blobs(param_path):
    with open(param_path, "r") as f:
        lines = [l.split() for l in f.read().splitlines() if l.strip()]
    layers = lines[2:]
    inp = next(l[4 + int(l[2])] for l in layers if l[0] == "Input")
    last = layers[-1]
    nb, nt = int(last[2]), int(last[3])
    return inp, last[4 + nb + nt - 1]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


OPT_FIELDS = [
    "use_vulkan_compute", "num_threads", "lightmode", "use_packing_layout",
    "use_winograd_convolution", "use_sgemm_convolution",
    "use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic",
    "use_bf16_storage", "use_int8_inference",
]


def main():
    ap = argparse.ArgumentParser(description="ncnn vs VSR per-frame benchmark")
    ap.add_argument("--models", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--vsr", help="path to the vsr binary")
    args = ap.parse_args()

    param = os.path.join(args.models, args.model + ".param")
    binp = os.path.join(args.models, args.model + ".bin")
    for p in (param, binp):
        if not os.path.exists(p):
            sys.exit(f"missing {p}")

    print(f"cpu={cpu_model()}")
    print(f"logical_cpus={os.cpu_count()} threads={args.threads}")
    print(f"ncnn_version={getattr(ncnn, '__version__', '?')}")
    print(f"model={args.model} input={args.width}x{args.height} runs={args.runs}")

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False   # CPU only
    net.opt.num_threads = args.threads   # everything else: ncnn defaults
    if net.load_param(param) != 0 or net.load_model(binp) != 0:
        sys.exit("failed to load model")
    in_blob, out_blob = param_io_blobs(param)
    opts = []
    for k in OPT_FIELDS:
        if hasattr(net.opt, k):
            opts.append(f"{k}={getattr(net.opt, k)}")
    print("ncnn_opt " + " ".join(opts))

    rs = np.random.RandomState(0)
    x = rs.rand(3, args.height, args.width).astype(np.float32)
    mat = ncnn.Mat(x)  # zero-copy wrap: keep `x` alive for the whole run

    def once():
        t0 = time.perf_counter()
        ex = net.create_extractor()
        ex.input(in_blob, mat)
        ret, out = ex.extract(out_blob)
        dt = time.perf_counter() - t0
        if ret != 0:
            sys.exit(f"extract failed: {ret}")
        return dt, (out.c, out.h, out.w)

    _, shape = once()  # warm-up
    print(f"output_shape={list(shape)}")
    times = []
    for i in range(args.runs):
        dt, _ = once()
        times.append(dt)
        print(f"  run {i}: {dt:.4f}s", flush=True)
    med = statistics.median(times)
    print(f"ncnn_median_s_per_frame={med:.6f}")

    if args.vsr:
        env = dict(os.environ, VSR_MODELS_DIR=args.models)
        cmd = [args.vsr, "bench", "--model", args.model, "--width", str(args.width),
               "--height", str(args.height), "--threads", str(args.threads)]
        print("running: VSR_MODELS_DIR=%s %s" % (args.models, " ".join(cmd)), flush=True)
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stderr)
            sys.exit(f"vsr bench failed with exit code {r.returncode}")
        lines = [l.strip() for l in r.stdout.splitlines() if l.strip()]
        if not lines or not lines[-1].startswith("median_s_per_frame="):
            sys.stderr.write(r.stdout + r.stderr)
            sys.exit("vsr bench: last stdout line is not median_s_per_frame=<float>")
        vsr = float(lines[-1].split("=", 1)[1])
        print(f"vsr_median_s_per_frame={vsr:.6f}")
        print(f"ratio_vsr_over_ncnn={vsr / med:.3f}")


if __name__ == "__main__":
    main()
