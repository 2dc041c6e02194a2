"""End of `make run`: start the serving function, predict a few test images over HTTP, stop it."""

from __future__ import annotations

import logging
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from mlpipe.config import Settings
from mlpipe.errors import ServiceStateError
from mlpipe.procutil import free_loopback_port

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class CheckedPrediction:
    key: int
    label: int
    predicted: int
    confidence: float


@contextmanager
def running_server(settings: Settings, port: int | None = None):
    """A functions-framework server subprocess on 127.0.0.1; yields its base URL."""
    import requests

    from mlpipe.serving.server import server_command, server_environ

    port = port or free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    # Its log goes to a file: a pipe nobody reads fills up (64 KB) and then blocks the server.
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.logs_dir / f"server-{port}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            server_command("127.0.0.1", port), env=server_environ(settings),
            stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-500:]
                raise ServiceStateError(f"the prediction server exited (log {log_path}): {tail}")
            try:
                requests.get(f"{url}/v1/projects/{settings.project}/models", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise ServiceStateError(
                        f"the prediction server did not answer within {READY_TIMEOUT_S:.0f}s"
                    ) from None
                time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def check_serving(settings: Settings, count: int = 10, port: int | None = None) -> list[CheckedPrediction]:
    """Predict the first `count` rows of the test table through HTTP with the client."""
    from mlpipe.bigquery.client import query_arrow
    from mlpipe.bigquery.read import arrow_to_numpy
    from mlpipe.client import PredictionClient

    table = query_arrow(
        settings, f"SELECT key, label, image FROM `{settings.table_id('test')}` WHERE key < {int(count)}"
    )
    keys, labels, images = arrow_to_numpy(table)
    with running_server(settings, port) as url:
        client = PredictionClient(url, project=settings.project, model=settings.model_name)
        predictions = client.predict(images.astype(np.float32), batch_size=100)
    return [
        CheckedPrediction(int(k), int(y), int(p), float(c))
        for k, y, p, c in zip(keys, labels, predictions.class_ids, predictions.confidence, strict=True)
    ]


def _serving_check(args, settings: Settings) -> int:
    rows = check_serving(settings, count=args.count, port=args.port)
    print(f"{'test key':>8}  {'label':>5}  {'predicted':>9}  {'confidence':>10}")
    for r in rows:
        mark = "" if r.label == r.predicted else "  ✗"
        print(f"{r.key:>8}  {r.label:>5}  {r.predicted:>9}  {r.confidence:>10.3f}{mark}")
    correct = sum(r.label == r.predicted for r in rows)
    print(f"{correct}/{len(rows)} correct over HTTP")
    return 0


def register(sub, add_settings_flags) -> None:
    p = sub.add_parser(
        "serving-check", help="start the server, predict a few test images over HTTP, stop it",
        description="Starts `mlpipe serve` on a free 127.0.0.1 port, predicts the first N rows of the "
        "test table with the Python client (the registry's default version) and prints them with "
        "their true labels.",
    )  # fmt: skip
    p.add_argument("--count", type=int, default=10, help="how many test images (default 10)")
    p.add_argument("--port", type=int, help="port for the temporary server (default: a free one)")
    add_settings_flags(p)
    p.set_defaults(handler=_serving_check)
