#!/usr/bin/env bash
# Benchmark: the sandbox — one isolated command vs plain bash (sequential, 4 at a time), and
# listing/uploading into workspaces of 100, 1,000 and 10,000 files.
# Usage: scripts/bench-sandbox.sh [commands]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cortex-target}"
cargo run --release -q -p cortex --example sandbox_bench -- --commands "${1:-200}"
