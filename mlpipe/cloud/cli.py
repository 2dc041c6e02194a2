"""`mlpipe function-bundle OUT/`: the serving function as a Cloud Functions source directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlpipe.config import Settings


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
