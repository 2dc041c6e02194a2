"""The training data behind a model artifact, found through its lineage (read), and drift-monitor runs
recorded against a model version (write: the one place that adds to the store outside the pipeline)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from mlpipe.errors import NotFoundError
from mlpipe.metadata.graph import Artifact, MetadataGraph


@dataclass(frozen=True)
class TrainingData:
    model: Artifact
    examples: Artifact  # ExampleGen's raw Examples the model was trained on (Split-train, …)
    statistics: Artifact | None  # StatisticsGen's statistics of those examples


def training_data(graph: MetadataGraph, model_artifact_id: int) -> TrainingData:
    """Model → its Trainer → (Transform →) the raw examples → the statistics made of them."""
    model = graph.artifact(model_artifact_id)
    trainer = graph.producer(model.id)
    if trainer is None:
        raise NotFoundError(f"no execution in {graph.path} produced model artifact {model_artifact_id}")
    transform_graph = graph.input(trainer.id, "transform_graph")
    transform = graph.producer(transform_graph.id) if transform_graph else None
    raw = graph.input(transform.id, "examples") if transform else graph.input(trainer.id, "examples")
    if raw is None:
        raise NotFoundError(f"the lineage of model artifact {model_artifact_id} has no training examples")
    stats = None
    for e in graph.consumers(raw.id, key="examples"):
        out = graph.output(e.id, "statistics")
        if out is not None and out.type == "ExampleStatistics":
            stats = out
    return TrainingData(model, raw, stats)


MONITOR_EXECUTION = "DriftMonitor"
REPORT_ARTIFACT = "DriftReport"
VERSION_CONTEXT = "model_version"


def record_monitor_run(metadata_path: str, model_artifact_id: int | None, model: str, version: str,
                       report_uri: str, summary: dict[str, Any]) -> int:
    """Add a DriftMonitor execution (input: the model artifact, output: a DriftReport at `report_uri`)
    to the store, in the `model_version` context `model/version`; returns the execution id."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    exec_type = pb.ExecutionType(name=MONITOR_EXECUTION)
    for name, kind in (("model", pb.STRING), ("version", pb.STRING), ("drift", pb.INT),
                       ("window_start", pb.STRING), ("window_end", pb.STRING), ("instances", pb.INT),
                       ("summary", pb.STRING)):
        exec_type.properties[name] = kind
    exec_type_id = store.put_execution_type(exec_type, can_add_fields=True)
    art_type = pb.ArtifactType(name=REPORT_ARTIFACT)
    art_type.properties["drift"] = pb.INT
    art_type_id = store.put_artifact_type(art_type, can_add_fields=True)
    ctx_type_id = store.put_context_type(pb.ContextType(name=VERSION_CONTEXT))

    execution = pb.Execution(type_id=exec_type_id, last_known_state=pb.Execution.COMPLETE,
                             name=f"monitor-{model}-{version}-{time.time_ns()}")
    props = {"model": model, "version": version, "drift": int(bool(summary.get("drift"))),
             "window_start": str(summary.get("window_start") or ""), "window_end": str(summary.get("window_end") or ""),
             "instances": int(summary.get("instances") or 0),
             "summary": json.dumps(summary, sort_keys=True, default=str)}
    for key, value in props.items():
        if isinstance(value, int):
            execution.properties[key].int_value = value
        else:
            execution.properties[key].string_value = value
    report = pb.Artifact(type_id=art_type_id, uri=report_uri, state=pb.Artifact.LIVE)
    report.properties["drift"].int_value = props["drift"]
    context = store.get_context_by_type_and_name(VERSION_CONTEXT, f"{model}/{version}")
    if context is None:
        context = pb.Context(type_id=ctx_type_id, name=f"{model}/{version}")
    [report_id] = store.put_artifacts([report])
    report.id = report_id
    events = []
    if model_artifact_id is not None and store.get_artifacts_by_id([model_artifact_id]):
        model_event = pb.Event(artifact_id=model_artifact_id, type=pb.Event.INPUT)
        model_event.path.steps.add().key = "model"
        events.append((None, model_event))
    out_event = pb.Event(type=pb.Event.OUTPUT)
    out_event.path.steps.add().key = "drift_report"
    events.append((report, out_event))
    execution_id, _, [context_id] = store.put_execution(
        execution, [(a, e) if a is not None else (_existing(store, e.artifact_id), e) for a, e in events],
        [context], reuse_context_if_already_exist=True)
    return execution_id


def _existing(store, artifact_id: int):
    return store.get_artifacts_by_id([artifact_id])[0]
