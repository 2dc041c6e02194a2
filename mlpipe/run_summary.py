"""What a pipeline run did, read back from ML Metadata: component times, accuracy, blessing, push."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: "complete",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.NEW: "new",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}


@dataclass
class ComponentRun:
    component: str
    state: str
    seconds: float
    execution_id: int


@dataclass
class RunSummary:
    run_id: str
    components: list[ComponentRun] = field(default_factory=list)
    accuracy: float | None = None
    baseline_accuracy: float | None = None
    blessed: bool | None = None
    pushed_to: str | None = None
    model_artifact_id: int | None = None
    blessing_artifact_id: int | None = None
    evaluation_uri: str | None = None


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _prop(node, name: str):
    for props in (node.custom_properties, node.properties):
        if name in props:
            v = props[name]
            which = v.WhichOneof("value")
            if which == "proto_value":
                return None
            return getattr(v, which) if which else None
    return None


def latest_run_id(store, pipeline_name: str) -> str | None:
    """The pipeline_run context of the most recent execution of `pipeline_name`."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return None
    executions = store.get_executions_by_context(pipeline.id)
    if not executions:
        return None
    latest = max(executions, key=lambda e: e.create_time_since_epoch)
    return run_id_of(store, latest)


def run_id_of(store, execution) -> str | None:
    """The pipeline run (its `pipeline_run` context's name) an execution belongs to."""
    run_type = store.get_context_type("pipeline_run")
    for ctx in store.get_contexts_by_execution(execution.id):
        if ctx.type_id == run_type.id:
            return ctx.name
    return None


def summarize_run(metadata_path: str, pipeline_name: str, run_id: str | None = None) -> RunSummary:
    from tfx.orchestration.portable.mlmd import execution_lib  # noqa: F401  (type registrations)

    store = open_store(metadata_path)
    run_id = run_id or latest_run_id(store, pipeline_name)
    if run_id is None:
        raise LookupError(f"no runs of pipeline {pipeline_name} in {metadata_path}")
    ctx = store.get_context_by_type_and_name("pipeline_run", run_id)
    executions = sorted(store.get_executions_by_context(ctx.id), key=lambda e: e.create_time_since_epoch)
    summary = RunSummary(run_id=run_id)
    for e in executions:
        node = node_id(store, e)
        seconds = max(e.last_update_time_since_epoch - e.create_time_since_epoch, 0) / 1000.0
        summary.components.append(
            ComponentRun(str(node), STATE_NAMES.get(e.last_known_state, "?"), seconds, e.id)
        )
    _fill_model_results(store, executions, summary)
    return summary


def node_id(store, execution) -> str:
    """The pipeline node id (e.g. `Trainer`, `baseline_resolver`) an execution belongs to."""
    node_type = store.get_context_type("node")
    for ctx in store.get_contexts_by_execution(execution.id):
        if ctx.type_id == node_type.id:
            return ctx.name.split(".", 1)[-1]
    return str(execution.type_id)


def _outputs(store, execution_id: int) -> list:
    events = store.get_events_by_execution_ids([execution_id])
    ids = [ev.artifact_id for ev in events if ev.type in (
        metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
    return store.get_artifacts_by_id(ids) if ids else []


def _fill_model_results(store, executions, summary: RunSummary) -> None:
    artifact_types = {t.id: t.name for t in store.get_artifact_types()}
    for e in executions:
        for a in _outputs(store, e.id):
            kind = artifact_types.get(a.type_id)
            if kind == "Model":
                summary.model_artifact_id = a.id
            elif kind == "ModelBlessing":
                summary.blessing_artifact_id = a.id
                summary.blessed = bool(_prop(a, "blessed"))
            elif kind == "ModelEvaluation":
                summary.evaluation_uri = a.uri
            elif kind == "PushedModel" and _prop(a, "pushed"):
                summary.pushed_to = _prop(a, "pushed_destination")
    if summary.evaluation_uri and os.path.exists(summary.evaluation_uri):
        overall = evaluation_accuracy(summary.evaluation_uri)
        summary.accuracy = overall.get("candidate")
        summary.baseline_accuracy = overall.get("baseline")


def evaluation_accuracy(evaluation_uri: str) -> dict[str, float]:
    """Overall-slice accuracy of the candidate and (if there was one) the baseline model."""
    return {
        role: metrics["sparse_categorical_accuracy"]
        for role, metrics in overall_metrics(evaluation_uri).items()
        if "sparse_categorical_accuracy" in metrics
    }


def overall_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """Overall-slice scalar metrics (name → value) of the "candidate" and the "baseline" model;
    the candidate-minus-baseline diffs are left out."""
    import tensorflow_model_analysis as tfma

    found: dict[str, dict[str, float]] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.slice_key.single_slice_keys:
            continue
        for kv in metrics.metric_keys_and_values:
            key = kv.key
            if key.is_diff or not kv.value.HasField("double_value"):
                continue
            role = "baseline" if key.model_name == "baseline" else "candidate"
            found.setdefault(role, {})[key.name] = kv.value.double_value.value
    return found


def format_summary(summary: RunSummary) -> str:
    lines = [f"run {summary.run_id}", f"{'component':<32}{'state':<10}{'seconds':>9}"]
    for c in summary.components:
        lines.append(f"{c.component:<32}{c.state:<10}{c.seconds:>9.1f}")

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.2f} %"

    lines += [
        f"test accuracy (new model) : {pct(summary.accuracy)}",
        f"baseline accuracy         : {pct(summary.baseline_accuracy)}"
        + ("" if summary.baseline_accuracy is not None else " (no baseline: floor alone decides)"),
        f"blessed                   : {'n/a' if summary.blessed is None else ('yes' if summary.blessed else 'no')}",
        f"pushed to                 : {summary.pushed_to or 'not pushed'}",
    ]
    return "\n".join(lines)


def test_confusion_matrix(evaluation_uri: str, n_classes: int = 10):
    """Overall-slice confusion matrix (rows: true class, columns: predicted) of the candidate model,
    from TFMA's MultiClassConfusionMatrixPlot; None when the evaluation has no such plot."""
    import numpy as np
    import tensorflow_model_analysis as tfma

    for plots in tfma.load_plots(evaluation_uri):
        if plots.slice_key.single_slice_keys:
            continue
        for kv in plots.plot_keys_and_values:
            if kv.key.name != "multi_class_confusion_matrix_plot" or kv.key.model_name == "baseline":
                continue
            matrices = kv.value.multi_class_confusion_matrix_at_thresholds.matrices
            if not matrices:
                continue
            counts = np.zeros((n_classes, n_classes), dtype=np.int64)
            for entry in matrices[0].entries:  # threshold 0: the arg-max class
                counts[entry.actual_class_id, entry.predicted_class_id] += int(round(entry.num_weighted_examples))
            return counts
    return None
