"""`mlpipe compile-vertex [--submit]` and `mlpipe function-bundle OUT/`."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlpipe.config import Settings


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
    g.add_argument("--push-target", dest="push_target", choices=["ai_platform", "vertex"],
                   help="AI Platform Prediction model or Vertex AI endpoint (MLPIPE_PUSH_TARGET, ai_platform)")
    g.add_argument("--service-account", dest="service_account",
                   help="service account of the pipeline job and Dataflow workers (MLPIPE_SERVICE_ACCOUNT)")
    g.add_argument("--model", dest="model_name",
                   help="AI Platform model / Vertex endpoint name (MLPIPE_MODEL, mnist)")


CLOUD_FIELDS = ("region", "gcs_root", "image", "dataflow_temp_location", "dataflow_max_workers",
                "push_target", "service_account", "model_name")


def cloud_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    return settings.replace(**{name: getattr(args, name, None) for name in CLOUD_FIELDS})


def _compile_vertex(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.cloud.config import CloudConfig

    settings = cloud_settings(args, settings)
    # Missing cloud settings are reported before the pipeline modules import TensorFlow and TFX.
    CloudConfig.from_settings(settings)
    from mlpipe.cloud.compile import compile_vertex
    from mlpipe.pipeline_cli import pipeline_config_from

    cfg = pipeline_config_from(args, settings).on_vertex()

    output = Path(args.output) if args.output else settings.state_dir / "vertex" / f"{cfg.pipeline_name}.json"
    compiled = compile_vertex(cfg, output)
    print(f"compiled {len(compiled.tasks)} tasks ({compiled.size_bytes} bytes) to {compiled.path}")
    print(f"  pipeline root : {compiled.pipeline_root}")
    print(f"  image         : {cfg.cloud.image}")
    print(f"  push target   : {cfg.cloud.push_target} (model {cfg.cloud.model_name}, {cfg.cloud.region})")
    if args.submit:
        from mlpipe.cloud.submit import console_url, submit

        name = submit(cfg.cloud, compiled.path, cfg.pipeline_name, cfg.enable_cache)
        print(f"submitted {name}")
        print(f"  {console_url(name)}")
    return 0


def _function_bundle(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.cloud.function_bundle import RUNTIME, write_bundle

    settings = settings.replace(registry_root=args.registry_root, model_name=args.model_name,
                                log_predictions=args.log_predictions)
    bundle = write_bundle(Path(args.out), settings, force=args.force)
    print(f"wrote {bundle.path}: main.py (target {bundle.target}), requirements.txt, env.yaml, "
          f"{len(bundle.modules)} mlpipe modules")
    root = bundle.env["MLPIPE_REGISTRY_ROOT"]
    if not root.startswith("gs://"):
        print(f"note: the registry root {root} is a local path; a deployed function needs "
              "--registry-root gs://BUCKET/registry")
    print(f"deploy: gcloud functions deploy mnist-predict --gen2 --runtime={RUNTIME} --region=REGION "
          f"--source={bundle.path} --entry-point={bundle.target} --trigger-http --memory=2Gi "
          f"--env-vars-file={bundle.path / 'env.yaml'}")
    return 0


def register(sub, add_settings_flags) -> None:
    p = sub.add_parser(
        "compile-vertex", help="compile the pipeline for Vertex AI Pipelines (optionally submit it)",
        description="Compile create_pipeline() with KubeflowV2DagRunner to a PipelineJob JSON: stock "
        "BigQueryExampleGen on PROJECT.DATASET.*, Beam on Dataflow, every step in --image, the Pusher to "
        "AI Platform Prediction or a Vertex AI endpoint. Compiling needs no network or account.",
    )
    p.add_argument("--output", help="where to write the JSON (default STATE_DIR/vertex/PIPELINE.json)")
    p.add_argument("--submit", action="store_true",
                   help="submit the compiled pipeline to Vertex AI Pipelines (needs credentials)")
    from mlpipe.pipeline_cli import add_pipeline_flags

    add_pipeline_flags(p)
    add_cloud_flags(p)
    add_settings_flags(p)
    p.set_defaults(handler=_compile_vertex)

    p = sub.add_parser(
        "function-bundle", help="write a Cloud Functions source directory serving the registry",
        description="Write OUT/ (main.py, requirements.txt, env.yaml, the serving code) for "
        "`gcloud functions deploy`; it serves the same API as `mlpipe serve`.",
    )
    p.add_argument("out", help="directory to create")
    p.add_argument("--registry-root", dest="registry_root",
                   help="registry the function reads, e.g. gs://BUCKET/registry (MLPIPE_REGISTRY_ROOT)")
    p.add_argument("--model", dest="model_name", help="default model name (MLPIPE_MODEL, mnist)")
    p.add_argument("--no-log-predictions", dest="log_predictions", action="store_false", default=None,
                   help="do not append predictions to DATASET.predictions")
    p.add_argument("--force", action="store_true", help="replace an existing bundle directory")
    add_settings_flags(p)
    p.set_defaults(handler=_function_bundle)
