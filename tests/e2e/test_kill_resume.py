"""A fresh pipeline SIGKILLed during Transform, resumed and SIGKILLed during the Trainer, resumed again.

Each kill lands inside the named component (its output directory exists and the run is still alive).
After each kill ML Metadata holds no artifact of an unfinished execution (TFX publishes outputs only
when an execution completes) and the registry holds nothing; each resume reuses exactly what finished
and re-runs what was killed; the last one pushes v1. The kernel drops the run lock of a killed run, so
no resume is refused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2

from mlpipe.metadata.graph import MetadataGraph, open_store
from tests.e2e.conftest import quick_config

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = ("LocalBigQueryExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator")
STEPS = ("--steps-per-iteration", "60")


def _cmd(settings) -> list[str]:
    return [sys.executable, "-m", "mlpipe.cli", "run", "--profile", "quick", *STEPS,
            "--state-dir", str(settings.state_dir), "--dataset", settings.dataset,
            "--bq-port", str(settings.bq_port), "--bq-grpc-port", str(settings.bq_grpc_port)]


def _start(settings) -> subprocess.Popen:
    # Its own process group, so the kill reaches anything the run started.
    return subprocess.Popen(_cmd(settings), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _kill_inside(proc: subprocess.Popen, output_dir: Path, timeout: float = 600) -> None:
    """SIGKILL the run 2 s after `output_dir` (made when the component starts executing) appears."""
    deadline = time.monotonic() + timeout
    while not output_dir.exists():
        assert proc.poll() is None, f"the run ended before {output_dir.name} started: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"{output_dir} never appeared"
        time.sleep(0.2)
    time.sleep(2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _last_run(cfg) -> dict[str, str]:
    graph = MetadataGraph.open(cfg.metadata_path, cfg.pipeline_name)
    return {e.component: e.state for e in graph.run_executions(graph.run_ids()[-1])}


def _artifacts_of_unfinished_executions(cfg) -> list[int]:
    """Ids of artifacts recorded as output of an execution that did not complete (or was not cached)."""
    store = open_store(str(cfg.metadata_path))
    finished = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
    unfinished = [e.id for e in store.get_executions() if e.last_known_state not in finished]
    outputs = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.PENDING_OUTPUT)
    return [ev.artifact_id for ev in store.get_events_by_execution_ids(unfinished) if ev.type in outputs]


def _registry_files(cfg) -> list[str]:
    root = Path(cfg.settings.registry_location)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_killed_during_transform_then_trainer_resumes_what_was_killed(quick_data, tmp_path):
    settings = quick_data.replace(state_dir=tmp_path / "state")
    cfg = quick_config(settings)
    root = cfg.pipeline_root

    # 1. Killed during Transform: upstream finished, Transform did not, nothing after it started.
    _kill_inside(_start(settings), root / "Transform" / "transform_graph")
    states = _last_run(cfg)
    assert all(states[c] == "complete" for c in UPSTREAM), states
    assert states["Transform"] == "running", states  # what a killed execution stays as
    assert not {"Trainer", "Evaluator", "Pusher"} & set(states), states
    assert _artifacts_of_unfinished_executions(cfg) == []
    assert _registry_files(cfg) == []

    # 2. Resumed, killed during the Trainer: upstream reused, Transform re-ran and finished.
    _kill_inside(_start(settings), root / "Trainer" / "model_run")
    states = _last_run(cfg)
    assert all(states[c] == "cached" for c in UPSTREAM), states
    assert states["Transform"] == "complete" and states["Trainer"] == "running", states
    assert not {"Evaluator", "Pusher"} & set(states), states
    assert _artifacts_of_unfinished_executions(cfg) == []
    assert _registry_files(cfg) == []

    # 3. Resumed to the end: everything up to Transform reused, the Trainer re-ran, v1 pushed.
    done = subprocess.run(_cmd(settings), cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    states = _last_run(cfg)
    assert all(states[c] == "cached" for c in (*UPSTREAM, "Transform")), states
    assert all(states[c] == "complete" for c in ("Trainer", "Evaluator", "Pusher")), states
    from mlpipe.registry import registry_for

    registry = registry_for(cfg.settings)
    assert [v.name for v in registry.list_versions()] == ["v1"] and registry.resolve().name == "v1"
