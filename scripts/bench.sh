#!/usr/bin/env bash
# Run every benchmark, one at a time; each rewrites its own section of BENCHMARKS.md, so one
# `make bench` regenerates every figure there. QUICK=1 runs each script's --quick mode (small data,
# short budgets) and writes BENCHMARKS.quick.md instead, leaving BENCHMARKS.md alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
quick=()
if [[ ${QUICK:-0} == 1 ]]; then quick=(--quick); fi

work=$(mktemp -d -t bench-XXXXXX)
trap 'rm -rf "$work"' EXIT

# ONLY="data pipeline ..." runs just the named benchmarks (bench/bench_NAME.py); the others keep their
# sections (serving and calibration measure the model of `pipeline`, so name it with them).
wanted() { [[ -z ${ONLY:-} ]] || [[ " $ONLY " == *" $1 "* ]]; }
step() {
  local name; name=$(basename "$2" .py); name=${name#bench_}
  wanted "$name" || { echo "== skip $name (ONLY=$ONLY)"; return 0; }
  echo "== $*  (load average $(cut -d' ' -f1-3 /proc/loadavg))"; "$@"
}

step $PY bench/bench_data.py "${quick[@]}"
# The pipeline run keeps its state dir: its registry's v1 is the real model the serving bench serves.
step $PY bench/bench_pipeline.py "${quick[@]}" --keep "$work/pipeline"
profile=full; [[ ${QUICK:-0} == 1 ]] && profile=quick
step $PY bench/bench_serving.py "${quick[@]}" \
  --model-dir "$work/pipeline/registry/mnist/versions/v1/saved_model" \
  --model-label "the ${profile}-profile pipeline's model from bench_pipeline.py (registry v1, the AdaNet ensemble)"
step $PY bench/bench_calibration.py "${quick[@]}" \
  --model-dir "$work/pipeline/registry/mnist/versions/v1/saved_model"
# Old code path beside the new one in the same run (CPU seconds beside wall time).
step $PY bench/bench_speed_cli.py "${quick[@]}"
step $PY bench/bench_speed_example_gen.py "${quick[@]}"
step $PY bench/bench_speed_serving_parse.py "${quick[@]}"
step $PY bench/bench_speed_trainer.py "${quick[@]}"
step $PY bench/bench_console.py "${quick[@]}"
step $PY bench/bench_soak.py "${quick[@]}"
step $PY bench/bench_flywheel.py "${quick[@]}"
# Cold run vs warm retrain on new feedback, Trainer time and its phases side by side (full profile
# unless QUICK=1: on the quick profile fixed costs hide what a warm start saves).
step $PY bench/bench_warm_start.py "${quick[@]}"
step $PY bench/bench_make_run.py "${quick[@]}"
# Issue 17's table: the commit it was measured on beside HEAD, each in a fresh clone (~30 min).
step $PY bench/bench_before_after.py "${quick[@]}"
step $PY bench/bench_automl.py "${quick[@]}"
