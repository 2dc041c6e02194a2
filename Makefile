# mnist-automl-pipeline — the two commands are `make run` and `make test`.
SHELL := /bin/bash
MLPIPE := .venv/bin/mlpipe
PY := .venv/bin/python
# Test modules (and the modules sharing a pipeline fixture) spread over both cores: tests/conftest.py.
TEST_WORKERS ?= 2

.PHONY: help setup run test test-unit lint bench flywheel-demo lock function-lock serve bq-start bq-stop bq-status clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

setup:  ## create .venv (TFX stack) and .venv-bq (BigQuery emulator); idempotent
	@bash scripts/setup.sh

run: setup  ## set up, start BigQuery, load MNIST, run the pipeline, print the summary
	@bash scripts/run.sh $(ARGS)

test: setup  ## the whole test suite on $(TEST_WORKERS) workers (TEST_WORKERS=0: one process)
	@bash scripts/test.sh tests $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup)

test-unit: setup  ## fast tests only
	@bash scripts/test.sh tests -m "not e2e"

lint: setup  ## ruff
	@.venv/bin/ruff check .

bench: setup  ## run every benchmark, one at a time, and rewrite BENCHMARKS.md (QUICK=1: smoke run → BENCHMARKS.quick.md; ONLY="names")
	@QUICK=$(QUICK) ONLY="$(ONLY)" bash scripts/bench.sh

flywheel-demo: setup  ## the feedback loop end to end in its own state dir: drift → labels → retrain → canary → promote
	@$(PY) scripts/flywheel_demo.py

lock:  ## re-resolve requirements.in → requirements.lock with uv
	.venv/bin/uv pip compile --python-version 3.10 --python-platform x86_64-manylinux_2_28 \
	  requirements.in -o requirements.lock

function-lock:  ## re-resolve requirements-function.in → requirements-function.lock (the Cloud Function, python311)
	.venv/bin/uv pip compile --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  requirements-function.in -o requirements-function.lock

serve: setup  ## serve the registry's models on http://127.0.0.1:8080 (ml v1 + TF Serving REST)
	@$(MLPIPE) serve --port 8080

bq-start: setup  ## start the local BigQuery service
	@$(MLPIPE) bq start
bq-stop:  ## stop the local BigQuery service
	@$(MLPIPE) bq stop
bq-status:  ## endpoint, data dir and tables of the local BigQuery service
	@$(MLPIPE) bq status

clean:  ## stop services and delete the state directory (.mlpipe)
	-@$(MLPIPE) bq stop
	rm -rf .mlpipe
