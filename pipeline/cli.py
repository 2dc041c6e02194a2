"""`mlpipe run` (the pipeline on the local runner) and `mlpipe compile-vertex` (the same pipeline for
Vertex AI Pipelines): their flags and handlers. Registered by `mlpipe/cli.py`; importing this module
loads no TensorFlow, so `--help` and flag errors are instant.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from mlpipe.config import Settings
from mlpipe.display import display_path
from mlpipe.errors import UsageError
from mlpipe.registry.cli import add_registry_flags, registry_settings
from pipeline.configs import PROFILES, PipelineConfig


def add_pipeline_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="full", choices=sorted(PROFILES),
                   help="full: all rows, default training budget; quick: small slice, few steps")
    p.add_argument("--no-cache", dest="enable_cache", action="store_false", default=None,
                   help="re-run every component instead of reusing cached outputs")
    p.add_argument("--no-promote", dest="promote", action="store_false", default=None,
                   help="push a blessed model as a new version without making it the default")
    p.add_argument("--feedback", choices=["auto", "on", "off"], default=None,
                   help="learn from users' labels in DATASET.feedback too (auto: when it has rows; "
                   "on Vertex, auto means off). Feedback rows are split 80/10/10 by their id and the "
                   "Evaluator gates on the MNIST and the feedback slices")
    p.add_argument("--warm-start", dest="warm_start", action="store_true", default=None,
                   help="continue the serving model's AdaNet search for one more iteration on the new "
                   "data instead of searching from scratch (cold when there is no serving model)")
    p.add_argument("--as-challenger", dest="challenger_share", type=float, metavar="SHARE",
                   help="push a blessed model as the challenger answering SHARE (0..1) of the default's "
                   "requests, not as the default (`mlpipe models promote` promotes it)")
    p.add_argument("--shadow", action="store_true",
                   help="with --as-challenger: the challenger sees a copy of SHARE of the requests "
                   "but never answers (its predictions are only logged)")
    p.add_argument("--steps-per-iteration", type=int, help="AdaNet max_iteration_steps")
    p.add_argument("--iterations", type=int, help="AdaNet iterations")
    p.add_argument("--accuracy-floor", type=float, help="test accuracy needed for blessing (0..1)")
    p.add_argument("--regression-tolerance", type=float,
                   help="how much lower than the baseline's accuracy is still blessed (default 0)")


def pipeline_config_from(args: argparse.Namespace, settings: Settings) -> PipelineConfig:
    """The run's configuration: the profile, then the flags that override it."""
    if args.shadow and args.challenger_share is None:
        raise UsageError("--shadow needs --as-challenger SHARE")
    cfg = PipelineConfig.for_profile(
        settings,
        args.profile,
        enable_cache=args.enable_cache,
        accuracy_floor=args.accuracy_floor,
        regression_tolerance=args.regression_tolerance,
        promote=args.promote,
        challenger_share=args.challenger_share,
        challenger_mode="shadow" if args.shadow else "canary",
        feedback=args.feedback,
        warm_start=args.warm_start,
    )
    training = {}
    if args.steps_per_iteration is not None:
        training["max_iteration_steps"] = args.steps_per_iteration
    if args.iterations is not None:
        training["max_iterations"] = args.iterations
    if training:
        if any(v <= 0 for v in training.values()):
            raise UsageError("--steps-per-iteration and --iterations must be positive")
        search = cfg.training.search.replace(**training)
        cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, search=search))
    return cfg


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.lineage.render import run_summary_text
    from pipeline.local_run import run_local

    settings = registry_settings(args, settings)
    record = run_local(pipeline_config_from(args, settings))
    version, accuracy = _baseline_version(settings, record.baseline_model_id)
    print(run_summary_text(record, version, accuracy))
    return 0


def _baseline_version(settings: Settings, model_id: int | None) -> tuple[str | None, float | None]:
    """The registry version whose model was the run's baseline, and the accuracy recorded at its push."""
    from mlpipe.errors import MlpipeError
    from mlpipe.registry import open_registry

    if model_id is None:
        return None, None
    try:
        registry = open_registry(settings.registry_location, settings.model_name)
        found = [v for v in registry.list_versions() if v.metadata.model_artifact_id == model_id]
    except MlpipeError:
        return None, None
    if not found:
        return None, None
    v = next((v for v in found if v.is_default), found[0])
    return f"{v.model} {v.name}", v.metadata.test_accuracy


# ---- Vertex AI ------------------------------------------------------------------------------------

CLOUD_FIELDS = ("region", "gcs_root", "image", "dataflow_temp_location", "dataflow_max_workers",
                "dataflow_machine_type", "dataflow_disk_size_gb", "dataflow_network", "dataflow_subnetwork",
                "trainer_machine_type", "push_target", "vertex_keep_previous", "service_account", "model_name")


def add_cloud_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Google Cloud (defaults ← MLPIPE_* env vars ← these flags)")
    g.add_argument("--region", help="region of Vertex AI, Dataflow and the model (MLPIPE_REGION, us-central1)")
    g.add_argument("--gcs-root", dest="gcs_root",
                   help="gs://BUCKET[/PREFIX] for the pipeline root and Dataflow files (MLPIPE_GCS_ROOT)")
    g.add_argument("--image", help="the project's container image, built from the Dockerfile (MLPIPE_IMAGE)")
    g.add_argument("--dataflow-temp-location", dest="dataflow_temp_location",
                   help="Dataflow temp location (MLPIPE_DATAFLOW_TEMP_LOCATION, default GCS_ROOT/tmp)")
    g.add_argument("--dataflow-max-workers", dest="dataflow_max_workers", type=int,
                   help="upper bound of Dataflow workers per job (MLPIPE_DATAFLOW_MAX_WORKERS, 4)")
    g.add_argument("--dataflow-machine-type", dest="dataflow_machine_type",
                   help="Dataflow worker machine type (MLPIPE_DATAFLOW_MACHINE_TYPE, n1-standard-4)")
    g.add_argument("--dataflow-disk-size-gb", dest="dataflow_disk_size_gb", type=int,
                   help="Dataflow worker disk; the image is several GB (MLPIPE_DATAFLOW_DISK_SIZE_GB, 50)")
    g.add_argument("--dataflow-network", dest="dataflow_network",
                   help="VPC network of the Dataflow workers (MLPIPE_DATAFLOW_NETWORK, the default one)")
    g.add_argument("--dataflow-subnetwork", dest="dataflow_subnetwork",
                   help="subnetwork, e.g. regions/REGION/subnetworks/NAME (MLPIPE_DATAFLOW_SUBNETWORK)")
    g.add_argument("--trainer-machine-type", dest="trainer_machine_type",
                   help="run the Trainer as a Vertex AI Training job on this machine type, e.g. "
                   "n1-standard-8 (MLPIPE_TRAINER_MACHINE_TYPE; default: in the pipeline step)")
    g.add_argument("--push-target", dest="push_target", choices=["vertex", "registry"],
                   help="vertex: the bucket registry and a Vertex AI endpoint; registry: the bucket "
                   "registry only, served by the Cloud Function (MLPIPE_PUSH_TARGET, vertex)")
    g.add_argument("--keep-previous", dest="vertex_keep_previous", type=int,
                   help="older models kept deployed on the endpoint at 0%% traffic for rollback; the "
                   "rest are undeployed (MLPIPE_VERTEX_KEEP_PREVIOUS, 1)")
    g.add_argument("--service-account", dest="service_account",
                   help="service account of the pipeline job and Dataflow workers (MLPIPE_SERVICE_ACCOUNT)")
    g.add_argument("--model", dest="model_name",
                   help="registry model and Vertex endpoint name (MLPIPE_MODEL, mnist)")


def cloud_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    return settings.replace(**{name: getattr(args, name, None) for name in CLOUD_FIELDS})


def _compile_vertex(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cloud_config import CloudConfig

    settings = cloud_settings(args, settings)
    # Missing cloud settings are reported before the pipeline modules import TensorFlow and TFX.
    CloudConfig.from_settings(settings)
    from pipeline.vertex import compile_vertex

    cfg = pipeline_config_from(args, settings).on_vertex()
    output = Path(args.output) if args.output else settings.vertex_dir / f"{cfg.pipeline_name}.json"
    compiled = compile_vertex(cfg, output)
    print(f"compiled {len(compiled.tasks)} tasks ({compiled.size_bytes} bytes) to {display_path(compiled.path)}")
    print(f"  pipeline root : {compiled.pipeline_root}")
    print(f"  image         : {cfg.cloud.image}")
    print(f"  registry      : {cfg.cloud.registry_root} (model {cfg.cloud.model_name})")
    print(f"  push target   : {cfg.cloud.push_target} ({cfg.cloud.region})")
    if args.submit:
        from pipeline.vertex import console_url, submit

        name = submit(cfg.cloud, compiled.path, cfg.pipeline_name, cfg.enable_cache,
                      parameter_values=lambda: data_fingerprint_parameter(cfg))
        print(f"submitted {name}")
        print(f"  {console_url(name)}")
    return 0


def data_fingerprint_parameter(cfg: PipelineConfig) -> dict[str, str]:
    """The compiled pipeline's `source_fingerprint` run-time parameter: the content fingerprint of
    the rows each split reads, from real BigQuery (pipeline/components/cloud_example_gen.py)."""
    from pipeline.components.cloud_example_gen import SOURCE_FINGERPRINT
    from pipeline.local_run import source_fingerprint

    cloud_cfg = dataclasses.replace(cfg, settings=cfg.settings.replace(bq_target="cloud"))
    return {SOURCE_FINGERPRINT: source_fingerprint(cloud_cfg)}


# ---- registration (called by mlpipe/cli.py) ---------------------------------------------------------

def register_run(sub, add_settings_flags) -> None:
    p = sub.add_parser("run", help="run the TFX pipeline locally (LocalDagRunner)",
                       description="BigQuery → StatisticsGen → SchemaGen → ExampleValidator → "
                       "Transform → AdaNet Trainer → Evaluator (vs baseline) → Pusher.")
    add_pipeline_flags(p)
    add_registry_flags(p)
    add_settings_flags(p)
    p.set_defaults(handler=_run)


def register_compile(sub, add_settings_flags) -> None:
    p = sub.add_parser(
        "compile-vertex", help="compile the pipeline for Vertex AI Pipelines (optionally submit it)",
        description="Compile create_pipeline() with KubeflowV2DagRunner to a PipelineJob JSON: stock "
        "BigQueryExampleGen on PROJECT.DATASET.*, Beam on Dataflow, every step in --image, blessed models into "
        "the bucket registry GCS_ROOT/registry and a Vertex AI endpoint. Compiling needs no network or account.",
    )
    p.add_argument("--output", help="where to write the JSON (default STATE_DIR/vertex/PIPELINE.json)")
    p.add_argument("--submit", action="store_true",
                   help="submit the compiled pipeline to Vertex AI Pipelines (needs credentials)")
    add_pipeline_flags(p)
    add_cloud_flags(p)
    add_settings_flags(p)
    p.set_defaults(handler=_compile_vertex)


# ---- the flywheel ---------------------------------------------------------------------------------

def _flywheel(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.flywheel.policy import Policy
    from pipeline import flywheel

    policy = Policy(min_new_labels=args.min_new_labels, retrain_on_drift=not args.no_drift,
                    schedule_hours=args.schedule_hours, canary_share=args.canary_share,
                    min_labelled=args.min_labelled, promote_margin=args.promote_margin)
    cfg = pipeline_config_from(args, registry_settings(args, settings))

    def show(t: flywheel.Turn) -> None:
        print(f"decision: {t.decision.describe()}")
        print(f"  → {t.result}", flush=True)

    if args.watch:
        flywheel.watch(cfg, policy, args.interval, show)
    else:
        show(flywheel.turn(cfg, policy, dry_run=args.dry_run))
    return 0


def register_flywheel(sub, add_settings_flags) -> None:
    p = sub.add_parser(
        "flywheel", help="decide whether to retrain, promote or end a rollout, and do it",
        description="Look at drift, new labels in DATASET.feedback, the time since the last run and "
        "the challenger's online accuracy; retrain (learning from the feedback, the result rolled out "
        "as a canary challenger), promote or end the rollout; print and record every decision with its "
        "reasons (STATE_DIR/flywheel/decisions.jsonl, and the registry's audit log).",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="one decision, then exit")
    mode.add_argument("--watch", action="store_true", help="decide every --interval seconds until stopped")
    p.add_argument("--interval", type=float, default=600.0, help="seconds between decisions with --watch")
    p.add_argument("--dry-run", action="store_true", help="decide and record, but do nothing")
    g = p.add_argument_group("policy")
    g.add_argument("--min-new-labels", type=int, default=200,
                   help="retrain after this many new labels since the last run (0: never for labels)")
    g.add_argument("--no-drift", action="store_true", help="do not retrain because of drift")
    g.add_argument("--schedule-hours", type=float, help="retrain at least every N hours")
    g.add_argument("--canary-share", type=float, default=0.2,
                   help="share of the default's traffic a retrained model answers (default 0.2)")
    g.add_argument("--min-labelled", type=int, default=50,
                   help="labelled predictions of challenger and default needed to judge (default 50)")
    g.add_argument("--promote-margin", type=float, default=0.0,
                   help="challenger's online accuracy must beat the default's by this much (0..1)")
    add_pipeline_flags(p)
    add_registry_flags(p)
    add_settings_flags(p)
    p.set_defaults(handler=_flywheel)
