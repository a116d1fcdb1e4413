#!/usr/bin/env bash
# Seeds the corpus with every real model's .param (with and without its weights) and a tiny
# complete model. Usage: fuzz/seed.sh MODELS_DIR
set -euo pipefail
models=${1:?models dir}
corpus="$(dirname "$0")/corpus/load_model"
mkdir -p "$corpus"
for p in "$models"/*.param; do
    n=$(basename "$p" .param)
    { cat "$p"; printf '\0'; } > "$corpus/$n-param-only"
    # Small models whole, so mutations reach the executor.
    if [ "$(stat -c %s "${p%.param}.bin")" -lt 1500000 ]; then
        { cat "$p"; printf '\0'; cat "${p%.param}.bin"; } > "$corpus/$n-whole"
    fi
done
echo "seeded $(ls "$corpus" | wc -l) inputs into $corpus"
