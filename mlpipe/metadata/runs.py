"""Pipeline runs from ML Metadata: when, how long each component took, and what came of it.

The outcome says what a user wants to know first: the version a run pushed, or why it pushed none
("not blessed: accuracy 0.4100 < baseline 0.9030", "failed at ExampleValidator").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mlpipe.errors import NotFoundError, UsageError
from mlpipe.metadata import payloads
from mlpipe.metadata.graph import Execution, MetadataGraph, iso_time
from mlpipe.metadata.payloads import ACCURACY
from mlpipe.registry.same_model import ALREADY_DEFAULT_PROPERTY, ALREADY_VERSION_PROPERTY

UNFINISHED = ("running", "new", "unknown")


@dataclass(frozen=True)
class ArtifactLink:
    key: str
    artifact_id: int
    type: str


@dataclass(frozen=True)
class ComponentRun:
    component: str
    execution_id: int
    state: str
    started: str
    seconds: float
    inputs: tuple[ArtifactLink, ...]
    outputs: tuple[ArtifactLink, ...]


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    started: str
    seconds: float  # first start to last update of any of its executions
    status: str  # complete | failed | incomplete
    outcome: str
    pushed_version: str | None
    model_artifact_id: int | None
    blessed: bool | None
    accuracy: float | None
    baseline_accuracy: float | None
    components: tuple[ComponentRun, ...]
    pushed_destination: str | None = None  # where the Pusher put the model (registry version dir)
    # A blessed model the registry already held (not pushed again): its version, and whether it is the default.
    already_version: str | None = None
    already_default: bool = False
    baseline_model_id: int | None = None  # the Evaluator's baseline Model artifact
    eval_splits: tuple[str, ...] = ()  # the splits the Evaluator read, and how many rows
    eval_rows: int | None = None
    reran: tuple[str, ...] = ()  # components that ran (not reused from the cache)

    @property
    def nothing_new(self) -> bool:
        """Every component reused from the cache: nothing was re-run."""
        return self.status == "complete" and not self.reran

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def list_runs(graph: MetadataGraph) -> list[RunRecord]:
    """Every run of the pipeline, oldest first."""
    return [run_record(graph, run_id) for run_id in graph.run_ids()]


def find_run(graph: MetadataGraph, text: str) -> str:
    """A run id from its full id, a unique prefix of it, or `latest`."""
    runs = graph.run_ids()
    if not runs:
        raise NotFoundError(f"pipeline {graph.pipeline_name!r} has no runs in {graph.path}")
    if text == "latest":
        return runs[-1]
    if text in runs:
        return text
    matches = [r for r in runs if r.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"run {text!r} is ambiguous: {', '.join(matches)}")
    raise NotFoundError(f"pipeline {graph.pipeline_name!r} has no run {text!r} (see `mlpipe runs list`)")


def run_record(graph: MetadataGraph, run_id: str) -> RunRecord:
    executions = graph.run_executions(run_id)
    components = tuple(_component(graph, e) for e in executions)
    started = min(e.started_ms for e in executions) if executions else 0
    ended = max(e.updated_ms for e in executions) if executions else 0
    model_id = accuracy = baseline_accuracy = blessed = pushed_version = pushed_destination = None
    already_version = baseline_id = None
    already_default = False
    eval_splits: tuple[str, ...] = ()
    failures: list[payloads.ValidationFailure] = []
    metrics: dict[str, dict[str, float]] = {}
    for e in executions:
        for a in graph.outputs(e.id):
            if a.type == "Model":
                model_id = a.id
            elif a.type == "ModelBlessing":
                blessed = bool(a.prop("blessed"))
            elif a.type == "ModelEvaluation":
                metrics = payloads.evaluation_metrics(a.uri)
                failures = payloads.validation_failures(a.uri)
            elif a.type == "PushedModel" and a.prop("pushed"):
                pushed_version = str(a.prop("pushed_version") or a.prop("pushed_destination") or "")
                pushed_destination = str(a.prop("pushed_destination") or "") or None
            elif a.type == "PushedModel" and a.prop(ALREADY_VERSION_PROPERTY):
                already_version = str(a.prop(ALREADY_VERSION_PROPERTY))
                already_default = bool(a.prop(ALREADY_DEFAULT_PROPERTY))
        if _is_resolver(e) and baseline_id is None:
            # The baseline resolver's pick (MLMD links it as "internal"); the Evaluator's input event
            # cannot tell it apart when the baseline is the candidate itself.
            baseline_id = next((link.artifact_id for link in graph.links_of_execution(e.id)
                                if link.direction != "input" and link.key == "model"), None)
        if e.component == "Evaluator":
            baseline = next((link.artifact_id for link in graph.links_of_execution(e.id)
                             if link.direction == "input" and link.key == "baseline_model"), None)
            baseline_id = baseline if baseline is not None else baseline_id
            splits = e.json_prop("example_splits")
            eval_splits = tuple(splits) if isinstance(splits, list) else eval_splits
    accuracy = metrics.get("candidate", {}).get(ACCURACY)
    baseline_accuracy = metrics.get("baseline", {}).get(ACCURACY)
    status, what = outcome(executions, pushed_version, blessed, failures, metrics,
                           already=already_version, already_default=already_default)
    rows = metrics.get("candidate", {}).get("example_count")
    return RunRecord(
        run_id=run_id,
        started=iso_time(started),
        seconds=round(max(ended - started, 0) / 1000.0, 3),
        status=status,
        outcome=what,
        pushed_version=pushed_version,
        model_artifact_id=model_id,
        blessed=blessed,
        accuracy=accuracy,
        baseline_accuracy=baseline_accuracy,
        components=components,
        pushed_destination=pushed_destination,
        already_version=already_version,
        already_default=already_default,
        baseline_model_id=baseline_id,
        eval_splits=eval_splits,
        eval_rows=int(rows) if rows is not None else None,
        reran=tuple(e.component for e in executions if e.state != "cached" and not _is_resolver(e)),
    )


def _is_resolver(e: Execution) -> bool:
    """Resolver and importer nodes run on every run (they are never "cached"); they compute nothing."""
    return e.type.endswith((".Resolver", ".Importer"))


def not_blessed_reason(failures: list[payloads.ValidationFailure], metrics: dict[str, dict[str, float]]) -> str:
    summary = payloads.failure_summary(failures, metrics)
    return f"not blessed: {summary}" if summary else "not blessed"


def outcome(executions: list[Execution], pushed_version: str | None, blessed: bool | None,
            failures: list[payloads.ValidationFailure], metrics: dict[str, dict[str, float]],
            already: str | None = None, already_default: bool = False) -> tuple[str, str]:
    """(status, outcome) of a run from its executions (oldest first) and what its Evaluator and
    Pusher recorded (`already`: the version that already held the blessed model, so none was pushed)."""
    failed = [e for e in executions if e.state == "failed"]
    if failed:
        return "failed", f"failed at {failed[0].component}"
    unfinished = [e for e in executions if e.state in UNFINISHED]
    if unfinished:
        return "incomplete", f"stopped at {unfinished[0].component} (still running, or killed)"
    pushers = [e for e in executions if e.component == "Pusher" or e.type.endswith("Pusher")]
    if pushers and all(e.state == "cached" for e in pushers):
        # Same data, same config: the Pusher's cached output is an earlier run's push, not a new one.
        model = pushed_version or already
        return "complete", "nothing new: every step reused from the cache" + (
            f" (the model is {model})" if model else "")
    if pushed_version:
        return "complete", f"pushed {pushed_version}"
    if already:
        return "complete", (f"blessed, already serving as {already}: not pushed again" if already_default
                            else f"blessed, already registered as {already} (not the default): not pushed again")
    if blessed is False:
        return "complete", not_blessed_reason(failures, metrics)
    if not pushers:
        return "incomplete", f"ended after {executions[-1].component}" if executions else "no executions"
    return "complete", "not pushed"


def _component(graph: MetadataGraph, e: Execution) -> ComponentRun:
    def links(direction: str) -> tuple[ArtifactLink, ...]:
        found = [link for link in graph.links_of_execution(e.id) if link.direction == direction]
        types = {a.id: a.type for a in graph.artifacts(link.artifact_id for link in found)}
        return tuple(ArtifactLink(link.key, link.artifact_id, types.get(link.artifact_id, "?")) for link in found)

    return ComponentRun(e.component, e.id, e.state, e.started, round(e.seconds, 3), links("input"), links("output"))
