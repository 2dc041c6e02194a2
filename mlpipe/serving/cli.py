"""`mlpipe serve` (the function in functions-framework) and `mlpipe predict FILE...` (the client)."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any

from mlpipe.config import Settings
from mlpipe.registry.cli import add_registry_flags, registry_settings

DEFAULT_PORT = 8080


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.serving.server import serve

    settings = registry_settings(args, settings).replace(log_predictions=args.log_predictions,
                                                         serve_token=args.token)
    serve(settings, args.host, args.port, allowed_hosts=tuple(args.allowed_host))
    return 0  # not reached: serve() replaces the process


def read_instances(paths: list[str]) -> list[tuple[str, int, Any]]:
    """(file, index in file, instance) for PNG files, .npy arrays and JSON-lines files."""
    import numpy as np

    from mlpipe.client import to_instances
    from mlpipe.errors import NotFoundError, UsageError

    out: list[tuple[str, int, Any]] = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise NotFoundError(f"input file {name} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".png":
            # Sent as bytes: the server decodes the PNG, exactly as for any other client.
            b64 = base64.b64encode(path.read_bytes()).decode("ascii")
            out.append((name, 0, {"image_bytes": {"b64": b64}}))
        elif suffix == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except ValueError as e:
                raise UsageError(f"{name} is not a readable .npy array: {e}") from None
            if not np.issubdtype(array.dtype, np.number):
                raise UsageError(f"{name} holds {array.dtype} values; expected pixel numbers")
            out.extend((name, i, inst) for i, inst in enumerate(to_instances(array)))
        elif suffix in (".jsonl", ".ndjson", ".json"):
            lines = [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
            for i, (lineno, line) in enumerate(lines):
                try:
                    out.append((name, i, json.loads(line)))
                except ValueError as e:
                    raise UsageError(f"{name}:{lineno} is not a JSON instance: {e}") from None
        else:
            raise UsageError(f"{name}: use .png images, .npy arrays (n,784)/(n,28,28) or .jsonl instances")
    return out


def _predict(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.client import PredictionClient

    settings = registry_settings(args, settings)
    rows = read_instances(args.files)
    client = PredictionClient(args.url, project=settings.project, model=settings.model_name,
                              token=args.token or settings.serve_token or None)
    result = client.predict([inst for _, _, inst in rows], batch_size=args.batch_size,
                            version=args.version, alias=args.alias, progress=not args.quiet)
    width = max(len("FILE"), *(len(f) for f, _, _ in rows))
    print(f"{'FILE':<{width}}  {'INDEX':>5}  {'CLASS':>5}  {'CONFIDENCE':>10}")
    for (name, index, _), cls, conf in zip(rows, result.class_ids, result.confidence, strict=True):
        print(f"{name:<{width}}  {index:>5}  {cls:>5}  {conf:>10.4f}")
    print(f"({len(result)} predictions by {settings.model_name}/{result.version} at {args.url})")
    return 0


def register(sub, add_settings_flags) -> None:
    p = sub.add_parser(
        "serve", help="serve the registry over HTTP (functions-framework)",
        description="Run the serving function in functions-framework's server: AI Platform "
        "Prediction (ml v1) and TF Serving REST routes over the model registry.",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1); anything "
                   "beyond loopback needs --token")
    p.add_argument("--token", help="writes and predictions must send `Authorization: Bearer TOKEN` "
                   "(env MLPIPE_SERVE_TOKEN; required beyond loopback, at least 16 characters)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a Host name clients use to reach the server, besides the loopback names and "
                   "--host (repeatable; others get 403, which stops DNS rebinding)")
    p.add_argument("--no-log-predictions", dest="log_predictions", action="store_false", default=None,
                   help="do not append predictions to BigQuery DATASET.predictions "
                   "(env MLPIPE_LOG_PREDICTIONS=0)")
    add_registry_flags(p)
    add_settings_flags(p)
    p.set_defaults(handler=_serve)

    p = sub.add_parser(
        "predict", help="classify PNG / .npy / .jsonl files with a running server",
        description="Send images to a running `mlpipe serve` and print file, index, class and "
        "confidence. PNG: 28x28 grey; .npy: (n,784) or (n,28,28) raw 0-255 pixels; .jsonl: one "
        'instance per line ({"image": [...]} or {"image_bytes": {"b64": ...}}).',
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="server base URL")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", help="registry version, e.g. v2 (default: the default version)")
    which.add_argument("--alias", help="registry alias, e.g. champion")
    p.add_argument("--token", help="the server's token, for a server beyond loopback "
                   "(env MLPIPE_SERVE_TOKEN)")
    p.add_argument("--batch-size", type=int, default=100, help="instances per request (default 100)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_registry_flags(p, root=False)
    add_settings_flags(p)
    p.set_defaults(handler=_predict)
