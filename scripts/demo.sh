#!/usr/bin/env bash
# The whole flow on test_data, one command per step. Called by `make demo`.
set -euo pipefail
BIN=$1
OUT=$2
export PATH="$BIN:$PATH" WANDB_MODE=offline

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

rm -rf "$OUT"
step "installed plugins" moths-plugins
step "label hierarchy vs. the data" \
  moths-hierarchy test_data/hierarchy.csv --data test_data/source_a --min-samples 5
echo
echo "next: moths-prepare, moths-fit, moths-export and moths-infer join this demo as they land."
