"""`mlpipe console`: the web console on 127.0.0.1 (runs, models, lineage, data, serving, try it)."""

from __future__ import annotations

import argparse
import logging
import socket
import threading
from pathlib import Path

from mlpipe.config import Settings
from mlpipe.errors import ServiceStateError, UsageError

log = logging.getLogger(__name__)

DEFAULT_PORT = 8090
# Library chatter at import (absl, Beam, TensorFlow) that would bury the console's own lines; -v keeps it.
NOISY_LOGGERS = {"absl": logging.WARNING, "apache_beam": logging.WARNING, "tensorflow": logging.ERROR,
                 "werkzeug": logging.WARNING}


def _console(args: argparse.Namespace, settings: Settings) -> int:
    from werkzeug.serving import make_server

    from mlpipe.console.app import create_app
    from mlpipe.registry.cli import registry_settings

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1-65535, not {args.port}")
    if not args.verbose:
        for name, level in NOISY_LOGGERS.items():
            logging.getLogger(name).setLevel(level)
    settings = registry_settings(args, settings)
    app = create_app(settings, Path(args.metadata_path) if args.metadata_path else None)
    # werkzeug prints its own paragraph and exits when the port is taken: check first, as `mlpipe serve` does.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((args.host, args.port))
        except OSError as e:
            raise ServiceStateError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except (OSError, SystemExit) as e:
        raise ServiceStateError(f"cannot listen on {args.host}:{args.port}: {e}") from None
    # The first page would otherwise pay for importing the BigQuery and ML Metadata clients (seconds).
    threading.Thread(target=_warm_up, name="console-warm-up", daemon=True).start()
    print(f"mlpipe console on http://{args.host}:{server.port}/ (model {settings.model_name}, "
          f"registry {settings.registry_location}); Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _warm_up() -> None:
    try:
        import mlpipe.bigquery.client  # noqa: F401
        import mlpipe.lineage.report  # noqa: F401
        import mlpipe.metadata.runs  # noqa: F401
    except Exception:  # the page that needs it will say what is wrong
        log.debug("console warm-up import failed", exc_info=True)


def register(sub, add_settings_flags) -> None:
    from mlpipe.registry.cli import add_registry_flags

    p = sub.add_parser(
        "console", help="web console: runs, models, lineage, data, serving, try a digit",
        description="Serve the web console: the overview, runs (DAG, metrics, anomalies, compare), model "
        "versions (search report, confusion matrix, set default / alias / delete), lineage, BigQuery data "
        "and TFDV statistics, the prediction log, and a drawing pad that calls the serving app. Reads ML "
        "Metadata, the registry, BigQuery and the prediction log, like the other commands.")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: only this machine; the console has no login)")
    p.add_argument("--metadata-path", dest="metadata_path",
                   help="ML Metadata SQLite file (default STATE_DIR/metadata/mnist-automl.sqlite)")
    add_registry_flags(p)
    add_settings_flags(p)
    p.set_defaults(handler=_console)
