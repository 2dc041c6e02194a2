"""Renderers on hand-built lineage and run records, and the lineage package's pure helpers and store
checks; no pipeline run needed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from mlpipe.contract import TRAINING_SUMMARY_FILE
from mlpipe.errors import EnvironmentSetupError, NotFoundError, UsageError
from mlpipe.lineage import render, report
from mlpipe.lineage.graph import LineageGraph
from mlpipe.metadata import payloads, runs
from mlpipe.metadata.graph import Execution, MetadataGraph, MetadataStoreError
from mlpipe.metadata.payloads import ACCURACY, Anomaly, ValidationFailure

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "lineage.schema.json"
RUN1, RUN2 = "2026-01-01T10:00:00.000001", "2026-01-01T11:00:00.000002"


def _exec(component: str, execution_id: int, run: str = RUN2, state: str = "complete") -> report.ExecutionInfo:
    return report.ExecutionInfo(component, execution_id, run, state, "2026-01-01T11:00:00.000+00:00", 1.5)


def _art(artifact_id: int, kind: str) -> report.ArtifactRef:
    return report.ArtifactRef(artifact_id, kind, f"/root/{kind}/{artifact_id}")


def _lineage(blessed: bool = True, anomalies: tuple[Anomaly, ...] = (), baseline: bool = True) -> report.LineageReport:
    failures = () if blessed else (
        ValidationFailure(ACCURACY, -0.49, True, 0.0, "", "change below threshold"),)
    g = LineageGraph()
    table = g.add_table("p.mnist.train", "3000 rows")
    g.link(table, "execution:2", "source", "train: 3000 rows")
    g.link("artifact:14", "execution:17", "baseline", "baseline_model")
    g.link("artifact:22", g.add_version("mnist", "v2", "default"), "registry")
    return report.LineageReport(
        pipeline="mnist-automl",
        metadata_path="/state/metadata/mnist-automl.sqlite",
        model=_art(19, "Model"),
        run_id=RUN2,
        registry=report.RegistryEntry("mnist", "v2", True, ("champion",), "2026-01-01T11:01:00Z"),
        push=report.PushStep(_exec("Pusher", 18), _art(22, "PushedModel"), blessed,
                             "v2" if blessed else None, "/registry/mnist/versions/v2/saved_model" if blessed else None),
        evaluation=report.EvaluationStep(
            execution=_exec("Evaluator", 17),
            evaluation=_art(20, "ModelEvaluation"),
            blessing=_art(21, "ModelBlessing"),
            blessed=blessed,
            splits=("test",),
            metrics={ACCURACY: 0.897 if blessed else 0.41, "example_count": 1000.0},
            thresholds=(report.Threshold(ACCURACY, lower_bound=0.7, change_absolute=-1.0,
                                         direction="HIGHER_IS_BETTER"),),
            failures=failures,
            baseline=report.BaselineInfo(_art(14, "Model"), RUN1, "v1", 0.903, 12) if baseline else None,
        ),
        training=report.TrainingStep(
            execution=_exec("Trainer", 16),
            model_run=_art(18, "ModelRun"),
            train_steps=240,
            eval_steps=10,
            config={"search": {"families": ["dnn", "cnn"], "max_iteration_steps": 120, "max_iterations": 2,
                               "batch_size": 64, "learning_rate": 0.001, "ensemble": "grow", "seed": 42},
                    "eval_steps": 5},
            train_seconds=21.3,
            global_step=240,
            eval_metrics={"accuracy": 0.889, "loss": 0.379},
            ensemble=("2_layer_dnn", "3_layer_dnn"),
        ),
        transform=report.TransformStep(_exec("Transform", 6, RUN1), _art(10, "TransformGraph"), _art(7, "Examples"),
                                       "models.preprocessing.preprocessing_fn", ("train",), ("train", "eval")),
        validation=report.ValidationStep(
            _exec("ExampleValidator", 5, RUN1), _art(4, "ExampleAnomalies"),
            report.SchemaInfo(_art(1, "Schema"), 1, "pipeline/schema/schema.pbtxt"), ("train", "eval", "test"),
            anomalies),
        statistics=report.StatisticsStep(_exec("StatisticsGen", 4, RUN1), _art(3, "ExampleStatistics"),
                                         {"train": 3000, "eval": 500, "test": 1000}),
        example_gen=report.ExampleGenStep(
            _exec("LocalBigQueryExampleGen", 2, RUN1), _art(2, "Examples"), 0, None,
            tuple(report.SplitSource(split, f"SELECT key, label, image FROM `p.mnist.{table}` WHERE key < {n}",
                                     (f"p.mnist.{table}",), n, 3000)
                  for split, table, n in (("train", "train", 3000), ("eval", "valid", 500), ("test", "test", 1000))),
        ),
        graph=g,
    )


def _run(outcome: str = "pushed v2", states: tuple[str, ...] = ("cached", "complete")) -> runs.RunRecord:
    components = tuple(
        runs.ComponentRun(name, i, state, "2026-01-01T11:00:00.000+00:00", 2.25, (),
                          (runs.ArtifactLink("out", 100 + i, "Examples"),))
        for i, (name, state) in enumerate(zip(("LocalBigQueryExampleGen", "Trainer"), states, strict=True), start=1)
    )
    return runs.RunRecord(RUN2, "2026-01-01T11:00:00.000+00:00", 48.3, "complete", outcome, "v2", 19, True,
                          0.897, 0.903, components)


# ---- text tree -----------------------------------------------------------------------------------

def test_tree_goes_from_the_version_down_to_the_tables():
    tree = render.lineage_tree(_lineage())
    lines = tree.splitlines()
    assert lines[0] == f"mnist v2 (default, alias champion): Model #19, trained in run {RUN2}"
    hops = ["Pusher", "Evaluator", "Trainer", "Transform", "ExampleValidator", "StatisticsGen",
            "LocalBigQueryExampleGen"]
    positions = [tree.index(f"└─ {hop}  (execution") for hop in hops]
    assert positions == sorted(positions)
    # Each hop sits one level (three columns) deeper than the one before it.
    indents = [next(len(line) - len(line.lstrip(" │")) for line in lines if f"─ {hop}  (" in line) for hop in hops]
    assert indents == [3 * i for i in range(len(hops))]
    assert "pushed v2 → /registry/mnist/versions/v2/saved_model  (PushedModel #22)" in tree
    assert "baseline: Model #14 = registry v1, accuracy 0.9030" in tree
    assert "picked by baseline_resolver (execution 12)" in tree
    assert "threshold: accuracy ≥ 0.7000 and ≥ baseline - 1.0000" in tree
    assert ("AdaNet: families dnn+cnn, 2 iterations × 120 steps, batch 64, learning rate 0.001, ensemble grow, "
            "seed 42") in tree
    assert "final ensemble: 2_layer_dnn + 3_layer_dnn" in tree
    assert "anomalies: none in train, eval, test (ExampleAnomalies #4)" in tree
    assert "examples: train 3000, eval 500, test 1000" in tree
    assert "eval  ← p.mnist.valid: 500 rows of 3000 in the table" in tree
    assert f"Transform  (execution 6, complete, 1.5 s, run {RUN1})" in tree  # run named where it changes
    assert "ExampleValidator  (execution 5, complete, 1.5 s)" in tree


def test_tree_shows_why_a_model_was_not_blessed_and_its_anomalies():
    anomalies = (Anomaly("train", "image", "Unexpectedly large value: 300"),)
    tree = render.lineage_tree(_lineage(blessed=False, anomalies=anomalies, baseline=False))
    assert "not pushed (model not blessed)" in tree
    assert "blessing: NOT blessed (ModelBlessing #21)" in tree
    assert "missed: accuracy 0.4100 changed by -0.4900 vs the baseline" in tree
    assert "baseline: none" in tree and "≥ baseline - 1.0000 (no baseline)" in tree
    assert "train: image: Unexpectedly large value: 300" in tree


def test_tree_without_registry_entry_or_push():
    lineage = _lineage()
    lineage.registry = None
    lineage.push = None
    tree = render.lineage_tree(lineage)
    assert tree.startswith("model not in the registry: Model #19")
    assert "Pusher" not in tree and tree.index("└─ Evaluator") < tree.index("└─ Trainer")


# ---- JSON ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", [
    {}, {"blessed": False, "baseline": False, "anomalies": (Anomaly("train", "", "dataset too small"),)}])
def test_json_follows_the_documented_schema(variant):
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = json.loads(render.to_json(_lineage(**variant).to_dict()))
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    assert doc["schema_version"] == report.SCHEMA_VERSION
    assert list(doc) == schema["required"]  # stable top-level order


def test_schema_rejects_a_renamed_or_mistyped_field():
    schema = json.loads(SCHEMA.read_text())

    def valid_doc() -> dict:  # the JSON as written (tuples become arrays), which the schema accepts
        doc = json.loads(render.to_json(_lineage().to_dict()))
        jsonschema.validate(doc, schema)
        return doc

    doc = valid_doc()
    doc["training"]["steps"] = doc["training"].pop("train_steps")
    with pytest.raises(jsonschema.ValidationError, match=r"\('steps' was unexpected\)"):
        jsonschema.validate(doc, schema)
    doc = valid_doc()
    doc["evaluation"]["blessed"] = "yes"
    with pytest.raises(jsonschema.ValidationError, match="'yes' is not of type 'boolean'"):
        jsonschema.validate(doc, schema)


# ---- Graphviz ------------------------------------------------------------------------------------

def test_dot_has_every_node_and_styles_the_baseline_edge():
    lineage = _lineage()
    dot = render.lineage_dot(lineage.graph, "Lineage of mnist v2")
    assert dot.startswith("digraph lineage {") and "rankdir=TB" in dot
    assert 'label="Lineage of mnist v2"' in dot
    assert "table_p_mnist_train" in dot and "shape=cylinder" in dot
    assert "artifact_14 -> execution_17" in dot and "style=dashed" in dot and "baseline_model" in dot
    assert 'label="mnist v2\ndefault"' in dot
    # A colon in a DOT node id would name a port: ids are mangled.
    ids = re.findall(r"^\s+(\S+) (?:\[|->)", dot, flags=re.MULTILINE)
    assert ids and not [i for i in ids if ":" in i]


def test_png_is_a_small_palette_image():
    if shutil.which("dot") is None:
        with pytest.raises(EnvironmentSetupError, match="make setup"):
            render.render_image("digraph g { a -> b }", "png")
        return
    png = render.render_image(render.lineage_dot(_lineage().graph), "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert png[25] == 3  # IHDR colour type 3: palette
    svg = render.render_image(render.lineage_dot(_lineage().graph), "svg")
    assert b"<svg" in svg and b"p.mnist.train" in svg


# ---- runs ----------------------------------------------------------------------------------------

def test_runs_text_has_one_line_per_run_and_component_times():
    text = render.runs_text("mnist-automl", "/m.sqlite", [_run()])
    lines = text.splitlines()
    assert lines[0] == "1 run(s) of mnist-automl in /m.sqlite"
    assert lines[2].startswith(RUN2) and lines[2].endswith("89.70%    90.30%  pushed v2")
    assert lines[3] == "    LocalBigQueryExampleGen cached · Trainer 2.2s"
    assert render.runs_text("mnist-automl", "/m.sqlite", []) == "no runs of mnist-automl in /m.sqlite"


def test_run_text_lists_components_with_their_artifacts():
    text = render.run_text(_run())
    assert "outcome  : pushed v2" in text
    assert "(mlpipe lineage --artifact-id 19)" in text
    assert "Trainer                       2  complete  2026-01-01 11:00:00       2.2  - → out #102" in text


def test_runs_json_document_round_trips():
    doc = json.loads(render.to_json(render.runs_document("mnist-automl", "/m.sqlite", [_run()])))
    assert doc["runs"][0]["components"][1]["outputs"] == [{"key": "out", "artifact_id": 102, "type": "Examples"}]


CANDIDATE_041 = {"candidate": {ACCURACY: 0.41}, "baseline": {ACCURACY: 0.9}}


@pytest.mark.parametrize("failures, metrics, expected", [
    ([ValidationFailure(ACCURACY, -0.49, True, 0.0, "", "")], CANDIDATE_041,
     "not blessed: accuracy 0.4100 < baseline 0.9000"),
    ([ValidationFailure(ACCURACY, -0.2, True, -0.05, "", "")], {"candidate": {ACCURACY: 0.7},
                                                              "baseline": {ACCURACY: 0.9}},
     "not blessed: accuracy 0.7000 < baseline 0.9000 - 0.0500"),
    ([ValidationFailure(ACCURACY, 0.41, False, 0.7, "", "")], {}, "not blessed: accuracy 0.4100 < floor 0.7000"),
    ([ValidationFailure(ACCURACY, 0.41, False, 0.7, "", ""), ValidationFailure(ACCURACY, -0.49, True, 0.0, "", ""),
      *(ValidationFailure(ACCURACY, 0.3, False, 0.7, f"label={d}", "") for d in range(4))], CANDIDATE_041,
     "not blessed: accuracy 0.4100 < floor 0.7000 and < baseline 0.9000; "
     "4 slice(s) below their threshold (label=0, label=1, label=2, …)"),
    ([ValidationFailure(ACCURACY, 0.52, False, 0.7, "label=3", "")], {},
     "not blessed: 1 slice(s) below their threshold (label=3)"),
    ([ValidationFailure(ACCURACY, -0.1, True, 0.0, "", "")], {},
     "not blessed: accuracy changed by -0.1000 vs the baseline"),
    ([], {}, "not blessed"),
])
def test_not_blessed_reason_names_the_missed_thresholds(failures, metrics, expected):
    assert runs.not_blessed_reason(failures, metrics) == expected


def _execs(*states: tuple[str, str]) -> list[Execution]:
    return [Execution(i, name, f"x.{name}", state, RUN2, 1000 * i, 1000 * i + 500, {})
            for i, (name, state) in enumerate(states, start=1)]


@pytest.mark.parametrize("executions, pushed, blessed, expected", [
    (_execs(("ExampleGen", "complete"), ("ExampleValidator", "failed")), None, None,
     ("failed", "failed at ExampleValidator")),
    (_execs(("ExampleGen", "cached"), ("Trainer", "running")), None, None,
     ("incomplete", "stopped at Trainer (still running, or killed)")),
    (_execs(("Trainer", "cached"), ("baseline_resolver", "complete"), ("Pusher", "cached")), "v1", True,
     ("complete", "nothing new: every step reused from the cache (the model is v1)")),
    (_execs(("Trainer", "complete"), ("Pusher", "complete")), "v2", True, ("complete", "pushed v2")),
    (_execs(("Trainer", "complete"), ("Evaluator", "complete"), ("Pusher", "complete")), None, False,
     ("complete", "not blessed: accuracy 0.4100 < floor 0.7000")),
    (_execs(("ExampleGen", "complete"), ("Transform", "complete")), None, None,
     ("incomplete", "ended after Transform")),
])
def test_run_outcome(executions, pushed, blessed, expected):
    failures = [ValidationFailure(ACCURACY, 0.41, False, 0.7, "", "")]
    assert runs.outcome(executions, pushed, blessed, failures, {}) == expected


# ---- helpers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("train", "proj.mnist.train"), ("other.valid", "proj.other.valid"), ("a.b.c", "a.b.c"),
    ("`a.b.c`", "a.b.c")])
def test_qualify_table(name, expected):
    assert report.qualify_table(name, "proj", "mnist") == expected


@pytest.mark.parametrize("name", ["a.b.c.d", "mnist..train", ""])
def test_qualify_table_rejects_malformed_names(name):
    with pytest.raises(UsageError, match=r"is not TABLE, DATASET\.TABLE or PROJECT\.DATASET\.TABLE"):
        report.qualify_table(name, "proj", "mnist")


def test_split_tables_reads_from_and_join_clauses():
    sql = "SELECT * FROM `p.d.train` t JOIN d.labels l ON t.key = l.key WHERE key < 10"
    assert report.split_tables(sql, "p") == ("p.d.train", "p.d.labels")


def test_graph_keeps_one_node_and_edge_each_and_the_first_detail():
    g = LineageGraph()
    a = g.add_table("p.d.t")
    assert g.add_table("p.d.t", "10 rows") == a and g.nodes[a].detail == "10 rows"
    g.add_table("p.d.t", "other")
    assert g.nodes[a].detail == "10 rows"
    g.link(a, "execution:1", "source", "train")
    g.link(a, "execution:1", "source", "train")
    assert len(g.edges) == 1


# ---- store checks --------------------------------------------------------------------------------

def _store_with_pipeline(path: Path, pipeline: str | None) -> Path:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    store = metadata_store.MetadataStore(config)
    if pipeline is not None:
        type_id = store.put_context_type(metadata_store_pb2.ContextType(name="pipeline"))
        store.put_contexts([metadata_store_pb2.Context(type_id=type_id, name=pipeline)])
    return path


def test_opening_a_missing_empty_foreign_or_broken_store_says_which(tmp_path):
    with pytest.raises(NotFoundError, match="no ML Metadata store at"):
        MetadataGraph.open(tmp_path / "missing.sqlite", "mnist-automl")
    (tmp_path / "empty.sqlite").write_bytes(b"")
    with pytest.raises(MetadataStoreError, match="is empty"):
        MetadataGraph.open(tmp_path / "empty.sqlite", "mnist-automl")
    (tmp_path / "text.sqlite").write_text("not a database\n")
    with pytest.raises(MetadataStoreError, match=r"not a readable ML Metadata store: .*not a database$"):
        MetadataGraph.open(tmp_path / "text.sqlite", "mnist-automl")
    fresh = _store_with_pipeline(tmp_path / "fresh.sqlite", None)
    with pytest.raises(MetadataStoreError, match="holds no pipeline runs"):
        MetadataGraph.open(fresh, "mnist-automl")
    other = _store_with_pipeline(tmp_path / "other.sqlite", "taxi")
    with pytest.raises(MetadataStoreError, match=r"holds no runs of pipeline 'mnist-automl' \(it has: taxi\)"):
        MetadataGraph.open(other, "mnist-automl")
    graph = MetadataGraph.open(_store_with_pipeline(tmp_path / "ours.sqlite", "mnist-automl"), "mnist-automl")
    assert graph.run_ids() == []
    with pytest.raises(NotFoundError, match="has no artifact 5"):
        graph.artifact(5)
    with pytest.raises(NotFoundError, match="has no runs"):
        runs.find_run(graph, "latest")


# ---- payloads ------------------------------------------------------------------------------------

def test_split_payloads_read_the_protos_tfdv_writes(tmp_path):
    from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

    for split, n in (("train", 3000), ("eval", 500)):
        stats = statistics_pb2.DatasetFeatureStatisticsList(
            datasets=[statistics_pb2.DatasetFeatureStatistics(num_examples=n)])
        (tmp_path / "stats" / f"Split-{split}").mkdir(parents=True)
        (tmp_path / "stats" / f"Split-{split}" / payloads.STATS_FILE).write_bytes(stats.SerializeToString())
    assert payloads.split_row_counts(str(tmp_path / "stats"), ["train", "eval", "test"]) == {"train": 3000,
                                                                                           "eval": 500}
    anomalies = anomalies_pb2.Anomalies()
    anomalies.anomaly_info["image"].description = "Unexpectedly large value: 300."
    anomalies.dataset_anomaly_info.description = "Low number of examples."
    (tmp_path / "anomalies" / "Split-train").mkdir(parents=True)
    (tmp_path / "anomalies" / "Split-train" / payloads.ANOMALIES_FILE).write_bytes(anomalies.SerializeToString())
    assert payloads.split_anomalies(str(tmp_path / "anomalies"), ["train"]) == [
        Anomaly("train", "image", "Unexpectedly large value: 300."),
        Anomaly("train", "", "Low number of examples."),
    ]


def test_training_summary_and_final_ensemble(tmp_path):
    assert payloads.training_summary(str(tmp_path)) == {}
    summary = {"train_seconds": 21.3, "eval": {
        "architecture/adanet/ensembles": "\nD\n\u0013architecture/adanetB#\b\u0007\u0012\u0000B\u001d"
                                         "| 2_layer_dnn | 3_layer_dnn |J\b\n\u0006\n\u0004text"}}
    (tmp_path / TRAINING_SUMMARY_FILE).write_text(json.dumps(summary))
    read = payloads.training_summary(str(tmp_path))
    assert read["train_seconds"] == 21.3
    assert payloads.final_ensemble(read) == ["2_layer_dnn", "3_layer_dnn"]
    assert payloads.final_ensemble({"eval": {}}) == []
