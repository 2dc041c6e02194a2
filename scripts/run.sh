#!/usr/bin/env bash
# The main job on embedded defaults: BigQuery service → MNIST loaded → summary from BigQuery.
set -euo pipefail
cd "$(dirname "$0")/.."
MLPIPE=.venv/bin/mlpipe

started_here=0
if ! $MLPIPE bq status >/dev/null 2>&1 || ! $MLPIPE bq status | grep -q "^state *: running"; then
  $MLPIPE bq start
  started_here=1
fi
cleanup() { if [[ $started_here == 1 ]]; then $MLPIPE bq stop >/dev/null; fi; }
trap cleanup EXIT

$MLPIPE load-data --if-needed
$MLPIPE data-summary
$MLPIPE run
