"""The lineage of one model, assembled from ML Metadata, and the reverse: the models a table trained.

Upstream from a Model: Pusher → Evaluator (metrics, thresholds, blessing, baseline) → Trainer →
Transform → ExampleValidator → StatisticsGen → ExampleGen → BigQuery tables. Each hop is found by
following MLMD events by their input/output keys, not by node names, so a renamed node still links.
ExampleValidator and StatisticsGen are not upstream of the Model in the artifact graph (the validator
gates Transform by a control dependency); they are found from the raw Examples downstream.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mlpipe.errors import MlpipeError, NotFoundError, UsageError
from mlpipe.lineage.graph import LineageGraph
from mlpipe.metadata import payloads
from mlpipe.metadata.graph import Artifact, Execution, MetadataGraph, MetadataStoreError
from mlpipe.metadata.payloads import ACCURACY
from mlpipe.registry import Registry, VersionInfo

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Table references in a split query: FROM/JOIN `project.dataset.table` (backticks optional).
_TABLE_RE = re.compile(r"\b(?:FROM|JOIN)\s+`?([A-Za-z0-9_.:-]+)`?", re.IGNORECASE)


# ---- the record ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExecutionInfo:
    component: str
    execution_id: int
    run_id: str | None
    state: str
    started: str  # RFC 3339 UTC
    seconds: float

    @classmethod
    def of(cls, e: Execution) -> ExecutionInfo:
        return cls(e.component, e.id, e.run_id, e.state, e.started, round(e.seconds, 3))


@dataclass(frozen=True)
class ArtifactRef:
    artifact_id: int
    type: str
    uri: str

    @classmethod
    def of(cls, a: Artifact) -> ArtifactRef:
        return cls(a.id, a.type, a.uri)


@dataclass(frozen=True)
class RegistryEntry:
    model: str
    version: str
    default: bool
    aliases: tuple[str, ...]
    created_time: str

    @classmethod
    def of(cls, v: VersionInfo) -> RegistryEntry:
        return cls(v.model, v.name, v.is_default, tuple(v.aliases), v.created_time)


@dataclass(frozen=True)
class PushStep:
    execution: ExecutionInfo
    pushed_model: ArtifactRef
    pushed: bool
    version: str | None  # the registry version the Pusher created
    destination: str | None


@dataclass(frozen=True)
class Threshold:
    metric: str
    lower_bound: float | None = None
    upper_bound: float | None = None
    change_absolute: float | None = None
    change_relative: float | None = None
    direction: str | None = None


@dataclass(frozen=True)
class BaselineInfo:
    model: ArtifactRef
    run_id: str | None  # the run whose Trainer made the baseline
    registry_version: str | None
    accuracy: float | None  # measured by this Evaluator, on the same split
    resolver_execution_id: int | None


@dataclass(frozen=True)
class EvaluationStep:
    execution: ExecutionInfo
    evaluation: ArtifactRef | None
    blessing: ArtifactRef | None
    blessed: bool | None
    splits: tuple[str, ...]
    metrics: dict[str, float]  # overall slice, the candidate
    thresholds: tuple[Threshold, ...]
    failures: tuple[payloads.ValidationFailure, ...]
    baseline: BaselineInfo | None


@dataclass(frozen=True)
class TrainingStep:
    execution: ExecutionInfo
    model_run: ArtifactRef | None
    train_steps: int | None
    eval_steps: int | None
    config: dict[str, Any]  # the Trainer's custom_config["training"]
    train_seconds: float | None
    global_step: int | None
    eval_metrics: dict[str, float]  # AdaNet's evaluation on the eval split
    ensemble: tuple[str, ...]  # subnetworks of the final AdaNet ensemble


@dataclass(frozen=True)
class TransformStep:
    execution: ExecutionInfo
    transform_graph: ArtifactRef | None
    transformed_examples: ArtifactRef | None
    preprocessing_fn: str | None
    analyze_splits: tuple[str, ...]
    transform_splits: tuple[str, ...]


@dataclass(frozen=True)
class SchemaInfo:
    schema: ArtifactRef
    execution_id: int | None
    schema_file: str | None


@dataclass(frozen=True)
class ValidationStep:
    execution: ExecutionInfo
    anomalies: ArtifactRef
    schema: SchemaInfo | None
    splits: tuple[str, ...]
    found: tuple[payloads.Anomaly, ...]


@dataclass(frozen=True)
class StatisticsStep:
    execution: ExecutionInfo
    statistics: ArtifactRef
    num_examples: dict[str, int]


@dataclass(frozen=True)
class SplitSource:
    split: str
    query: str
    tables: tuple[str, ...]
    rows: int | None  # examples in the split (StatisticsGen)
    table_rows: int | None  # rows the source table held when the run read it


@dataclass(frozen=True)
class ExampleGenStep:
    execution: ExecutionInfo
    examples: ArtifactRef
    span: int | None
    version: int | None
    splits: tuple[SplitSource, ...]


@dataclass
class LineageReport:
    pipeline: str
    metadata_path: str
    model: ArtifactRef
    run_id: str | None  # the run that trained the model
    registry: RegistryEntry | None
    push: PushStep | None
    evaluation: EvaluationStep | None
    training: TrainingStep
    transform: TransformStep | None
    validation: ValidationStep | None
    statistics: StatisticsStep | None
    example_gen: ExampleGenStep | None
    graph: LineageGraph = field(default_factory=LineageGraph)

    @property
    def tables(self) -> list[str]:
        found = [t for s in (self.example_gen.splits if self.example_gen else ()) for t in s.tables]
        return list(dict.fromkeys(found))

    def to_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["graph"] = {
            "nodes": [dataclasses.asdict(n) for n in self.graph.nodes.values()],
            "edges": [dataclasses.asdict(e) for e in self.graph.edges],
        }
        return {"schema_version": SCHEMA_VERSION, **doc}


@dataclass(frozen=True)
class TrainedModel:
    model: ArtifactRef
    run_id: str | None
    trainer_execution_id: int
    examples_artifact_id: int
    splits: tuple[str, ...]  # the ExampleGen splits that read the table
    registry_version: str | None
    pushed_version: str | None
    blessed: bool | None
    accuracy: float | None


@dataclass
class TableLineage:
    table: str
    pipeline: str
    metadata_path: str
    models: list[TrainedModel]

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(self)}


# ---- entry points --------------------------------------------------------------------------------

def lineage_of_version(graph: MetadataGraph, registry: Registry, version: str | None = None,
                       alias: str | None = None) -> LineageReport:
    """Lineage of a registry version (default: the serving default), checked against the registry."""
    info = registry.resolve(version=version, alias=alias)
    model_id = info.metadata.model_artifact_id
    if model_id is None:
        raise NotFoundError(f"{info.model} {info.name} records no ML Metadata Model artifact "
                            "(pushed by hand, not by the pipeline); there is no lineage to show")
    try:
        model = graph.artifact(model_id)
    except NotFoundError:
        raise NotFoundError(
            f"{info.model} {info.name}'s Model artifact {model_id} is not in {graph.path}: the registry "
            "and the ML Metadata store belong to different state dirs"
        ) from None
    if model.type != "Model" or not graph.in_pipeline(model.id):
        raise MetadataStoreError(
            f"{info.model} {info.name} names artifact {model_id}, but in {graph.path} that is a {model.type} "
            f"of another pipeline than {graph.pipeline_name!r}"
        )
    trainer = _trainer(graph, model)
    if not _pushed_here(graph, model.id, trainer, info.metadata.pipeline_run_id):
        raise MetadataStoreError(
            f"{info.model} {info.name} was pushed by run {info.metadata.pipeline_run_id}, but Model artifact "
            f"{model_id} in {graph.path} was trained by run {trainer.run_id} and no Pusher of that run took "
            "it: the registry and the ML Metadata store belong to different state dirs"
        )
    return _assemble(graph, model, _registry_index(graph, registry), RegistryEntry.of(info))


def lineage_of_artifact(graph: MetadataGraph, registry: Registry | None, artifact_id: int) -> LineageReport:
    """Lineage of a Model artifact, or of the model behind a PushedModel artifact."""
    artifact = graph.artifact(artifact_id)
    if not graph.in_pipeline(artifact.id):
        raise NotFoundError(f"artifact {artifact_id} in {graph.path} is not from pipeline {graph.pipeline_name!r}")
    if artifact.type == "PushedModel":
        pusher = graph.producer(artifact.id)
        model = graph.input(pusher.id, "model") if pusher else None
        if model is None:
            raise MetadataStoreError(f"PushedModel {artifact_id} has no Pusher with a model input in {graph.path}")
    elif artifact.type == "Model":
        model = artifact
    else:
        raise UsageError(f"artifact {artifact_id} is of type {artifact.type}; lineage starts at a Model or "
                         "a PushedModel (for the models trained from a table use --table)")
    index = _registry_index(graph, registry)
    entry = index.get(model.id)
    return _assemble(graph, model, index, RegistryEntry.of(entry) if entry else None)


def models_from_table(graph: MetadataGraph, registry: Registry | None, table: str) -> TableLineage:
    """Every Model trained from data that `table` (fully qualified) fed, oldest first."""
    index = _registry_index(graph, registry)
    found: dict[int, TrainedModel] = {}
    for gen in graph.executions():
        splits = _splits_reading(gen, table)
        if not splits or gen.state == "failed":
            continue
        for examples in graph.outputs(gen.id):
            if examples.type != "Examples":
                continue
            for model in _downstream_models(graph, examples):
                if model.id not in found:
                    found[model.id] = _trained_model(graph, model, examples, splits, index)
    return TableLineage(table, graph.pipeline_name, graph.path, [found[k] for k in sorted(found)])


def qualify_table(name: str, project: str, dataset: str) -> str:
    """`train` → project.dataset.train, `mnist.train` → project.mnist.train; three parts stay."""
    parts = name.strip().strip("`").split(".")
    if not all(parts) or len(parts) > 3:
        raise UsageError(f"table {name!r} is not TABLE, DATASET.TABLE or PROJECT.DATASET.TABLE")
    return ".".join([project, dataset][: 3 - len(parts)] + parts)


def split_tables(query: str, project: str) -> tuple[str, ...]:
    """The tables a split query reads, fully qualified with `project` where the query leaves it out."""
    tables = []
    for ref in _TABLE_RE.findall(query):
        parts = ref.split(".")
        tables.append(ref if len(parts) == 3 else f"{project}.{ref}")
    return tuple(dict.fromkeys(tables))


# ---- assembly ------------------------------------------------------------------------------------

def _assemble(graph: MetadataGraph, model: Artifact, index: dict[int, VersionInfo],
              entry: RegistryEntry | None) -> LineageReport:
    g = LineageGraph()
    trainer = _trainer(graph, model)
    g.produced(trainer, model, "model")
    push = _push_step(graph, g, model, entry)
    evaluation = _evaluation_step(graph, g, model, trainer, push, index)
    training, transform_exec, raw_examples = _training_step(graph, g, trainer)
    if training.train_steps:
        g.add_artifact(model, f"{training.train_steps} training steps")
    transform = _transform_step(graph, g, transform_exec) if transform_exec else None
    if transform_exec and raw_examples is None:
        raw_examples = graph.input(transform_exec.id, "examples")
    statistics = validation = example_gen = None
    if raw_examples is not None:
        prefer_run = transform_exec.run_id if transform_exec else trainer.run_id
        statistics, stats_artifact = _statistics_step(graph, g, raw_examples, prefer_run)
        if stats_artifact is not None:
            validation = _validation_step(graph, g, stats_artifact, prefer_run)
            if validation and transform_exec:
                g.link(f"execution:{validation.execution.execution_id}", f"execution:{transform_exec.id}",
                       "gate", "no anomalies" if not validation.found else "anomalies")
        example_gen = _example_gen_step(graph, g, raw_examples, statistics)
    for node in list(g.nodes.values()):
        if node.kind == "execution":
            e = graph.execution(node.ref)
            earlier = "" if e.run_id == trainer.run_id else ", earlier run"
            g.describe(node.id, f"{e.state} {e.seconds:.1f} s{earlier}")
    return LineageReport(
        pipeline=graph.pipeline_name,
        metadata_path=graph.path,
        model=ArtifactRef.of(model),
        run_id=trainer.run_id,
        registry=entry,
        push=push,
        evaluation=evaluation,
        training=training,
        transform=transform,
        validation=validation,
        statistics=statistics,
        example_gen=example_gen,
        graph=g,
    )


def _trainer(graph: MetadataGraph, model: Artifact) -> Execution:
    trainer = graph.producer(model.id)
    if trainer is None:
        raise MetadataStoreError(f"Model artifact {model.id} in {graph.path} has no producing execution")
    return trainer


def _push_step(graph: MetadataGraph, g: LineageGraph, model: Artifact, entry: RegistryEntry | None) -> PushStep | None:
    candidates = []
    for pusher in graph.consumers(model.id, key="model"):
        out = graph.output(pusher.id, "pushed_model")
        if out is not None and out.type == "PushedModel":
            candidates.append((pusher, out))
    if not candidates:
        return None

    def rank(item: tuple[Execution, Artifact]) -> tuple:
        pusher, out = item
        pushed = bool(out.prop("pushed"))
        same_version = entry is not None and out.prop("pushed_version") == entry.version
        return (same_version, pushed, pusher.state != "cached", pusher.started_ms)

    pusher, out = max(candidates, key=rank)
    for link in graph.links_of_execution(pusher.id):
        if link.direction == "input":
            g.consumed(graph.artifact(link.artifact_id), pusher, link.key)
    pushed = bool(out.prop("pushed"))
    version = out.prop("pushed_version") if pushed else None
    g.produced(pusher, out, "pushed_model")
    if entry is not None:
        detail = "default" if entry.default else ""
        g.link(f"artifact:{out.id}", g.add_version(entry.model, entry.version, detail), "registry")
    g.add_artifact(out, f"pushed {version}" if version else ("pushed" if pushed else "not pushed"))
    return PushStep(ExecutionInfo.of(pusher), ArtifactRef.of(out), pushed,
                    str(version) if version else None, _str_or_none(out.prop("pushed_destination")))


def _evaluation_step(graph: MetadataGraph, g: LineageGraph, model: Artifact, trainer: Execution,
                     push: PushStep | None, index: dict[int, VersionInfo]) -> EvaluationStep | None:
    evaluator = None
    if push is not None:
        blessing = graph.input(push.execution.execution_id, "model_blessing")
        evaluator = graph.producer(blessing.id) if blessing else None
    if evaluator is None:
        found = [e for e in graph.consumers(model.id, key="model") if graph.output(e.id, "evaluation")]
        evaluator = _pick(found, trainer.run_id)
    if evaluator is None:
        return None
    evaluation = graph.output(evaluator.id, "evaluation")
    blessing = graph.output(evaluator.id, "blessing")
    for link in graph.links_of_execution(evaluator.id):
        if link.direction == "input" and link.key != "baseline_model":
            g.consumed(graph.artifact(link.artifact_id), evaluator, link.key)
        elif link.direction == "output":
            g.produced(evaluator, graph.artifact(link.artifact_id), link.key)
    metrics = payloads.evaluation_metrics(evaluation.uri) if evaluation else {}
    blessed = None if blessing is None else bool(blessing.prop("blessed"))
    if blessing is not None:
        g.add_artifact(blessing, "blessed" if blessed else "not blessed")
    baseline = None
    baseline_model = graph.input(evaluator.id, "baseline_model")
    if baseline_model is not None:
        baseline = _baseline(graph, g, baseline_model, evaluator, metrics.get("baseline", {}), index)
    accuracy = metrics.get("candidate", {}).get(ACCURACY)
    if evaluation is not None and accuracy is not None:
        g.add_artifact(evaluation, f"accuracy {accuracy:.4f}")
    config = evaluator.json_prop("eval_config") or {}
    return EvaluationStep(
        execution=ExecutionInfo.of(evaluator),
        evaluation=_ref(evaluation),
        blessing=ArtifactRef.of(blessing) if blessing else None,
        blessed=blessed,
        splits=tuple(evaluator.json_prop("example_splits") or ()),
        metrics=metrics.get("candidate", {}),
        thresholds=_thresholds(config),
        failures=tuple(payloads.validation_failures(evaluation.uri)) if evaluation else (),
        baseline=baseline,
    )


def _baseline(graph: MetadataGraph, g: LineageGraph, baseline: Artifact, evaluator: Execution,
              metrics: dict[str, float], index: dict[int, VersionInfo]) -> BaselineInfo:
    producer = graph.producer(baseline.id)
    version = index.get(baseline.id)
    resolvers = [e for e in graph.picked_by(baseline.id) if e.run_id == evaluator.run_id]
    g.consumed(baseline, evaluator, "baseline_model", kind="baseline")
    g.add_artifact(baseline, f"baseline {version.name}" if version else "baseline")
    if version is not None:
        g.link(f"artifact:{baseline.id}", g.add_version(version.model, version.name), "registry")
    return BaselineInfo(
        model=ArtifactRef.of(baseline),
        run_id=producer.run_id if producer else None,
        registry_version=version.name if version else None,
        accuracy=metrics.get(ACCURACY),
        resolver_execution_id=resolvers[0].id if resolvers else None,
    )


def _training_step(graph: MetadataGraph, g: LineageGraph,
                   trainer: Execution) -> tuple[TrainingStep, Execution | None, Artifact | None]:
    for link in graph.links_of_execution(trainer.id):
        if link.direction == "input":
            g.consumed(graph.artifact(link.artifact_id), trainer, link.key)
    model_run = graph.output(trainer.id, "model_run")
    summary = payloads.training_summary(model_run.uri) if model_run else {}
    custom = trainer.json_prop("custom_config") or {}
    config = custom.get("training", {}) if isinstance(custom, dict) else {}
    eval_raw = summary.get("eval", {}) if isinstance(summary.get("eval"), dict) else {}
    eval_metrics = {
        k: float(v) for k, v in eval_raw.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "global_step"
    }
    step = TrainingStep(
        execution=ExecutionInfo.of(trainer),
        model_run=ArtifactRef.of(model_run) if model_run else None,
        train_steps=_num_steps(trainer.json_prop("train_args")),
        eval_steps=_num_steps(trainer.json_prop("eval_args")),
        config=config if isinstance(config, dict) else {},
        train_seconds=summary.get("train_seconds"),
        global_step=eval_raw.get("global_step"),
        eval_metrics=eval_metrics,
        ensemble=tuple(payloads.final_ensemble(summary)),
    )
    graph_input = graph.input(trainer.id, "transform_graph")
    transform = graph.producer(graph_input.id) if graph_input else None
    # Without Transform the Trainer reads the raw Examples itself.
    raw = graph.input(trainer.id, "examples") if transform is None else None
    return step, transform, raw


def _transform_step(graph: MetadataGraph, g: LineageGraph, transform: Execution) -> TransformStep:
    for link in graph.links_of_execution(transform.id):
        if link.direction == "input":
            g.consumed(graph.artifact(link.artifact_id), transform, link.key)
        elif link.key in ("transform_graph", "transformed_examples"):
            g.produced(transform, graph.artifact(link.artifact_id), link.key)
            if link.key == "transformed_examples":
                g.add_artifact(graph.artifact(link.artifact_id), "transformed")
    splits = transform.json_prop("splits_config") or {}
    return TransformStep(
        execution=ExecutionInfo.of(transform),
        transform_graph=_ref(graph.output(transform.id, "transform_graph")),
        transformed_examples=_ref(graph.output(transform.id, "transformed_examples")),
        preprocessing_fn=_str_or_none(transform.prop("preprocessing_fn")),
        analyze_splits=tuple(splits.get("analyze", ())),
        transform_splits=tuple(splits.get("transform", ())),
    )


def _statistics_step(graph: MetadataGraph, g: LineageGraph, raw: Artifact,
                     prefer_run: str | None) -> tuple[StatisticsStep | None, Artifact | None]:
    stats = None
    for e in graph.consumers(raw.id, key="examples"):
        out = graph.output(e.id, "statistics")
        if out is not None and out.type == "ExampleStatistics":
            stats = out
            if e.run_id == prefer_run:
                break
    if stats is None:
        return None, None
    producer = graph.producer(stats.id)
    g.consumed(raw, producer, "examples")
    g.produced(producer, stats, "statistics")
    counts = payloads.split_row_counts(stats.uri, _split_names(stats) or _split_names(raw))
    g.add_artifact(stats, ", ".join(f"{k} {v}" for k, v in counts.items()))
    return StatisticsStep(ExecutionInfo.of(producer), ArtifactRef.of(stats), counts), stats


def _validation_step(graph: MetadataGraph, g: LineageGraph, stats: Artifact,
                     prefer_run: str | None) -> ValidationStep | None:
    found = [e for e in graph.consumers(stats.id, key="statistics") if graph.output(e.id, "anomalies")]
    validator = _pick(found, prefer_run)
    if validator is None:
        return None
    anomalies = graph.output(validator.id, "anomalies")
    schema = graph.input(validator.id, "schema")
    g.consumed(stats, validator, "statistics")
    g.produced(validator, anomalies, "anomalies")
    schema_info = None
    if schema is not None:
        g.consumed(schema, validator, "schema")
        maker = graph.producer(schema.id)
        if maker is not None:
            g.produced(maker, schema, "schema")
        schema_info = SchemaInfo(ArtifactRef.of(schema), maker.id if maker else None,
                                 _str_or_none(maker.prop("schema_file")) if maker else None)
    splits = _split_names(anomalies)
    found_anomalies = payloads.split_anomalies(anomalies.uri, splits)
    g.add_artifact(anomalies, f"{len(found_anomalies)} anomalies" if found_anomalies else "no anomalies")
    return ValidationStep(ExecutionInfo.of(validator), ArtifactRef.of(anomalies), schema_info,
                          tuple(splits), tuple(found_anomalies))


def _example_gen_step(graph: MetadataGraph, g: LineageGraph, raw: Artifact,
                      statistics: StatisticsStep | None) -> ExampleGenStep | None:
    gen = graph.producer(raw.id)
    if gen is None:
        return None
    g.produced(gen, raw, "examples")
    rows = statistics.num_examples if statistics else {}
    read_rows = _fingerprint_rows(gen.prop("source_fingerprint"))
    # A split that reads a whole table (no WHERE, no feedback) read as many rows as the table held.
    table_rows = {table: n for split, (table, n) in read_rows.items()
                  if split != "feedback" and " WHERE " not in _pattern(gen, split)}
    project = str(gen.prop("bq_project") or gen.prop("project") or "")
    splits = []
    for split in (gen.json_prop("input_config") or {}).get("splits", []):
        name, query = split.get("name", ""), split.get("pattern", "")
        tables = split_tables(query, project)
        for table in tables:
            detail = f"{table_rows[table]} rows" if table in table_rows else ""
            read = f"{name}: {rows[name]} rows" if name in rows else name
            g.link(g.add_table(table, detail), f"execution:{gen.id}", "source", read)
        splits.append(SplitSource(name, query, tables, rows.get(name),
                                  table_rows.get(tables[0]) if len(tables) == 1 else None))
    g.add_artifact(raw, "splits " + ", ".join(s.split for s in splits))
    span = raw.prop("span", gen.prop("span"))
    version = raw.prop("version")
    return ExampleGenStep(ExecutionInfo.of(gen), ArtifactRef.of(raw),
                          int(span) if isinstance(span, int) else None,
                          int(version) if isinstance(version, int) else None, tuple(splits))


# ---- the reverse direction -----------------------------------------------------------------------

def _splits_reading(gen: Execution, table: str) -> tuple[str, ...]:
    config = gen.json_prop("input_config")
    if not isinstance(config, dict):
        return ()
    project = str(gen.prop("bq_project") or gen.prop("project") or "")
    return tuple(
        s.get("name", "") for s in config.get("splits", [])
        if table in split_tables(s.get("pattern", ""), project)
    )


def _downstream_models(graph: MetadataGraph, examples: Artifact) -> list[Artifact]:
    """Models made (OUTPUT events) by executions downstream of `examples`; the walk stops at a Model,
    so a model used as the next run's baseline does not pull in that run's models."""
    models, seen, frontier = [], {examples.id}, [examples]
    while frontier:
        artifact = frontier.pop()
        for consumer in graph.consumers(artifact.id):
            for out in graph.outputs(consumer.id):
                if out.id in seen:
                    continue
                seen.add(out.id)
                if out.type == "Model":
                    models.append(out)
                else:
                    frontier.append(out)
    return models


def _trained_model(graph: MetadataGraph, model: Artifact, examples: Artifact, splits: tuple[str, ...],
                   index: dict[int, VersionInfo]) -> TrainedModel:
    trainer = _trainer(graph, model)
    evaluators = [e for e in graph.consumers(model.id, key="model") if graph.output(e.id, "blessing")]
    evaluator = _pick(evaluators, trainer.run_id)
    blessed = accuracy = None
    if evaluator is not None:
        blessing = graph.output(evaluator.id, "blessing")
        blessed = bool(blessing.prop("blessed"))
        evaluation = graph.output(evaluator.id, "evaluation")
        if evaluation is not None:
            accuracy = payloads.evaluation_metrics(evaluation.uri).get("candidate", {}).get(ACCURACY)
    pushed_version = None
    for pusher in graph.consumers(model.id, key="model"):
        out = graph.output(pusher.id, "pushed_model")
        if out is not None and out.prop("pushed") and out.prop("pushed_version"):
            pushed_version = str(out.prop("pushed_version"))
    version = index.get(model.id)
    return TrainedModel(ArtifactRef.of(model), trainer.run_id, trainer.id, examples.id, splits,
                        version.name if version else None, pushed_version, blessed, accuracy)


# ---- helpers -------------------------------------------------------------------------------------

def _registry_index(graph: MetadataGraph, registry: Registry | None) -> dict[int, VersionInfo]:
    """Registry versions by the MLMD id of their Model, kept only where the run ids agree: a registry
    from another state dir can name the same small ids for different models."""
    if registry is None:
        return {}
    try:
        versions = registry.list_versions()
    except MlpipeError as e:
        log.warning("registry not readable, versions left out: %s", e)
        return {}
    index: dict[int, VersionInfo] = {}
    for v in versions:
        model_id = v.metadata.model_artifact_id
        if model_id is None:
            continue
        try:
            trainer = graph.producer(graph.artifact(model_id).id)
        except NotFoundError:
            continue
        if trainer is not None and _pushed_here(graph, model_id, trainer, v.metadata.pipeline_run_id):
            # A registry from before duplicate pushes were refused may hold one model twice: the
            # default wins, else the first version.
            if model_id not in index or (v.is_default and not index[model_id].is_default):
                index[model_id] = v
    return index


def _pushed_here(graph: MetadataGraph, model_id: int, trainer: Execution, run: str | None) -> bool:
    """Whether the run that pushed a version (`run`) belongs to this store: the run that trained the
    model, or a later run whose Pusher took it (the Trainer was cached, e.g. a new accuracy floor)."""
    if not run or not trainer.run_id or run == trainer.run_id:
        return True
    return any(e.run_id == run for e in graph.consumers(model_id, key="model"))


def _pick(executions: Iterable[Execution], prefer_run: str | None) -> Execution | None:
    """The execution of the preferred run, else the one that did the work (not a cache hit), else
    the latest."""
    found = list(executions)
    if not found:
        return None
    return max(found, key=lambda e: (e.run_id == prefer_run, e.state != "cached", e.started_ms))


def _thresholds(eval_config: dict) -> tuple[Threshold, ...]:
    found = []
    for spec in eval_config.get("metrics_specs", []):
        for metric in spec.get("metrics", []):
            threshold = metric.get("threshold")
            if not threshold:
                continue
            value = threshold.get("value_threshold", {})
            change = threshold.get("change_threshold", {})
            found.append(Threshold(
                metric=metric.get("name") or _snake(metric.get("class_name", "")),
                lower_bound=_number(value.get("lower_bound")),
                upper_bound=_number(value.get("upper_bound")),
                change_absolute=_number(change.get("absolute")),
                change_relative=_number(change.get("relative")),
                direction=change.get("direction"),
            ))
    return tuple(found)


def _snake(class_name: str) -> str:
    """TFMA names a metric after its Keras class: SparseCategoricalAccuracy → sparse_categorical_accuracy."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()


def _number(value: Any) -> float | None:
    if isinstance(value, dict):  # a wrapped DoubleValue may come back as {"value": x}
        value = value.get("value")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _num_steps(args: Any) -> int | None:
    steps = args.get("num_steps") if isinstance(args, dict) else None
    return int(steps) if isinstance(steps, (int, float)) else None


def _split_names(artifact: Artifact) -> list[str]:
    try:
        names = json.loads(str(artifact.prop("split_names") or "[]"))
    except ValueError:
        return []
    return [str(n) for n in names] if isinstance(names, list) else []


_FINGERPRINT_PART = re.compile(r"(?:^|;)(?P<split>[A-Za-z_]+)=(?P<table>[A-Za-z0-9_.:-]+?):rows=(?P<rows>\d+)")


def _pattern(gen: Execution, split: str) -> str:
    for entry in (gen.json_prop("input_config") or {}).get("splits", []):
        if entry.get("name") == split:
            return entry.get("pattern", "")
    return ""


def _fingerprint_rows(fingerprint: Any) -> dict[str, tuple[str, int]]:
    """Split → (table, rows read) from the ExampleGen's `source_fingerprint`
    ("train=P.D.train:rows=N;xor=…;sum=…;eval=…"): the content fingerprint the local runner records
    so that a reload invalidates the cache (mlpipe/bigquery/fingerprint.py)."""
    return {m["split"]: (m["table"], int(m["rows"])) for m in _FINGERPRINT_PART.finditer(str(fingerprint or ""))}


def _ref(artifact: Artifact | None) -> ArtifactRef | None:
    return ArtifactRef.of(artifact) if artifact else None


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
