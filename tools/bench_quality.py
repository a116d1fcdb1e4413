#!/usr/bin/env python3
"""Quality and temporal stability of VSR's presets against Lanczos, on a real clip: the
clip's first frames are the ground truth, downscaled (bicubic) to make the input; each
method upscales it back, and the outputs are scored against the truth.

Usage:
    python3 tools/bench_quality.py --clip CLIP.mp4 --vsr PATH_TO_VSR [--scale 2] \
        [--frames 60] [--crop 640x272] [--presets fast,balanced,quality] [--temporal MODE]

With --temporal MODE every preset runs twice in the same run, without the stabiliser and with
`--temporal MODE`, and a second table holds issue 19's bars for each: the flicker residual's
ratio (at most 0.5), the PSNR-Y change (at least -0.2 dB), the detail ratio (at least 0.95)
and the stabiliser's cost as vsr measured it on these frames (at most 10% of the model's time).

Per method: PSNR-Y and SSIM-Y (BT.601 luma, 8-bit), the mean luma shift against the truth
(in 8-bit levels: a method that brightens or darkens), detail (the mean magnitude of the
Laplacian of Y: high-frequency energy), E_warp and the flicker residual:
  * E_warp: DIS optical flow (OpenCV, medium preset) between consecutive ground-truth frames;
    output frame t-1 warped onto t; occluded and out-of-frame pixels masked by
    forward-backward consistency; masked MSE on RGB in [0, 1]; pairs whose mask keeps under
    half the frame (scene cuts) left out. Printed x1e3, with the source's own E_warp
    subtracted ("added").
  * flicker residual: the same warp and mask on (O_t - W O_{t-1}) - (G_t - W G_{t-1}): change
    present in the output but not in the source, x1e3.
Outputs are encoded losslessly (x264 at CRF 0) so that the encoder adds nothing. The product
itself stays Python-free; OpenCV comes from PyPI into the reference venv.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

import cv2
import numpy as np


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def read_frames(path, w, h):
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True, capture_output=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    return frames


def luma(rgb):
    f = rgb.astype(np.float64)
    return 16 + (65.481 * f[..., 0] + 128.553 * f[..., 1] + 24.966 * f[..., 2]) / 255


def detail(y):
    return float(np.abs(cv2.Laplacian(y, cv2.CV_64F)).mean())


def psnr(a, b):
    mse = np.mean((a - b) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def ssim(a, b):
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)
    mu_a, mu_b = blur(a), blur(b)
    va = blur(a * a) - mu_a ** 2
    vb = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return float(s[5:-5, 5:-5].mean())


class Motion:
    """Flow between consecutive truth frames, with the warp grid and the consistency mask."""

    def __init__(self, truth):
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        h, w = truth.shape[1:3]
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.pairs = []
        for t in range(1, len(truth)):
            prev = cv2.cvtColor(truth[t - 1], cv2.COLOR_RGB2GRAY)
            cur = cv2.cvtColor(truth[t], cv2.COLOR_RGB2GRAY)
            back = dis.calc(cur, prev, None)  # where each pixel of t was in t-1
            fwd = dis.calc(prev, cur, None)
            mx, my = gx + back[..., 0], gy + back[..., 1]
            inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
            fwd_at = cv2.remap(fwd, mx, my, cv2.INTER_LINEAR)
            err = np.linalg.norm(back + fwd_at, axis=2)
            mag = np.linalg.norm(back, axis=2) ** 2 + np.linalg.norm(fwd_at, axis=2) ** 2
            mask = inside & (err ** 2 < 0.01 * mag + 0.5)
            self.pairs.append((mx, my, mask))

    def warp(self, t, frame):
        mx, my, _ = self.pairs[t - 1]
        return cv2.remap(frame, mx, my, cv2.INTER_LINEAR)

    def scores(self, out, truth):
        """Mean E_warp of `out` and its flicker residual against `truth` (both x1e3)."""
        ew, fl = [], []
        for t in range(1, len(truth)):
            mask = self.pairs[t - 1][2]
            if mask.mean() < 0.5:
                continue
            o_t, o_p = out[t] / 255.0, out[t - 1] / 255.0
            g_t, g_p = truth[t] / 255.0, truth[t - 1] / 255.0
            d_out = o_t - self.warp(t, o_p.astype(np.float32))
            d_src = g_t - self.warp(t, g_p.astype(np.float32))
            ew.append(np.mean((d_out ** 2)[mask]))
            fl.append(np.mean(((d_out - d_src) ** 2)[mask]))
        return 1e3 * float(np.mean(ew)), 1e3 * float(np.mean(fl))


def clip_arguments(description):
    """The command-line options every clip benchmark takes: the clip, its crop and length,
    the scale, the presets and the vsr binary that runs them."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--clip", required=True)
    ap.add_argument("--vsr", required=True)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--crop", default="640x272", help="WxH from the clip's centre")
    ap.add_argument("--presets", default="fast,balanced,quality")
    return ap


def truth_and_input(a, tmp):
    """The clip's first frames cropped (the truth, lossless) and their bicubic downscale by
    the scale (the input, lossless), as files under `tmp`: returns the crop's size, the
    truth's frames and the input's path."""
    s = a.scale
    cw, ch = (int(v) for v in a.crop.split("x"))
    cw, ch = cw // s * s, ch // s * s
    truth_path, low = os.path.join(tmp, "truth.mkv"), os.path.join(tmp, "low.mkv")
    ffmpeg("-i", a.clip, "-frames:v", str(a.frames), "-an", "-sn",
           "-vf", f"crop={cw}:{ch}", "-c:v", "ffv1", "-pix_fmt", "rgb24", truth_path)
    ffmpeg("-i", truth_path, "-vf", f"scale={cw // s}:{ch // s}:flags=bicubic",
           "-c:v", "ffv1", "-pix_fmt", "rgb24", low)
    return cw, ch, read_frames(truth_path, cw, ch), low


def upscale(a, low, out, preset, temporal):
    """`vsr upscale` of the input with a preset, losslessly (x264 at CRF 0)."""
    return subprocess.run([a.vsr, "upscale", low, "-o", out, "--scale", str(a.scale),
                           "--preset", preset, "--crf", "0", "--temporal", temporal],
                          check=True, capture_output=True, text=True)


def main():
    ap = clip_arguments(__doc__.split("\n\n")[0])
    ap.add_argument("--temporal", default=None, help="also pass --temporal MODE to vsr")
    a = ap.parse_args()
    s = a.scale
    with tempfile.TemporaryDirectory() as tmp:
        cw, ch, truth, low = truth_and_input(a, tmp)
        methods = {}
        lanczos = os.path.join(tmp, "lanczos.mkv")
        ffmpeg("-i", low, "-vf", f"scale={cw}:{ch}:flags=lanczos", "-c:v", "libx264rgb",
               "-crf", "0", lanczos)
        methods["lanczos"] = lanczos
        costs = {}
        modes = ["off"] + ([a.temporal] if a.temporal and a.temporal != "off" else [])
        for preset in [p for p in a.presets.split(",") if p]:
            for mode in modes:
                name = preset if mode == "off" else f"{preset}, temporal {mode}"
                out = os.path.join(tmp, f"{preset}-{mode}.mkv")
                run = upscale(a, low, out, preset, mode)
                cost = re.search(r"stabiliser ([0-9.]+) ms/frame, ([0-9.]+)% of the model", run.stderr)
                if cost:
                    costs[name] = (float(cost.group(1)), float(cost.group(2)))
                methods[name] = out
        motion = Motion(truth)
        source_ew, _ = motion.scores(truth, truth)
        print(f"clip={os.path.basename(a.clip)} crop={cw}x{ch} scale={s} frames={len(truth)}"
              f" source E_warp x1e3={source_ew:.3f}")
        print("| method | PSNR-Y | SSIM-Y | detail | E_warp x1e3 | added | flicker residual x1e3 |"
              " mean Y shift |")
        print("|---|---|---|---|---|---|---|---|")
        scores = {}
        for name, path in methods.items():
            out = read_frames(path, cw, ch)
            if len(out) != len(truth):
                sys.exit(f"{name}: {len(out)} frames, expected {len(truth)}")
            ys = [(luma(o), luma(g)) for o, g in zip(out, truth)]
            p = np.mean([psnr(o, g) for o, g in ys])
            q = np.mean([ssim(o, g) for o, g in ys])
            hf = np.mean([detail(o) for o, _ in ys])
            ew, fl = motion.scores(out, truth)
            shift = np.mean([np.mean(o - g) for o, g in ys])
            scores[name] = (p, hf, fl)
            print(f"| {name} | {p:.2f} | {q:.3f} | {hf:.3f} | {ew:.3f} | {ew - source_ew:+.3f}"
                  f" | {fl:.3f} | {shift:+.2f} |", flush=True)
        if len(modes) > 1:
            print()
            print("| preset | flicker ratio (<= 0.5) | PSNR-Y change (>= -0.2) |"
                  " detail ratio (>= 0.95) | stabiliser ms/frame | % of model time (<= 10) |")
            print("|---|---|---|---|---|---|")
            for preset in [p for p in a.presets.split(",") if p]:
                name = f"{preset}, temporal {modes[1]}"
                (p0, hf0, fl0), (p1, hf1, fl1) = scores[preset], scores[name]
                ms, share = costs.get(name, (float("nan"), float("nan")))
                print(f"| {preset} | {fl1 / fl0:.2f} | {p1 - p0:+.2f} | {hf1 / hf0:.3f} | {ms:.1f}"
                      f" | {share:.1f} |", flush=True)


if __name__ == "__main__":
    main()
