#!/usr/bin/env bash
# The main job on embedded defaults: BigQuery service → MNIST loaded → full pipeline → serving check.
set -euo pipefail
cd "$(dirname "$0")/.."
MLPIPE=.venv/bin/mlpipe

started_here=0
if ! $MLPIPE bq status 2>/dev/null | grep -q "^state *: running"; then
  $MLPIPE bq start
  started_here=1
fi
cleanup() { if [[ $started_here == 1 ]]; then $MLPIPE bq stop >/dev/null; fi; }
trap cleanup EXIT

t0=$SECONDS
$MLPIPE load-data --if-needed --replace
$MLPIPE data-summary
$MLPIPE run "$@"
$MLPIPE models list
$MLPIPE serving-check --count 10
echo "make run: done in $((SECONDS - t0)) s (after setup)"
echo "next: 'source .venv/bin/activate' puts mlpipe on your PATH (or call .venv/bin/mlpipe); then e.g."
echo "      mlpipe lineage · mlpipe runs list · mlpipe serve --port 8080 · mlpipe --help"
