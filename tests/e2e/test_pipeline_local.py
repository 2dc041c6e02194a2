"""The real pipeline (LocalDagRunner, MLMD SQLite, Beam DirectRunner) on a slice of real MNIST.

Tests run in order and build on each other, as a user's successive runs would: a first run blesses
and pushes; a deliberately weak second run passes a lowered floor but is below the first and is
rejected by the regression gate alone; corrupt data stops at ExampleValidator; nothing is pushed by
either.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from mlpipe import contract
from mlpipe.bigquery.load import ARROW_SCHEMA, load_table
from mlpipe.bigquery.read import read_table_numpy
from mlpipe.errors import ServiceUnavailable
from mlpipe.metadata.graph import MetadataGraph, node_id, open_store
from pipeline.local_run import PipelineFailed, run_local
from tests.e2e.conftest import quick_config, with_search

pytestmark = pytest.mark.e2e

ALL_NODES = {
    "LocalBigQueryExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform",
    "Trainer", "baseline_resolver", "Evaluator", "Pusher",
}  # fmt: skip

RESULTS: dict[str, object] = {}


def pushed_models(cfg) -> list:
    from mlpipe.registry import registry_for

    registry = registry_for(cfg.settings)
    return [str(v.saved_model_dir) for v in registry.list_versions()] if registry.exists() else []


def test_first_run_executes_every_component_and_pushes(pipeline_state):
    cfg = quick_config(pipeline_state)
    summary = run_local(cfg)
    assert {c.component for c in summary.components} == ALL_NODES
    assert all(c.state == "complete" for c in summary.components), summary.components
    store = open_store(str(cfg.metadata_path))
    for execution in store.get_executions():
        if execution.last_known_state == metadata_store_pb2.Execution.COMPLETE:
            assert node_id(store, execution) in ALL_NODES
    assert summary.accuracy is not None and summary.accuracy >= cfg.accuracy_floor
    assert summary.baseline_accuracy is None  # first run: the floor alone decides
    # The test split never reaches the Trainer: it reads Transform's output, which has train and eval
    # only, and trains/selects on those; the test split goes to the Evaluator alone.
    trainer = next(c for c in summary.components if c.component == "Trainer")
    (examples,) = [link.artifact_id for link in trainer.inputs if link.key == "examples"]
    (artifact,) = store.get_artifacts_by_id([examples])
    assert json.loads(artifact.properties["split_names"].string_value) == ["train", "eval"]
    assert sorted(p.name for p in Path(artifact.uri).iterdir()) == ["Split-eval", "Split-train"]
    (execution,) = store.get_executions_by_id([trainer.execution_id])
    assert json.loads(execution.custom_properties["train_args"].string_value)["splits"] == ["train"]
    assert json.loads(execution.custom_properties["eval_args"].string_value)["splits"] == ["eval"]
    assert summary.blessed is True
    pushed = pushed_models(cfg)
    assert len(pushed) == 1 and summary.pushed_destination == pushed[0]
    # The search report and its plots travel with the version; the test section matches TFMA.
    report_dir = Path(pushed[0]) / "assets.extra" / "search"
    report = json.loads((report_dir / "search_report.json").read_text())
    assert len(report["iterations"]) == cfg.training.search.max_iterations
    assert report["final_ensemble"]["members"]
    assert report["test"]["accuracy"] == pytest.approx(summary.accuracy, abs=1e-6)
    for plot in ("accuracy_per_iteration.png", "confusion_matrix.png"):
        assert (report_dir / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    RESULTS["first"] = summary


def test_pushed_model_on_raw_pixels_reproduces_evaluator_accuracy(pipeline_state):
    first = RESULTS["first"]
    cfg = quick_config(pipeline_state)
    _, labels, images = read_table_numpy(pipeline_state, "test")
    n = cfg.row_limits["test"]
    model = tf.saved_model.load(first.pushed_destination)
    out = model.signatures[contract.SERVING_SIGNATURE](image=tf.constant(images[:n], tf.float32))
    predicted = out["class_ids"].numpy().reshape(-1)
    accuracy = float(np.mean(predicted == labels[:n]))
    assert accuracy == pytest.approx(first.accuracy, abs=1e-6)
    # 28×28 pixels as ints give the same answer: normalization lives in the model.
    again = model.signatures[contract.SERVING_SIGNATURE](image=tf.constant(images[:5].astype(np.float32)))
    assert np.array_equal(again["class_ids"].numpy().reshape(-1), predicted[:5])


def test_model_above_floor_but_below_baseline_is_not_blessed_not_pushed(pipeline_state):
    """The regression gate alone: the floor is lowered to 0 so only the baseline can refuse the model."""
    from mlpipe.registry import registry_for

    first = RESULTS["first"]
    base = quick_config(pipeline_state)
    weak = dataclasses.replace(with_search(base, max_iteration_steps=1, max_iterations=1), accuracy_floor=0.0)
    assert weak.regression_tolerance == 0.0
    summary = run_local(weak)
    states = {c.component: c.state for c in summary.components}
    assert states["LocalBigQueryExampleGen"] == "cached" and states["Transform"] == "cached"
    assert states["Trainer"] == "complete" and states["Evaluator"] == "complete"
    assert summary.accuracy >= weak.accuracy_floor  # passes the floor ...
    assert summary.baseline_accuracy == pytest.approx(first.accuracy)
    assert summary.accuracy < first.accuracy  # ... but is below the baseline
    assert summary.blessed is False and summary.pushed_destination is None
    assert "< baseline" in summary.outcome and "floor" not in summary.outcome, summary.outcome
    assert len(pushed_models(weak)) == 1
    assert registry_for(weak.settings).resolve().name == "v1"  # the default did not move
    RESULTS["weak"] = summary


def test_corrupt_rows_stop_at_example_validator(pipeline_state):
    bad = pipeline_state.replace(dataset="mnist_corrupt")
    from mlpipe.bigquery.load import ensure_dataset, split_to_arrow
    from mlpipe.data.mnist_source import load_mnist

    ensure_dataset(bad)
    data = load_mnist()
    for name in ("train", "valid", "test"):
        rows = split_to_arrow(data[name], limit=1000).to_pylist()
        if name == "train":
            rows[3]["image"][100] = 300  # pixel out of range
            rows[4]["image"] = rows[4]["image"][:783]  # one pixel short
            rows[5]["label"] = 11  # no such class
        import pyarrow as pa

        load_table(bad, name, pa.Table.from_pylist(rows, schema=ARROW_SCHEMA))
    cfg = quick_config(bad)
    with pytest.raises(PipelineFailed) as failure:
        run_local(cfg)
    message = str(failure.value)
    assert "\n" not in message and "anomal" in message
    # MLMD: the run stopped at ExampleValidator; nothing after it (Transform, Trainer, ...) ran.
    graph = MetadataGraph.open(cfg.metadata_path, cfg.pipeline_name)
    states = {e.component: e.state for e in graph.run_executions(graph.run_ids()[-1])}
    assert states["ExampleValidator"] == "failed", states
    assert not {"Transform", "Trainer", "Evaluator", "Pusher"} & set(states), states
    assert "image" in message and "label" in message
    assert len(pushed_models(cfg)) == 1  # still only the first run's model


def test_bigquery_down_names_the_endpoint(pipeline_state):
    down = pipeline_state.replace(bq_port=1)  # nothing listens on port 1
    with pytest.raises(ServiceUnavailable, match="127.0.0.1:1"):
        run_local(quick_config(down))


def test_a_second_blessed_run_reuses_the_data_and_is_pushed_as_v2(pipeline_state):
    """(Killed runs and their resumes: tests/e2e/test_dev_loop.py.)"""
    cfg = quick_config(pipeline_state)
    summary = run_local(dataclasses.replace(with_search(cfg, max_iteration_steps=120), regression_tolerance=1.0))
    states = {c.component: c.state for c in summary.components}
    for reused in ("LocalBigQueryExampleGen", "StatisticsGen", "ExampleValidator", "Transform"):
        assert states[reused] == "cached", states
    assert states["Trainer"] == "complete" and summary.blessed is True
    pushed = pushed_models(cfg)
    assert len(pushed) == 2 and summary.pushed_destination == pushed[1]
    registry_dir = Path(cfg.settings.registry_location) / cfg.model_name
    assert sorted(p.name for p in (registry_dir / "versions").iterdir()) == ["v1", "v2"]
    RESULTS["second"] = summary


def test_baseline_follows_the_registry_default_after_rollback(pipeline_state):
    from mlpipe.registry import registry_for

    first = RESULTS["first"]
    cfg = quick_config(pipeline_state)
    registry = registry_for(cfg.settings)
    assert registry.resolve().name == "v2"
    registry.set_default("v1")  # roll back
    rerun = dataclasses.replace(with_search(cfg, seed=7), promote=False, regression_tolerance=1.0)
    summary = run_local(rerun)
    # The Evaluator's baseline is v1's Model artifact (MLMD), not v2's: accuracies could tie.
    second = RESULTS["second"]
    assert first.model_artifact_id != second.model_artifact_id
    assert registry.get("v1").metadata.model_artifact_id == first.model_artifact_id
    evaluator = next(c for c in summary.components if c.component == "Evaluator")
    baseline = [link.artifact_id for link in evaluator.inputs if link.key == "baseline_model"]
    assert baseline == [first.model_artifact_id]
    assert summary.baseline_accuracy == pytest.approx(first.accuracy)
    assert registry.resolve().name == "v1"  # --no-promote keeps the rolled-back default
    assert [v.name for v in registry.list_versions()] == ["v1", "v2", "v3"]
