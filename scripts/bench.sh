#!/usr/bin/env bash
# Run every benchmark; each rewrites its own section of BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
for script in bench/bench_*.py; do
  echo "== $script"
  .venv/bin/python "$script"
done
