#!/usr/bin/env python3
"""PyTorch baselines on a CUDA GPU, for docs/benchmarks.md: SRVGGNetCompact
(realesr-animevideov3-x4) with the ncnn model's own weights, and RRDBNet (realesrgan-x4plus's
architecture, random weights: same FLOPs), in fp16, channels_last, cudnn.benchmark, after a
warm-up; the median of timed runs, with CUDA events.

    python3 tools/torch_baseline.py --models DIR [--runs 50]
"""
import argparse
import statistics
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_ncnn_srvgg(param_path, bin_path):
    """Conv weights/biases and PReLU slopes (numpy), in file order, from an ncnn SRVGGNetCompact."""
    layers = []
    with open(param_path) as f:
        lines = f.read().split("\n")[2:]
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        kind, n_in, n_out = parts[0], int(parts[2]), int(parts[3])
        kv = dict(p.split("=", 1) for p in parts[4 + n_in + n_out:] if "=" in p)
        layers.append((kind, kv))
    with open(bin_path, "rb") as f:
        data = f.read()
    blobs, pos = [], 0
    for kind, kv in layers:
        if kind == "Convolution":
            out_c, k, size = int(kv["0"]), int(kv.get("1", 1)), int(kv["6"])
            tag = struct.unpack_from("<I", data, pos)[0]
            pos += 4
            if tag == 0x01306B47:
                w = np.frombuffer(data, np.float16, size, pos).astype(np.float32)
                pos += (2 * size + 3) // 4 * 4
            else:
                w = np.frombuffer(data, np.float32, size, pos)
                pos += 4 * size
            b = None
            if kv.get("5", "0") == "1":
                b = np.frombuffer(data, np.float32, out_c, pos)
                pos += 4 * out_c
            blobs.append(("conv", w.reshape(out_c, size // (out_c * k * k), k, k), b))
        elif kind == "PReLU":
            n = int(kv.get("0", 1))
            blobs.append(("prelu", np.frombuffer(data, np.float32, n, pos), None))
            pos += 4 * n
    assert pos == len(data), f"read {pos} of {len(data)} bytes"
    return blobs


class SRVGGNetCompact(nn.Module):
    def __init__(self, blobs, scale):
        super().__init__()
        self.scale = scale
        self.body = nn.ModuleList()
        for kind, w, b in blobs:
            if kind == "conv":
                conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=w.shape[2] // 2)
                conv.weight.data.copy_(torch.from_numpy(w.copy()))
                conv.bias.data.copy_(torch.from_numpy(b.copy()))
                self.body.append(conv)
            else:
                act = nn.PReLU(num_parameters=w.size)
                act.weight.data.copy_(torch.from_numpy(w.copy()))
                self.body.append(act)

    def forward(self, x):
        out = x
        for m in self.body:
            out = m(out)
        out = F.pixel_shuffle(out, self.scale)
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")


class RDB(nn.Module):
    def __init__(self, f=64, g=32):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(f + i * g, g if i < 4 else f, 3, padding=1) for i in range(5)])

    def forward(self, x):
        feats = [x]
        for i, c in enumerate(self.convs):
            y = c(torch.cat(feats, 1))
            if i < 4:
                feats.append(F.leaky_relu(y, 0.2))
        return y * 0.2 + x


class RRDBNet(nn.Module):
    def __init__(self, blocks=23, f=64):
        super().__init__()
        self.first = nn.Conv2d(3, f, 3, padding=1)
        self.body = nn.Sequential(*[nn.Sequential(RDB(), RDB(), RDB()) for _ in range(blocks)])
        self.body_conv = nn.Conv2d(f, f, 3, padding=1)
        self.up1, self.up2 = nn.Conv2d(f, f, 3, padding=1), nn.Conv2d(f, f, 3, padding=1)
        self.hr, self.last = nn.Conv2d(f, f, 3, padding=1), nn.Conv2d(f, 3, 3, padding=1)

    def forward(self, x):
        feat = self.first(x)
        feat = feat + self.body_conv(self.body(feat))
        feat = F.leaky_relu(self.up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.last(F.leaky_relu(self.hr(feat), 0.2))


def bench(name, model, w, h, runs, batch=1):
    model = model.cuda().half().to(memory_format=torch.channels_last).eval()
    x = torch.rand(batch, 3, h, w, device="cuda").half().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(10):
            model(x)
        torch.cuda.synchronize()
        times = []
        for _ in range(runs):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            model(x)
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) / 1000)
    t = statistics.median(times)
    print(f"{name} {w}x{h} batch={batch}: median {t * 1000:.2f} ms/batch = {batch / t:.1f} fps")
    return batch / t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--fixtures", help="check the weights against ncnn's output on the 64x48 fixture")
    a = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    print("gpu:", torch.cuda.get_device_name(0), "torch", torch.__version__, "cudnn", torch.backends.cudnn.version())
    blobs = read_ncnn_srvgg(f"{a.models}/realesr-animevideov3-x4.param", f"{a.models}/realesr-animevideov3-x4.bin")
    srvgg = SRVGGNetCompact(blobs, 4)
    if a.fixtures:
        name = f"{a.fixtures}/realesr-animevideov3-x4_64x48"
        x = torch.from_numpy(np.fromfile(f"{name}_in.f32", np.float32).reshape(1, 3, 48, 64).copy())
        want = np.fromfile(f"{name}_out_direct.f32", np.float32).reshape(1, 3, 192, 256)
        # The reference tools' convention: reflect-pad 10 pixels, run, crop.
        padded = F.pad(x, (10, 10, 10, 10), mode="reflect")
        with torch.inference_mode():
            got = srvgg.float()(padded)[:, :, 40:232, 40:296].numpy()
            half = srvgg.cuda().half()(padded.cuda().half())[:, :, 40:232, 40:296].float().cpu().numpy()
        srvgg.float()
        print(f"same weights as ncnn: max |torch fp32 - ncnn| = {np.abs(got - want).max():.2e}, "
              f"fp16 {np.abs(half - want).max() * 255:.2f} levels of 255, on the 64x48 fixture")
    bench("realesr-animevideov3-x4 (SRVGGNetCompact, ncnn weights)", srvgg, 960, 540, a.runs)
    bench("realesr-animevideov3-x4 (SRVGGNetCompact, ncnn weights)", srvgg, 960, 540, max(a.runs // 4, 5), batch=4)
    bench("realesrgan-x4plus (RRDBNet 23 blocks, random weights)", RRDBNet(), 480, 270, max(a.runs // 5, 5))


if __name__ == "__main__":
    main()
