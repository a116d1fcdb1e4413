#!/usr/bin/env python3
"""How far any stabiliser of our kind can take the quality benchmark's flicker residual: an
oracle that knows the benchmark's own motion and occlusion mask (DIS flow on the
full-resolution truth, which no stabiliser sees) blends each preset's output over time, and
the flicker residual left is compared with the unstabilised output's, as issue 19's bar does.

Usage:
    python3 tools/stabiliser_bound.py --clip CLIP.mp4 --vsr PATH_TO_VSR [--scale 2] \
        [--frames 60] [--crop 640x272] [--presets fast,balanced,quality]

Rows per preset:
  * base B: the source enlarged by plain interpolation (Catmull-Rom cubic, Lanczos-3), alone;
  * detail blend: B plus the model's detail (output - B) blended recursively with the moved
    previous detail (share 0.8, cubic warp) wherever the benchmark's mask holds: what
    `--temporal` does, with perfect motion and perfect trust;
  * whole-frame blend: the whole output blended the same way (what most tools do).
Once the detail is held still, what flickers is the base (the source's aliasing, enlarged):
the detail blend's residual lands on the base's own, whatever the share. Both are scored
exactly as `tools/bench_quality.py` scores them.
"""

import os
import tempfile

import cv2
import numpy as np

from bench_quality import (Motion, clip_arguments, detail, luma, psnr, read_frames,
                           truth_and_input, upscale)


def kernel(name):
    """A resampling kernel and its radius in source pixels."""
    if name == "cubic":  # Catmull-Rom: the stabiliser's base before Lanczos-3
        def k(x):
            x = np.abs(x)
            return np.where(x < 1, 1.5 * x ** 3 - 2.5 * x ** 2 + 1,
                            np.where(x < 2, -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2, 0))
        return k, 2
    return (lambda x: np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0)), 3


def resize_matrix(n_out, n_in, scale, name):
    """Rows of weights mapping `n_in` samples to `n_out`, pixel centres aligned, edges
    repeated, each row normalised."""
    k, r = kernel(name)
    m = np.zeros((n_out, n_in), np.float32)
    for o in range(n_out):
        at = (o + 0.5) / scale - 0.5
        for i in range(int(np.floor(at)) - r + 1, int(np.floor(at)) + r + 1):
            m[o, min(max(i, 0), n_in - 1)] += k(at - i)
        m[o] /= m[o].sum()
    return m


def main():
    a = clip_arguments(__doc__.split("\n\n")[0]).parse_args()
    s = a.scale
    with tempfile.TemporaryDirectory() as tmp:
        cw, ch, truth, low = truth_and_input(a, tmp)
        source = read_frames(low, cw // s, ch // s).astype(np.float32)
        outputs = {}
        for preset in [p for p in a.presets.split(",") if p]:
            out = os.path.join(tmp, f"{preset}.mkv")
            upscale(a, low, out, preset, "off")
            outputs[preset] = read_frames(out, cw, ch).astype(np.float32)
    motion = Motion(truth)

    def blend(frames, share):
        done = [frames[0]]
        for t in range(1, len(frames)):
            mx, my, mask = motion.pairs[t - 1]
            moved = cv2.remap(done[-1], mx, my, cv2.INTER_CUBIC)
            done.append(frames[t] + share * mask[..., None] * (moved - frames[t]))
        return np.stack(done)

    def score(frames):
        frames = np.clip(np.round(frames), 0, 255).astype(np.uint8)
        _, flicker = motion.scores(frames, truth)
        ys = [(luma(o), luma(g)) for o, g in zip(frames, truth)]
        return (flicker, np.mean([psnr(o, g) for o, g in ys]),
                np.mean([detail(o) for o, _ in ys]))

    print(f"clip={os.path.basename(a.clip)} crop={cw}x{ch} scale={s} frames={len(truth)}")
    print("| preset | variant | flicker residual x1e3 | flicker ratio | PSNR-Y | detail ratio |")
    print("|---|---|---|---|---|---|")
    bases = {}
    for name in ["cubic", "lanczos3"]:
        rows = resize_matrix(ch, ch // s, s, name)
        columns = resize_matrix(cw, cw // s, s, name)
        planar = np.matmul(np.matmul(rows, source.transpose(0, 3, 1, 2)), columns.T)
        bases[name] = planar.transpose(0, 2, 3, 1)
    for preset, out in outputs.items():
        f0, p0, d0 = score(out)
        rows = [("as drawn", out), ("whole-frame blend", blend(out, 0.8))]
        for name, base in bases.items():
            rows += [(f"{name} base alone", base),
                     (f"{name} base + detail blend", base + blend(out - base, 0.8))]
        for variant, frames in rows:
            f, p, d = score(frames)
            print(f"| {preset} | {variant} | {f:.3f} | {f / f0:.2f} | {p:.2f} | {d / d0:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
