"""The real e2e model (the `two_runs` fixture's v2) served over HTTP by `mlpipe serve`, in every
accepted instance format, reproduces the accuracy TFMA's Evaluator recorded on the same test rows;
`mlpipe serving-check` (what `make run` ends with) predicts those rows over HTTP too."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mlpipe.bigquery.read import read_table_numpy
from mlpipe.config import REPO_ROOT
from tests.serving.server import start_server

pytestmark = pytest.mark.e2e

BATCH = 250


@pytest.fixture(scope="module")
def test_rows(two_runs):
    """(labels, images uint8 [n, 784]) of exactly the rows the Evaluator scored: key < the test limit."""
    keys, labels, images = read_table_numpy(two_runs.settings, "test")
    n = two_runs.config.row_limits["test"]
    keep = keys < n
    assert keep.sum() == n
    return labels[keep], images[keep]


@pytest.fixture(scope="module")
def server(two_runs, tmp_path_factory):
    settings = two_runs.settings.replace(log_predictions=False)
    server = start_server(settings, tmp_path_factory.mktemp("served-e2e"))
    try:
        yield server
    finally:
        server.stop()


def _png(pixels: np.ndarray) -> dict:
    buf = io.BytesIO()
    Image.fromarray(pixels.reshape(28, 28).astype(np.uint8), mode="L").save(buf, format="PNG")
    return {"image_bytes": {"b64": base64.b64encode(buf.getvalue()).decode()}}


FORMATS = {
    "784": lambda img: [int(v) for v in img],
    "28x28": lambda img: img.reshape(28, 28).astype(int).tolist(),
    "28x28x1": lambda img: img.reshape(28, 28, 1).astype(int).tolist(),
    "png": _png,
}


def _served_classes(server, path: str, images: np.ndarray, encode) -> np.ndarray:
    predicted = []
    for start in range(0, len(images), BATCH):
        body = {"instances": [encode(img) for img in images[start:start + BATCH]]}
        status, doc, _ = server.request("POST", path, body, timeout=300)
        assert status == 200, (status, doc, server.log()[-2000:])
        predicted += [p["class_ids"][0] for p in doc["predictions"]]
    return np.asarray(predicted)


@pytest.mark.parametrize("route", ["ml", "tfserving"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_served_model_reproduces_evaluator_accuracy(two_runs, server, test_rows, route, fmt):
    labels, images = test_rows
    model = two_runs.settings.model_name
    path = (f"/v1/projects/{two_runs.settings.project}/models/{model}:predict" if route == "ml"
            else f"/v1/models/{model}:predict")
    predicted = _served_classes(server, path, images, FORMATS[fmt])
    accuracy = float(np.mean(predicted == labels))
    assert two_runs.second.pushed_version == "v2"  # the default version is what was served
    assert accuracy == pytest.approx(two_runs.second.accuracy, abs=1e-6)


def test_serving_check_predicts_test_rows_over_http(two_runs, server, test_rows):
    """`mlpipe serving-check` starts its own server, prints each row and the count it got right; the
    rows and count agree with what the served model answers for the same images."""
    settings = two_runs.settings
    count = 25
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPE_")}
    env |= {"MLPIPE_REGISTRY_ROOT": settings.registry_location, "MLPIPE_MODEL": settings.model_name,
            "MLPIPE_LOG_PREDICTIONS": "0"}
    cmd = [sys.executable, "-m", "mlpipe.cli", "serving-check", "--count", str(count),
           "--state-dir", str(settings.state_dir), "--dataset", settings.dataset,
           "--bq-port", str(settings.bq_port), "--bq-grpc-port", str(settings.bq_grpc_port)]
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    labels, images = test_rows
    expected = _served_classes(server, f"/v1/models/{settings.model_name}:predict", images[:count],
                               FORMATS["784"])
    rows = [line.split() for line in done.stdout.splitlines()[1:-1]]
    assert [int(r[0]) for r in rows] == list(range(count))
    assert [int(r[1]) for r in rows] == labels[:count].tolist()
    assert [int(r[2]) for r in rows] == expected.tolist()
    correct = int(np.sum(expected == labels[:count]))
    assert re.search(rf"^{correct}/{count} correct over HTTP$", done.stdout, re.M), done.stdout
