"""A synthetic but real state dir for the console's tests, benchmark and screenshots.

It writes a real ML Metadata SQLite store (through `ml_metadata`, with the contexts, types, event keys
and properties a TFX run records) holding N pipeline runs of the project's DAG, real artifact
directories with a few files, and a real registry with M versions of a contract SavedModel carrying a
search report. The console reads it through exactly the code paths it uses for a real pipeline's
store, without minutes of training per run.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlpipe.config import Settings
from mlpipe.contract import NUM_CLASSES, SEARCH_REPORT_DIR, SEARCH_REPORT_FILE

log = logging.getLogger(__name__)

# (component, execution type, inputs {key: producing (component, key)}, outputs {key: artifact type})
DAG: tuple[tuple[str, str, dict[str, tuple[str, str]], dict[str, str]], ...] = (
    ("BigQueryExampleGen", "tfx.extensions.google_cloud_big_query.example_gen.component.BigQueryExampleGen",
     {}, {"examples": "Examples"}),
    ("StatisticsGen", "tfx.components.statistics_gen.component.StatisticsGen",
     {"examples": ("BigQueryExampleGen", "examples")}, {"statistics": "ExampleStatistics"}),
    ("ImportSchemaGen", "tfx.components.schema_gen.import_schema_gen.component.ImportSchemaGen",
     {}, {"schema": "Schema"}),
    ("ExampleValidator", "tfx.components.example_validator.component.ExampleValidator",
     {"statistics": ("StatisticsGen", "statistics"), "schema": ("ImportSchemaGen", "schema")},
     {"anomalies": "ExampleAnomalies"}),
    ("Transform", "tfx.components.transform.component.Transform",
     {"examples": ("BigQueryExampleGen", "examples"), "schema": ("ImportSchemaGen", "schema")},
     {"transform_graph": "TransformGraph", "transformed_examples": "Examples"}),
    ("Trainer", "tfx.components.trainer.component.Trainer",
     {"examples": ("Transform", "transformed_examples"), "transform_graph": ("Transform", "transform_graph")},
     {"model": "Model", "model_run": "ModelRun"}),
    ("Evaluator", "tfx.components.evaluator.component.Evaluator",
     {"examples": ("BigQueryExampleGen", "examples"), "model": ("Trainer", "model")},
     {"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"}),
    ("Pusher", "pipeline.components.registry_pusher.RegistryPusher",
     {"model": ("Trainer", "model"), "model_blessing": ("Evaluator", "blessing")},
     {"pushed_model": "PushedModel"}),
)
SPLITS = ("train", "eval", "test")


@dataclass(frozen=True)
class SampleState:
    settings: Settings
    run_ids: tuple[str, ...]
    versions: tuple[str, ...]
    model_ids: tuple[int, ...]  # the Model artifact of each run


def build_sample_state(settings: Settings, runs: int = 3, versions: int = 2, seed: int = 0,
                       saved_model: Path | None = None, failed_every: int = 7) -> SampleState:
    """Write `runs` runs into `settings.metadata_path` and push `versions` versions (of the contract
    model `saved_model`, built when not given) whose metadata names the first runs' Model artifacts.
    Every `failed_every`-th run fails at ExampleValidator (no outputs after it) and pushes nothing."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    rng = random.Random(seed)
    settings.metadata_path.parent.mkdir(parents=True, exist_ok=True)
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(settings.metadata_path)
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)

    def ctx_type(name: str) -> int:
        return store.put_context_type(pb.ContextType(name=name))

    def art_type(name: str) -> int:
        t = pb.ArtifactType(name=name)
        for prop in ("span", "version"):
            t.properties[prop] = pb.INT
        return store.put_artifact_type(t)

    pipeline_t, run_t, node_t = ctx_type("pipeline"), ctx_type("pipeline_run"), ctx_type("node")
    art_types = {t: art_type(t) for c in DAG for t in c[3].values()}
    exec_types = {c[0]: store.put_execution_type(pb.ExecutionType(name=c[1])) for c in DAG}
    pipeline_ctx = _context(store, pipeline_t, settings.pipeline_name)
    node_ctxs = {c[0]: _context(store, node_t, f"{settings.pipeline_name}.{c[0]}") for c in DAG}

    root = settings.pipeline_root
    run_ids, model_ids, pushed = [], [], []
    for r in range(runs):
        run_id = f"2026-11-{1 + r // 24:02d}T{r % 24:02d}:00:00.{r:06d}"
        run_ids.append(run_id)
        run_ctx = _context(store, run_t, run_id)
        failed = failed_every > 0 and r % failed_every == failed_every - 1
        made: dict[tuple[str, str], int] = {}
        pushes = not failed and len(pushed) < versions
        for component, _, inputs, outputs in DAG:
            stops_here = failed and component == "ExampleValidator"
            e = pb.Execution(type_id=exec_types[component],
                             last_known_state=pb.Execution.FAILED if stops_here else pb.Execution.COMPLETE)
            if component == "BigQueryExampleGen":
                e.custom_properties["input_config"].string_value = json.dumps({"splits": [
                    {"name": s, "pattern": f"SELECT key, image, label FROM `{settings.table_id(t)}` WHERE key < 3000"}
                    for s, t in zip(SPLITS, ("train", "valid", "test"), strict=True)]})
                e.custom_properties["bq_project"].string_value = settings.project
            links, out_index = [], {}
            for key, src in inputs.items():
                if src in made:
                    a = store.get_artifacts_by_id([made[src]])[0]
                    links.append((a, pb.Event(type=pb.Event.INPUT, path=_path(key))))
            for key, type_name in ({} if stops_here else outputs).items():
                uri = root / component / key / str(r * 100 + len(made))
                _write_files(uri, type_name, rng)
                a = pb.Artifact(type_id=art_types[type_name], uri=str(uri), state=pb.Artifact.LIVE)
                if type_name in ("Examples", "ExampleStatistics", "ExampleAnomalies"):
                    a.custom_properties["split_names"].string_value = json.dumps(list(SPLITS))
                if type_name == "ModelBlessing":
                    a.custom_properties["blessed"].int_value = 1
                if type_name == "PushedModel":
                    a.custom_properties["pushed"].int_value = 1 if pushes else 0
                    if pushes:
                        name = f"v{len(pushed) + 1}"
                        a.custom_properties["pushed_version"].string_value = name
                        a.custom_properties["pushed_destination"].string_value = name
                links.append((a, pb.Event(type=pb.Event.OUTPUT, path=_path(key))))
                out_index[key] = len(links) - 1
            _, artifact_ids, _ = store.put_execution(e, links, [pipeline_ctx, run_ctx, node_ctxs[component]])
            for key, index in out_index.items():
                made[(component, key)] = artifact_ids[index]
            if stops_here:
                break
        if ("Trainer", "model") in made:
            model_ids.append(made[("Trainer", "model")])
            if pushes:
                pushed.append((run_id, made[("Trainer", "model")]))
    version_names = _push_versions(settings, pushed, rng, saved_model)
    log.info("sample state: %d runs, %d versions in %s", runs, len(version_names), settings.state_dir)
    return SampleState(settings, tuple(run_ids), tuple(version_names), tuple(model_ids))


def _context(store, type_id: int, name: str) -> object:
    from ml_metadata.proto import metadata_store_pb2 as pb

    found = store.get_context_by_type_and_name(store.get_context_types_by_id([type_id])[0].name, name)
    if found is not None:
        return found
    [ctx_id] = store.put_contexts([pb.Context(type_id=type_id, name=name)])
    return store.get_contexts_by_id([ctx_id])[0]


def _path(key: str):
    from ml_metadata.proto import metadata_store_pb2 as pb

    path = pb.Event.Path()
    path.steps.add().key = key
    path.steps.add().index = 0
    return path


def _write_files(uri: Path, type_name: str, rng: random.Random) -> None:
    if type_name == "ModelEvaluation":
        return  # no TFMA output: readers treat the evaluation as gone, as for a pruned pipeline root
    uri.mkdir(parents=True, exist_ok=True)
    if type_name == "Examples":
        for split in SPLITS:
            (uri / f"Split-{split}").mkdir(exist_ok=True)
            (uri / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz").write_bytes(b"\x1f\x8b")
    elif type_name == "ModelRun":
        summary = {"train_seconds": round(30 + rng.random() * 20, 1), "global_step": 600,
                   "eval": {"accuracy": round(0.9 + rng.random() * 0.05, 4),
                            "architecture/adanet/ensembles": "| 1_layer_dnn | 2_layer_dnn |"}}
        (uri / "training_summary.json").write_text(json.dumps(summary))
    else:
        (uri / "README.txt").write_text(f"{type_name} written by the console's sample store\n")


def _search_report(rng: random.Random) -> dict:
    matrix = [[0] * NUM_CLASSES for _ in range(NUM_CLASSES)]
    for c in range(NUM_CLASSES):
        for _ in range(100):
            p = c if rng.random() < 0.93 else rng.randrange(NUM_CLASSES)
            matrix[c][p] += 1
    n = sum(map(sum, matrix))
    iterations = []
    for i in range(3):
        cands = [{"name": f"t{i}_{b}", "members": [{"iteration": i, "builder": b}],
                  "accuracy": round(0.85 + 0.03 * i + rng.random() * 0.02, 4), "is_previous_ensemble": False}
                 for b in ("1_layer_dnn", "2_layer_dnn")]
        best = max(cands, key=lambda c: c["accuracy"])
        iterations.append({"iteration": i, "candidates": cands, "selected": best["name"],
                           "selected_accuracy": best["accuracy"]})
    return {
        "iterations": iterations,
        "final_ensemble": {"name": iterations[-1]["selected"],
                           "members": [{"iteration": 2, "builder": "2_layer_dnn"}],
                           "valid_accuracy": iterations[-1]["selected_accuracy"]},
        "final_architecture_text": "| 2_layer_dnn |",
        "test": {"n": n, "accuracy": sum(matrix[c][c] for c in range(NUM_CLASSES)) / n,
                 "confusion_matrix": matrix,
                 "per_class_accuracy": [matrix[c][c] / sum(matrix[c]) for c in range(NUM_CLASSES)]},
    }


def _push_versions(settings: Settings, pushed: list[tuple[str, int]], rng: random.Random,
                   saved_model: Path | None) -> list[str]:
    from mlpipe.registry import PushMetadata, registry_for
    from mlpipe.registry.signature_check import build_contract_model

    if not pushed:
        return []
    source = settings.state_dir / "sample-model"
    if saved_model is None:
        saved_model = settings.state_dir / "sample-contract-model"
        if not (saved_model / "saved_model.pb").exists():
            build_contract_model(saved_model, seed=1)
    registry = registry_for(settings)
    names = []
    for run_id, model_id in pushed:
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(saved_model, source)
        report = source / SEARCH_REPORT_DIR
        report.mkdir(parents=True, exist_ok=True)
        doc = _search_report(rng)
        (report / SEARCH_REPORT_FILE).write_text(json.dumps(doc))
        meta = PushMetadata(pipeline_run_id=run_id, model_artifact_id=model_id,
                            test_accuracy=round(doc["test"]["accuracy"], 4),
                            baseline_accuracy=round(doc["test"]["accuracy"] - 0.01, 4),
                            source_tables=tuple(settings.table_id(t) for t in ("train", "valid", "test")))
        names.append(registry.push(source, meta).name)
    shutil.rmtree(source, ignore_errors=True)
    return names
