"""Lineage after two real quick-profile runs: v1, then v2 evaluated against v1 as its baseline.

Every hop of the report is checked against what ML Metadata's own API returns (events, executions,
contexts), the row counts against BigQuery, and the JSON against the documented schema.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from mlpipe.bigquery.client import query_rows
from mlpipe.cli import main
from mlpipe.lineage import render, report
from mlpipe.metadata import runs
from mlpipe.metadata.graph import MetadataGraph, open_store
from mlpipe.registry import Registry, registry_for
from pipeline.queries import SPLIT_TABLES

pytestmark = pytest.mark.e2e

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "lineage.schema.json"
Event = metadata_store_pb2.Event
DIRECTIONS = {"input": (Event.INPUT, Event.DECLARED_INPUT), "output": (Event.OUTPUT, Event.DECLARED_OUTPUT)}


@pytest.fixture(scope="module")
def store(two_runs):
    return open_store(str(two_runs.config.metadata_path))


@pytest.fixture(scope="module")
def graph(two_runs) -> MetadataGraph:
    return MetadataGraph.open(two_runs.config.metadata_path, two_runs.config.pipeline_name)


@pytest.fixture(scope="module")
def registry(two_runs) -> Registry:
    return registry_for(two_runs.settings)


@pytest.fixture(scope="module")
def v2(graph, registry) -> report.LineageReport:
    return report.lineage_of_version(graph, registry)  # the serving default


def _producing_execution(store, artifact_id: int):
    """The execution that made the artifact: its OUTPUT event's execution that was not a cache hit."""
    events = [e for e in store.get_events_by_artifact_ids([artifact_id]) if e.type == Event.OUTPUT]
    executions = store.get_executions_by_id([e.execution_id for e in events])
    made = [x for x in executions if x.last_known_state == metadata_store_pb2.Execution.COMPLETE]
    assert len(made) == 1, (artifact_id, executions)
    return made[0]


def _input(store, execution_id: int, key: str) -> int:
    ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution_id])
           if e.type == Event.INPUT and e.path.steps[0].key == key]
    assert len(ids) == 1, (execution_id, key, ids)
    return ids[0]


def _output(store, execution_id: int, key: str) -> int:
    ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution_id])
           if e.type == Event.OUTPUT and e.path.steps[0].key == key]
    assert len(ids) == 1, (execution_id, key, ids)
    return ids[0]


def _run_of(store, execution_id: int) -> str:
    run_type = store.get_context_type("pipeline_run")
    return next(c.name for c in store.get_contexts_by_execution(execution_id) if c.type_id == run_type.id)


def test_default_version_is_v2_with_v1_as_its_baseline(v2, registry):
    v1_meta = registry.get("v1").metadata
    v2_meta = registry.get("v2").metadata
    assert v2.registry.version == "v2" and v2.registry.default
    assert v2.model.artifact_id == v2_meta.model_artifact_id
    assert v2.run_id == v2_meta.pipeline_run_id
    assert v2.push.pushed and v2.push.version == "v2"
    baseline = v2.evaluation.baseline
    assert baseline.registry_version == "v1"
    assert baseline.model.artifact_id == v1_meta.model_artifact_id
    assert baseline.run_id == v1_meta.pipeline_run_id
    assert baseline.accuracy == pytest.approx(v1_meta.test_accuracy)
    assert v2.evaluation.blessed is True and v2.evaluation.failures == ()
    assert v2.evaluation.metrics[report.ACCURACY] == pytest.approx(v2_meta.test_accuracy)


def test_names_the_three_bigquery_tables_and_their_row_counts(v2, two_runs):
    settings, limits = two_runs.settings, two_runs.config.row_limits
    expected = {split: settings.table_id(table) for split, table in SPLIT_TABLES.items()}
    assert v2.tables == list(expected.values())
    assert v2.statistics.num_examples == limits
    for source in v2.example_gen.splits:
        assert source.tables == (expected[source.split],)
        counted = query_rows(settings, f"SELECT COUNT(*) AS n FROM `{expected[source.split]}` "
                                       f"WHERE key < {limits[source.split]}")[0]["n"]
        assert source.rows == counted == limits[source.split]
        # A slice: the content fingerprint counts the rows read, not the table's (a whole-table read
        # reports them: tests/unit/test_lineage_fingerprint.py).
        assert source.table_rows is None


def test_every_hop_matches_ml_metadata(v2, store, two_runs):
    # Pusher: made the PushedModel, from this Model and the Evaluator's blessing.
    pusher = _producing_execution(store, v2.push.pushed_model.artifact_id)
    assert pusher.id == v2.push.execution.execution_id
    assert _input(store, pusher.id, "model") == v2.model.artifact_id
    pushed = store.get_artifacts_by_id([v2.push.pushed_model.artifact_id])[0]
    assert pushed.custom_properties["pushed_version"].string_value == v2.push.version
    # Evaluator: made the blessing the Pusher read; compared this Model with v1's.
    evaluator = _producing_execution(store, _input(store, pusher.id, "model_blessing"))
    assert evaluator.id == v2.evaluation.execution.execution_id
    assert _output(store, evaluator.id, "blessing") == v2.evaluation.blessing.artifact_id
    assert _output(store, evaluator.id, "evaluation") == v2.evaluation.evaluation.artifact_id
    assert _input(store, evaluator.id, "model") == v2.model.artifact_id
    assert _input(store, evaluator.id, "baseline_model") == v2.evaluation.baseline.model.artifact_id
    blessing = store.get_artifacts_by_id([v2.evaluation.blessing.artifact_id])[0]
    assert blessing.custom_properties["blessed"].int_value == 1
    # Trainer: made the Model from Transform's outputs.
    trainer = _producing_execution(store, v2.model.artifact_id)
    assert trainer.id == v2.training.execution.execution_id
    config = json.loads(trainer.custom_properties["custom_config"].string_value)["training"]
    search = config["search"]
    assert v2.training.config == config and search["max_iteration_steps"] == 120
    assert v2.training.train_steps == search["max_iteration_steps"] * search["max_iterations"]
    assert _output(store, trainer.id, "model_run") == v2.training.model_run.artifact_id
    # Transform: made the transform graph the Trainer read, from ExampleGen's Examples.
    transform = _producing_execution(store, _input(store, trainer.id, "transform_graph"))
    assert transform.id == v2.transform.execution.execution_id
    assert _input(store, trainer.id, "examples") == v2.transform.transformed_examples.artifact_id
    raw = _input(store, transform.id, "examples")
    # ExampleGen: made those Examples from the split queries in its input_config.
    example_gen = _producing_execution(store, raw)
    assert example_gen.id == v2.example_gen.execution.execution_id and raw == v2.example_gen.examples.artifact_id
    splits = json.loads(example_gen.custom_properties["input_config"].string_value)["splits"]
    assert [(s["name"], s["pattern"]) for s in splits] == [(s.split, s.query) for s in v2.example_gen.splits]
    # StatisticsGen and ExampleValidator: the statistics of those Examples, and their anomalies.
    statistics = _producing_execution(store, v2.statistics.statistics.artifact_id)
    assert statistics.id == v2.statistics.execution.execution_id
    assert _input(store, statistics.id, "examples") == raw
    validator = _producing_execution(store, v2.validation.anomalies.artifact_id)
    assert validator.id == v2.validation.execution.execution_id
    assert _input(store, validator.id, "statistics") == v2.statistics.statistics.artifact_id
    assert v2.validation.found == ()
    # Runs: the second run trained and pushed; the data steps are the first run's, reused from cache.
    first, second = two_runs.first.run_id, two_runs.second.run_id
    for execution, run in ((pusher, second), (evaluator, second), (trainer, second), (transform, first),
                           (validator, first), (statistics, first), (example_gen, first)):
        assert _run_of(store, execution.id) == run
    hops = (v2.push, v2.evaluation, v2.training, v2.transform, v2.validation, v2.statistics, v2.example_gen)
    for hop in hops:
        raw_execution = store.get_executions_by_id([hop.execution.execution_id])[0]
        assert hop.execution.run_id == _run_of(store, raw_execution.id)
        assert hop.execution.seconds == pytest.approx(
            (raw_execution.last_update_time_since_epoch - raw_execution.create_time_since_epoch) / 1000.0)


def test_every_edge_of_the_picture_is_an_mlmd_event(v2, store):
    checked = 0
    for edge in v2.graph.edges:
        if edge.kind not in ("data", "baseline"):
            continue
        src_kind, src_id = edge.source.split(":")
        dst_kind, dst_id = edge.target.split(":")
        if src_kind == "artifact":
            artifact_id, execution_id, directions = int(src_id), int(dst_id), DIRECTIONS["input"]
        else:
            artifact_id, execution_id, directions = int(dst_id), int(src_id), DIRECTIONS["output"]
        events = store.get_events_by_execution_ids([execution_id])
        assert any(e.artifact_id == artifact_id and e.type in directions and e.path.steps[0].key == edge.label
                   for e in events), edge
        checked += 1
    assert checked >= 20


def test_json_matches_the_documented_schema(v2, graph, registry):
    schema = json.loads(SCHEMA.read_text())
    v1 = report.lineage_of_version(graph, registry, version="v1")
    for lineage in (v2, v1):
        doc = json.loads(render.to_json(lineage.to_dict()))
        jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    assert v1.evaluation.baseline is None and v1.registry.version == "v1"


def test_cli_tree_json_dot_and_png(two_runs, v2, capsys, tmp_path):
    flags = ["--state-dir", str(two_runs.settings.state_dir), "--dataset", two_runs.settings.dataset,
             *two_runs.registry_flags]
    assert main(["lineage", *flags]) == 0
    tree = capsys.readouterr().out
    baseline_id = v2.evaluation.baseline.model.artifact_id
    assert tree.startswith(f"digits v2 (default): Model #{v2.model.artifact_id}")
    assert f"baseline: Model #{baseline_id} = registry v1" in tree
    order = [tree.index(f"└─ {c}  (") for c in ("Pusher", "Evaluator", "Trainer", "Transform", "ExampleValidator",
                                                 "StatisticsGen", "LocalBigQueryExampleGen")]
    assert order == sorted(order)
    for source in v2.example_gen.splits:
        assert f"{source.tables[0]}: {source.rows} rows" in tree

    assert main(["lineage", "v2", "--json", *flags]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(render.to_json(v2.to_dict()))

    assert main(["lineage", "--format", "dot", *flags]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph lineage {") and "baseline_model" in dot and "digits v1" in dot

    png = tmp_path / "lineage.png"
    assert main(["lineage", "--format", "png", "-o", str(png), *flags]) == 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_runs_push_to_the_model_and_registry_they_are_given(two_runs, registry):
    assert registry.model == "digits" and not registry.location.startswith(str(two_runs.settings.state_dir))
    assert [v.name for v in registry.list_versions()] == ["v1", "v2"]
    assert [r.pushed_destination for r in (two_runs.first, two_runs.second)] == [
        v.saved_model_uri for v in registry.list_versions()]
    assert not (two_runs.settings.state_dir / "registry").exists()  # nothing went to the default registry


def test_runs_list_and_show(graph, store, two_runs, capsys):
    found = runs.list_runs(graph)
    assert [r.run_id for r in found] == [two_runs.first.run_id, two_runs.second.run_id]
    assert [r.outcome for r in found] == ["pushed v1", "pushed v2"]
    assert all(r.status == "complete" for r in found)
    for record in found:
        ctx = store.get_context_by_type_and_name("pipeline_run", record.run_id)
        executions = {e.id: e for e in store.get_executions_by_context(ctx.id)}
        assert {c.execution_id for c in record.components} == set(executions)
        for c in record.components:
            raw = executions[c.execution_id]
            assert c.seconds == pytest.approx(
                (raw.last_update_time_since_epoch - raw.create_time_since_epoch) / 1000.0)
    second = {c.component: c.state for c in found[1].components}
    assert second["LocalBigQueryExampleGen"] == "cached" and second["Trainer"] == "complete"
    assert found[1].baseline_accuracy == pytest.approx(found[0].accuracy)

    flags = ["--state-dir", str(two_runs.settings.state_dir)]
    assert main(["runs", "list", *flags]) == 0
    listing = capsys.readouterr().out
    assert "pushed v1" in listing and "pushed v2" in listing and "Trainer" in listing
    assert main(["runs", "show", "latest", "--json", *flags]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(render.to_json(found[1].to_dict()))


def test_models_trained_from_a_table(graph, registry, two_runs, capsys):
    table = report.qualify_table("mnist_lineage.train", two_runs.settings.project, two_runs.settings.dataset)
    found = report.models_from_table(graph, registry, table)
    by_version = {m.registry_version: m for m in found.models}
    assert set(by_version) == {"v1", "v2"}
    for name, model in by_version.items():
        meta = registry.get(name).metadata
        assert model.model.artifact_id == meta.model_artifact_id
        assert model.run_id == meta.pipeline_run_id
        assert model.blessed is True and model.splits == ("train",)
        assert model.accuracy == pytest.approx(meta.test_accuracy)
    assert main(["lineage", "--table", "mnist_lineage.valid", "--state-dir", str(two_runs.settings.state_dir),
                 *two_runs.registry_flags]) == 0
    out = capsys.readouterr().out
    assert f"models trained from {two_runs.settings.table_id('valid')}" in out and " v2 " in out
    nothing = report.models_from_table(graph, registry, two_runs.settings.table_id("predictions"))
    assert nothing.models == []


def _other_pipeline_store(src: Path, dst: Path) -> Path:
    """A copy of the store whose pipeline context has another name: a store of another pipeline."""
    shutil.copy(src, dst)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(dst)
    writable = metadata_store.MetadataStore(config)
    ctx = writable.get_contexts_by_type("pipeline")[0]
    ctx.name = "taxi-pipeline"
    writable.put_contexts([ctx])
    return dst


@pytest.mark.parametrize("args, message", [
    (["lineage", "v9"], "has no version 'v9'"),
    (["lineage", "--alias", "champion"], "has no alias 'champion'"),
    (["lineage", "--artifact-id", "99999"], "has no artifact 99999"),
    (["lineage", "--artifact-id", "1"], "lineage starts at a Model"),
    (["runs", "show", "1999-01-01"], "has no run '1999-01-01'"),
    (["lineage", "--metadata-path", "{tmp}/nothing.sqlite"], "no ML Metadata store at"),
    (["lineage", "--metadata-path", "{tmp}/empty.sqlite"], "is empty"),
    (["runs", "list", "--metadata-path", "{tmp}/other.sqlite"], "holds no runs of pipeline 'mnist-automl' "
                                                                 "(it has: taxi-pipeline)"),
])
def test_bad_input_is_one_line_and_a_nonzero_exit(two_runs, tmp_path, capsys, args, message):
    (tmp_path / "empty.sqlite").write_bytes(b"")
    _other_pipeline_store(two_runs.config.metadata_path, tmp_path / "other.sqlite")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    registry = two_runs.registry_flags if argv[0] == "lineage" else []
    assert main([*argv, "--state-dir", str(two_runs.settings.state_dir), *registry]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], captured.err
