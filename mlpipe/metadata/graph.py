"""The one reader of ML Metadata: artifacts, executions and the events between them, via `ml_metadata`.

`MetadataGraph` is a read-only view of one pipeline's store that answers what the run summary, `mlpipe
runs`, lineage and the console ask (who produced this artifact, who consumed it, what went into this
execution, which executions made up a run) and fetches each node once.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ml_metadata import errors as mlmd_errors
from ml_metadata.proto import metadata_store_pb2

from mlpipe.errors import MlpipeError, NotFoundError

log = logging.getLogger(__name__)

STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: "complete",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.NEW: "new",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}

Event = metadata_store_pb2.Event
INPUT_EVENTS = (Event.INPUT, Event.DECLARED_INPUT)
# INTERNAL_OUTPUT is what a Resolver emits for the artifacts it picked; they were produced elsewhere,
# so it does not count as producing them.
OUTPUT_EVENTS = (Event.OUTPUT, Event.DECLARED_OUTPUT)
Scalar = int | float | str | dict | list | None


class MetadataStoreError(MlpipeError):
    """The ML Metadata store is unreadable, empty, or holds another pipeline's runs."""


@dataclass(frozen=True)
class Artifact:
    id: int
    type: str
    uri: str
    properties: Mapping[str, Scalar]  # properties and custom properties, one namespace
    created_ms: int

    def prop(self, name: str, default: Scalar = None) -> Scalar:
        return self.properties.get(name, default)


@dataclass(frozen=True)
class Execution:
    id: int
    component: str  # pipeline node id, e.g. "Trainer"
    type: str
    state: str  # STATE_NAMES: complete, cached, failed, running, ...
    run_id: str | None
    started_ms: int
    updated_ms: int
    properties: Mapping[str, Scalar]

    @property
    def seconds(self) -> float:
        return max(self.updated_ms - self.started_ms, 0) / 1000.0

    @property
    def started(self) -> str:
        return iso_time(self.started_ms)

    def prop(self, name: str, default: Scalar = None) -> Scalar:
        return self.properties.get(name, default)

    def json_prop(self, name: str) -> Any:
        """An execution property TFX stores as JSON text (input_config, custom_config, ...)."""
        text = self.properties.get(name)
        if not isinstance(text, str) or not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return None


@dataclass(frozen=True)
class Link:
    """One MLMD event: `artifact_id` went into (`input`) or came out of (`output`) `execution_id`."""

    artifact_id: int
    execution_id: int
    direction: Literal["input", "output", "internal"]
    key: str  # the component's input/output key, e.g. "model", "baseline_model"


def open_store(metadata_path: str):
    """The SQLite store at `metadata_path`, opened read-only."""
    from ml_metadata.metadata_store import metadata_store

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def run_id_of(store, execution) -> str | None:
    """The pipeline run (its `pipeline_run` context's name) an execution belongs to."""
    run_type = store.get_context_type("pipeline_run")
    for ctx in store.get_contexts_by_execution(execution.id):
        if ctx.type_id == run_type.id:
            return ctx.name
    return None


def node_id(store, execution) -> str:
    """The pipeline node id (e.g. `Trainer`, `baseline_resolver`) an execution belongs to."""
    node_type = store.get_context_type("node")
    for ctx in store.get_contexts_by_execution(execution.id):
        if ctx.type_id == node_type.id:
            return ctx.name.split(".", 1)[-1]
    return str(execution.type_id)


def iso_time(ms: int) -> str:
    """Milliseconds since the epoch (MLMD's clock) as RFC 3339 UTC."""
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc).isoformat(timespec="milliseconds")


def _value(v: metadata_store_pb2.Value) -> Scalar:
    which = v.WhichOneof("value")
    if which == "struct_value":
        from google.protobuf import json_format

        return json_format.MessageToDict(v.struct_value)
    if which in ("int_value", "double_value", "string_value", "bool_value"):
        return getattr(v, which)
    return None


def _properties(node) -> dict[str, Scalar]:
    merged = {k: _value(v) for k, v in node.properties.items()}
    merged.update({k: _value(v) for k, v in node.custom_properties.items()})
    return merged


def _direction(event_type: int) -> Literal["input", "output", "internal"] | None:
    if event_type in INPUT_EVENTS:
        return "input"
    if event_type in OUTPUT_EVENTS:
        return "output"
    if event_type == Event.INTERNAL_OUTPUT:
        return "internal"
    return None


def _key(event: metadata_store_pb2.Event) -> str:
    for step in event.path.steps:
        if step.HasField("key"):
            return step.key
    return ""


class MetadataGraph:
    """Read-only view of one pipeline's runs in an ML Metadata store."""

    def __init__(self, store, pipeline_name: str, path: str = "") -> None:
        self.store = store
        self.pipeline_name = pipeline_name
        self.path = path
        self._artifact_types = {t.id: t.name for t in store.get_artifact_types()}
        self._execution_types = {t.id: t.name for t in store.get_execution_types()}
        self._artifacts: dict[int, Artifact] = {}
        self._executions: dict[int, Execution] = {}
        self._links_of_execution: dict[int, list[Link]] = {}
        self._links_of_artifact: dict[int, list[Link]] = {}
        self._pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
        if self._pipeline is None:
            others = sorted(c.name for c in self._contexts_of_type("pipeline"))
            if others:
                raise MetadataStoreError(
                    f"ML Metadata store {path} holds no runs of pipeline {pipeline_name!r} "
                    f"(it has: {', '.join(others)})"
                )
            raise MetadataStoreError(f"ML Metadata store {path} holds no pipeline runs; run `mlpipe run` first")

    @classmethod
    def open(cls, path: str | Path, pipeline_name: str) -> MetadataGraph:
        """Open the SQLite store at `path` read-only; one clear error if it is missing or not a store."""
        path = Path(path)
        if not path.exists():
            raise NotFoundError(f"no ML Metadata store at {path}; run `mlpipe run` first (or pass --state-dir)")
        if path.is_dir() or path.stat().st_size == 0:
            raise MetadataStoreError(f"ML Metadata store {path} is empty; run `mlpipe run` first")
        try:
            store = open_store(str(path))
        except RuntimeError as e:
            # MLMD appends the failing SQL statement to the reason; the reason is what a user needs.
            reason = re.split(r"\s+query:\s+(?=[A-Z]+ )", (str(e).splitlines() or [type(e).__name__])[0])[0]
            raise MetadataStoreError(f"{path} is not a readable ML Metadata store: {reason[:160]}") from None
        return cls(store, pipeline_name, str(path))

    # ---- nodes ----------------------------------------------------------------------------------

    def artifact(self, artifact_id: int) -> Artifact:
        if artifact_id not in self._artifacts:
            found = self.store.get_artifacts_by_id([artifact_id])
            if not found:
                raise NotFoundError(f"ML Metadata store {self.path} has no artifact {artifact_id}")
            self._remember_artifacts(found)
        return self._artifacts[artifact_id]

    def artifacts(self, artifact_ids: Iterable[int]) -> list[Artifact]:
        ids = list(dict.fromkeys(artifact_ids))
        missing = [i for i in ids if i not in self._artifacts]
        if missing:
            self._remember_artifacts(self.store.get_artifacts_by_id(missing))
        return [self._artifacts[i] for i in ids if i in self._artifacts]

    def execution(self, execution_id: int) -> Execution:
        if execution_id not in self._executions:
            found = self.store.get_executions_by_id([execution_id])
            if not found:
                raise NotFoundError(f"ML Metadata store {self.path} has no execution {execution_id}")
            self._remember_execution(found[0])
        return self._executions[execution_id]

    def in_pipeline(self, artifact_id: int) -> bool:
        return any(c.id == self._pipeline.id for c in self.store.get_contexts_by_artifact(artifact_id))

    # ---- events ---------------------------------------------------------------------------------

    def links_of_execution(self, execution_id: int) -> list[Link]:
        if execution_id not in self._links_of_execution:
            events = self.store.get_events_by_execution_ids([execution_id])
            self._links_of_execution[execution_id] = self._links(events)
        return self._links_of_execution[execution_id]

    def links_of_artifact(self, artifact_id: int) -> list[Link]:
        if artifact_id not in self._links_of_artifact:
            events = self.store.get_events_by_artifact_ids([artifact_id])
            self._links_of_artifact[artifact_id] = self._links(events)
        return self._links_of_artifact[artifact_id]

    def inputs(self, execution_id: int, key: str | None = None) -> list[Artifact]:
        return self._linked(execution_id, "input", key)

    def outputs(self, execution_id: int, key: str | None = None) -> list[Artifact]:
        return self._linked(execution_id, "output", key)

    def input(self, execution_id: int, key: str) -> Artifact | None:
        found = self.inputs(execution_id, key)
        return found[0] if found else None

    def output(self, execution_id: int, key: str) -> Artifact | None:
        found = self.outputs(execution_id, key)
        return found[0] if found else None

    def producers(self, artifact_id: int) -> list[Execution]:
        """Executions with an output event for the artifact: the one that made it and, when later
        runs reused it from the cache, their cached executions too. Oldest first."""
        ids = [link.execution_id for link in self.links_of_artifact(artifact_id) if link.direction == "output"]
        return sorted((self.execution(i) for i in dict.fromkeys(ids)), key=lambda e: (e.started_ms, e.id))

    def producer(self, artifact_id: int) -> Execution | None:
        """The execution that made the artifact (not one that reused it from the cache)."""
        found = self.producers(artifact_id)
        made = [e for e in found if e.state != "cached"]
        return (made or found or [None])[0]

    def consumers(self, artifact_id: int, key: str | None = None, component: str | None = None) -> list[Execution]:
        """Executions that took the artifact as input (under `key`, in node `component`), oldest first."""
        ids = [
            link.execution_id for link in self.links_of_artifact(artifact_id)
            if link.direction == "input" and (key is None or link.key == key)
        ]
        found = [self.execution(i) for i in dict.fromkeys(ids)]
        if component is not None:
            found = [e for e in found if e.component == component]
        return sorted(found, key=lambda e: (e.started_ms, e.id))

    def picked_by(self, artifact_id: int) -> list[Execution]:
        """Resolver executions that picked the artifact (their INTERNAL_OUTPUT events)."""
        ids = [link.execution_id for link in self.links_of_artifact(artifact_id) if link.direction == "internal"]
        return [self.execution(i) for i in dict.fromkeys(ids)]

    # ---- runs -----------------------------------------------------------------------------------

    def executions(self) -> list[Execution]:
        """Every execution of this pipeline, oldest first."""
        raw = self.store.get_executions_by_context(self._pipeline.id)
        for e in raw:
            if e.id not in self._executions:
                self._remember_execution(e)
        return sorted((self._executions[e.id] for e in raw), key=lambda e: (e.started_ms, e.id))

    def run_ids(self) -> list[str]:
        """This pipeline's runs, oldest first."""
        return list(dict.fromkeys(e.run_id for e in self.executions() if e.run_id))

    def run_executions(self, run_id: str) -> list[Execution]:
        ctx = self.store.get_context_by_type_and_name("pipeline_run", run_id)
        if ctx is None:
            raise NotFoundError(f"pipeline {self.pipeline_name!r} has no run {run_id!r} in {self.path}")
        raw = self.store.get_executions_by_context(ctx.id)
        for e in raw:
            if e.id not in self._executions:
                self._remember_execution(e)
        return sorted((self._executions[e.id] for e in raw), key=lambda e: (e.started_ms, e.id))

    # ---- internals ------------------------------------------------------------------------------

    def _contexts_of_type(self, type_name: str) -> list:
        try:
            return list(self.store.get_contexts_by_type(type_name))
        except mlmd_errors.NotFoundError:
            return []

    def _links(self, events) -> list[Link]:
        links = []
        for ev in events:
            direction = _direction(ev.type)
            if direction is not None:
                links.append(Link(ev.artifact_id, ev.execution_id, direction, _key(ev)))
        return links

    def _linked(self, execution_id: int, direction: str, key: str | None) -> list[Artifact]:
        ids = [
            link.artifact_id for link in self.links_of_execution(execution_id)
            if link.direction == direction and (key is None or link.key == key)
        ]
        return self.artifacts(ids)

    def _remember_artifacts(self, raw: Iterable) -> None:
        for a in raw:
            self._artifacts[a.id] = Artifact(
                id=a.id,
                type=self._artifact_types.get(a.type_id, str(a.type_id)),
                uri=a.uri,
                properties=_properties(a),
                created_ms=a.create_time_since_epoch,
            )

    def _remember_execution(self, e) -> None:
        self._executions[e.id] = Execution(
            id=e.id,
            component=node_id(self.store, e),
            type=self._execution_types.get(e.type_id, str(e.type_id)),
            state=STATE_NAMES.get(e.last_known_state, "unknown"),
            run_id=run_id_of(self.store, e),
            started_ms=e.create_time_since_epoch,
            updated_ms=e.last_update_time_since_epoch,
            properties=_properties(e),
        )
