"""The development loop tells the truth (issues 11 and 12): a user's successive `mlpipe run`s on one
state dir, the first two of them SIGKILLed.

One fixture runs the loop once, in its own dataset, state dir and registry (quick profile, data slices,
60 steps per iteration):

K1. a fresh run (a subprocess, as `mlpipe run`, in its own process group) SIGKILLed 2 s inside Transform;
K2. the same command again, SIGKILLed 2 s inside the Trainer; after each kill ML Metadata must hold no
   artifact of an unfinished execution (TFX publishes outputs only when an execution completes) and the
   registry nothing; each resume reuses exactly what finished and re-runs what was killed;
A. the same command once more, to the end (v1), while a second `mlpipe run` on the same state dir is
   started and must be refused at once, naming run A (the kernel dropped the killed runs' lock);
B. an idle re-run: the Trainer is cached, the Evaluator blesses the model against itself (v1 is the
   baseline) — the Pusher must not make it v2: "already serving as v1";
C. the same again: every component cached, and the summary says "nothing new";
D. an edit to `models/preprocessing.py` (in a copy of the source tree the code fingerprint reads): Transform
   and Trainer must re-run, ExampleGen stays cached;
E. `mnist.valid` reloaded with one label changed and the same row count: ExampleGen must re-run.

D and E train with fewer steps per iteration (the Trainer re-runs in both anyway) to keep the loop short.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2

from mlpipe.metadata.graph import MetadataGraph, open_store
from mlpipe.metadata.runs import RunRecord
from tests.e2e.conftest import QUICK_ROWS, quick_config, with_search

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 3600
STEPS_PER_ITERATION = 60  # every run of the loop (K1, K2, A, B, C): the same config, so B and C can be cached
UPSTREAM = ("LocalBigQueryExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator")


@dataclass
class Loop:
    settings: object
    first_stdout: str = ""
    refused: subprocess.CompletedProcess | None = None
    refused_while_first_alive: bool = False
    first_pid: int | None = None
    # After each kill: the killed run's component states, the ids of artifacts MLMD holds as output of an
    # execution that did not finish, and the files under the registry root.
    killed: dict[str, dict[str, str]] = field(default_factory=dict)
    unfinished_outputs: dict[str, list[int]] = field(default_factory=dict)
    registry_files: dict[str, list[str]] = field(default_factory=dict)
    first_states: dict[str, str] = field(default_factory=dict)
    records: dict[str, RunRecord] = field(default_factory=dict)
    summaries: dict[str, str] = field(default_factory=dict)
    versions_after: dict[str, list[str]] = field(default_factory=dict)


def _versions(settings) -> list[str]:
    from mlpipe.registry import open_registry

    registry = open_registry(settings.registry_location, settings.model_name)
    return [v.name for v in registry.list_versions()] if registry.exists() else []


def _cli(settings) -> list[str]:
    return [sys.executable, "-m", "mlpipe.cli", "run", "--profile", "quick",
            "--state-dir", str(settings.state_dir), "--dataset", settings.dataset,
            "--bq-port", str(settings.bq_port), "--bq-grpc-port", str(settings.bq_grpc_port),
            "--steps-per-iteration", str(STEPS_PER_ITERATION)]


def _start(settings) -> subprocess.Popen:
    # Its own process group, so a kill reaches anything the run started.
    return subprocess.Popen(_cli(settings), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _kill_inside(proc: subprocess.Popen, output_dir: Path, timeout: float = 600) -> None:
    """SIGKILL the run 2 s after `output_dir` (made when the component starts executing) appears."""
    deadline = time.monotonic() + timeout
    while not output_dir.exists():
        assert proc.poll() is None, f"the run ended before {output_dir.name} started: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"{output_dir} never appeared"
        time.sleep(0.2)
    time.sleep(2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
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


def _kill(loop: Loop, name: str, cfg, output_dir: Path) -> None:
    _kill_inside(_start(cfg.settings), output_dir)
    loop.killed[name] = _last_run(cfg)
    loop.unfinished_outputs[name] = _artifacts_of_unfinished_executions(cfg)
    loop.registry_files[name] = _registry_files(cfg)


def _wait_for_lock(settings, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"run A ended before it took the lock: {proc.communicate()}")
        path = settings.run_lock_file
        if path.exists() and f'"pid": {proc.pid}' in path.read_text():
            return
        time.sleep(0.2)
    raise AssertionError("run A never took the run lock")


def _source_copy(tmp: Path) -> Path:
    """A copy of the packages the code fingerprint reads, to edit without touching the checkout."""
    root = tmp / "src"
    for pkg in ("models", "pipeline", "mlpipe"):
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _run(loop: Loop, name: str, cfg) -> RunRecord:
    from mlpipe.lineage.render import run_summary_text
    from pipeline.local_run import run_local

    record = run_local(cfg, run_id=f"dev-loop-{name}")
    loop.records[name] = record
    loop.summaries[name] = run_summary_text(record)
    loop.versions_after[name] = _versions(cfg.settings)
    return record


@pytest.fixture(scope="module")
def loop(bq_settings, tmp_path_factory, monkeypatch_module) -> Loop:
    from mlpipe.bigquery.load import load_mnist_tables, load_table
    from pipeline import code_fingerprint

    settings = bq_settings.replace(dataset="mnist_devloop", state_dir=tmp_path_factory.mktemp("devloop-state"))
    load_mnist_tables(settings, limit=QUICK_ROWS)
    loop = Loop(settings)
    cfg = with_search(quick_config(settings), max_iteration_steps=STEPS_PER_ITERATION)

    # K1, K2: killed inside Transform, then (resumed) inside the Trainer.
    _kill(loop, "Transform", cfg, cfg.pipeline_root / "Transform" / "transform_graph")
    _kill(loop, "Trainer", cfg, cfg.pipeline_root / "Trainer" / "model_run")

    # A, resumed to the end, with a second run attempted while A holds the state dir.
    first = _start(settings)
    try:
        _wait_for_lock(settings, first)
        loop.first_pid = first.pid
        loop.refused = subprocess.run(_cli(settings), cwd=REPO, capture_output=True, text=True, timeout=300)
        loop.refused_while_first_alive = first.poll() is None
        out, err = first.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 0, err[-3000:]
    loop.first_stdout = out
    loop.first_states = _last_run(cfg)
    loop.versions_after["A"] = _versions(settings)

    _run(loop, "B", cfg)  # idle re-run
    _run(loop, "C", cfg)  # idle again: fully cached

    # D: an edit to the preprocessing code (pixels / 127.5 instead of / 255.0), seen through the fingerprint.
    src = _source_copy(tmp_path_factory.mktemp("devloop-src"))
    prep = src / "models" / "preprocessing.py"
    text = prep.read_text()
    assert "255.0" in text
    prep.write_text(text.replace("255.0", "127.5"))
    monkeypatch_module.setattr(code_fingerprint, "REPO_ROOT", src)
    short = with_search(cfg, max_iteration_steps=40)
    _run(loop, "D", short)

    # E: the same code, `valid` reloaded with one label changed in the slice the quick profile reads.
    import numpy as np

    from mlpipe.bigquery.load import split_to_arrow
    from mlpipe.data.mnist_source import load_mnist

    valid = load_mnist()["valid"]
    table = split_to_arrow(valid, QUICK_ROWS)
    labels = np.asarray(table.column("label")).copy()
    labels[0] = (labels[0] + 1) % 10
    table = table.set_column(1, "label", __import__("pyarrow").array(labels))
    load_table(settings, "valid", table)
    _run(loop, "E", short)
    return loop


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _states(record: RunRecord) -> dict[str, str]:
    return {c.component: c.state for c in record.components}


# ---- issue 12, item 3: killed runs leave nothing half-finished; a resume re-runs exactly what was killed ----

def test_killed_during_transform_leaves_nothing_half_finished(loop):
    states = loop.killed["Transform"]
    assert all(states[c] == "complete" for c in UPSTREAM), states
    assert states["Transform"] == "running", states  # what a killed execution stays as
    assert not {"Trainer", "Evaluator", "Pusher"} & set(states), states
    assert loop.unfinished_outputs["Transform"] == []
    assert loop.registry_files["Transform"] == []


def test_resume_reuses_upstream_and_reruns_transform_then_killed_in_trainer(loop):
    states = loop.killed["Trainer"]
    assert all(states[c] == "cached" for c in UPSTREAM), states
    assert states["Transform"] == "complete" and states["Trainer"] == "running", states
    assert not {"Evaluator", "Pusher"} & set(states), states
    assert loop.unfinished_outputs["Trainer"] == []
    assert loop.registry_files["Trainer"] == []


def test_second_resume_reuses_transform_reruns_the_trainer_and_pushes_v1(loop):
    states = loop.first_states
    assert all(states[c] == "cached" for c in (*UPSTREAM, "Transform")), states
    assert all(states[c] == "complete" for c in ("Trainer", "Evaluator", "Pusher")), states
    from mlpipe.registry import open_registry

    registry = open_registry(loop.settings.registry_location, loop.settings.model_name)
    assert loop.versions_after["A"] == ["v1"] and registry.resolve().name == "v1"


# ---- 4. one run per state dir; each run summarizes its own run id ------------------------------------

def test_second_run_is_refused_while_the_first_runs(loop):
    assert loop.refused_while_first_alive, "the second run ended only after the first"
    assert loop.refused.returncode != 0
    assert f"another run (pid {loop.first_pid}, started " in loop.refused.stderr, loop.refused.stderr
    assert "Traceback" not in loop.refused.stderr
    assert loop.versions_after["A"] == ["v1"]  # one push, not two


def test_each_run_reports_its_own_run_id(loop):
    for name in "BCDE":
        assert loop.records[name].run_id == f"dev-loop-{name}"
        assert loop.summaries[name].splitlines()[0] == f"run dev-loop-{name}"
    assert "pushed to                 : v1" in loop.first_stdout


# ---- 3. no phantom versions ---------------------------------------------------------------------------

def test_idle_rerun_does_not_push_the_same_model_again(loop):
    b = loop.records["B"]
    assert _states(b)["Trainer"] == "cached" and _states(b)["Pusher"] == "complete"
    assert b.blessed is True
    assert loop.versions_after["B"] == ["v1"]
    assert b.pushed_version is None and b.already_version == "v1" and b.already_default
    assert "already serving as v1" in b.outcome
    assert "already serving as v1" in loop.summaries["B"]


def test_lineage_works_for_every_version(loop):
    from mlpipe.lineage.report import lineage_of_artifact, lineage_of_version
    from mlpipe.metadata.graph import MetadataGraph
    from mlpipe.registry import open_registry

    s = loop.settings
    graph = MetadataGraph.open(s.metadata_path, s.pipeline_name)
    registry = open_registry(s.registry_location, s.model_name)
    for v in registry.list_versions():
        report = lineage_of_version(graph, registry, v.name)
        assert report.model.artifact_id == v.metadata.model_artifact_id
        by_artifact = lineage_of_artifact(graph, registry, v.metadata.model_artifact_id)
        assert by_artifact.registry is not None and by_artifact.registry.version == v.name


# ---- 6. the summary says what it compared, and when nothing is new --------------------------------------

def test_fully_cached_run_says_nothing_new(loop):
    c = loop.records["C"]
    computed = {k: v for k, v in _states(c).items() if k != "baseline_resolver"}  # a resolver always runs
    assert set(computed.values()) == {"cached"}, _states(c)
    assert c.nothing_new and "nothing new" in loop.summaries["C"]
    assert not loop.records["B"].nothing_new and "nothing new" not in loop.summaries["B"]


def test_summary_names_the_evaluation_rows(loop):
    b = loop.records["B"]
    assert b.eval_splits == ("test",) and b.eval_rows == 1000
    assert "evaluated on              : split test, 1,000 rows" in loop.summaries["B"]
    assert b.baseline_model_id == b.model_artifact_id  # v1 against itself


# ---- 1. code changes are seen ---------------------------------------------------------------------------

def test_preprocessing_edit_reruns_transform_and_downstream(loop):
    d = _states(loop.records["D"])
    assert d["LocalBigQueryExampleGen"] == "cached" and d["StatisticsGen"] == "cached"
    assert d["Transform"] == "complete" and d["Trainer"] == "complete" and d["Evaluator"] == "complete"


# ---- 2. data changes are seen ---------------------------------------------------------------------------

def test_reload_with_same_row_count_reruns_example_gen(loop):
    e = _states(loop.records["E"])
    assert e["LocalBigQueryExampleGen"] == "complete", e
    assert e["Transform"] == "complete" and e["Trainer"] == "complete"
    assert len(loop.versions_after["E"]) == len(set(loop.versions_after["E"]))
