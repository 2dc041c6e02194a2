"""Feedback over real HTTP into the BigQuery emulator: never lost, never duplicated, bad input → 4xx."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from mlpipe.bigquery import service
from mlpipe.bigquery.client import query_rows
from mlpipe.config import REPO_ROOT
from mlpipe.errors import NotFoundError
from mlpipe.registry import registry_for
from tests.conftest import make_settings
from tests.serving.conftest import populate
from tests.serving.server import cli_flags, start_server

ML = "/v1/projects/local-project/models/mnist"
FEEDBACK = f"{ML}:feedback"
JSON = {"Content-Type": "application/json"}

pytestmark = pytest.mark.e2e  # its own emulator and server


@pytest.fixture(scope="module")
def fb_server(tmp_path_factory, fake_models):
    """Its own emulator (the 503 test stops and restarts it) and a server logging to it."""
    state = tmp_path_factory.mktemp("feedback-state")
    settings = make_settings(state, log_predictions=True)
    service.start(settings)
    try:
        populate(registry_for(settings), fake_models)
        server = start_server(settings, state)
        try:
            yield server
        finally:
            server.stop()
    finally:
        service.stop(settings)


def _rows(settings, where: str = "TRUE") -> list[dict]:
    try:
        return query_rows(settings, f"SELECT * FROM `{settings.table_id('feedback')}` WHERE {where}")
    except NotFoundError:
        return []


def _predict(server, images, path=f"{ML}:predict"):
    status, doc, headers = server.request("POST", path, {"instances": [{"image": i.tolist()} for i in images]},
                                          timeout=120)
    assert status == 200, doc
    return doc["predictions"], headers["X-Model-Version"].split("/")[1]


def _send(server, doc, path=FEEDBACK, headers=JSON):
    return server.request("POST", path, doc, headers=headers, timeout=60)


def test_correction_round_trip_and_resend_is_one_row(fb_server, mnist_images):
    preds, version = _predict(fb_server, mnist_images[:3])
    pid = preds[1]["predictionId"]
    status, doc, _ = _send(fb_server, {"predictionId": pid, "label": 7})
    assert status == 201 and doc["status"] == "recorded", doc
    again, doc2, _ = _send(fb_server, {"predictionId": pid, "label": 7})
    assert again == 200 and doc2["status"] == "already recorded" and doc2["feedbackId"] == doc["feedbackId"]
    rows = _rows(fb_server.settings, f"prediction_id = '{pid}'")
    assert len(rows) == 1
    row = rows[0]
    assert row["source"] == "correction" and row["label"] == 7 and row["version"] == version == "v1"
    assert row["predicted_class"] == preds[1]["class_ids"][0] and row["model"] == "mnist"
    assert row["image"] == np.rint(mnist_images[1]).astype(int).tolist() and row["time"] is not None
    # A different label for the same prediction is different feedback: a second row.
    status, _, _ = _send(fb_server, {"predictionId": pid, "label": 1})
    assert status == 201 and len(_rows(fb_server.settings, f"prediction_id = '{pid}'")) == 2


def test_example_feedback_on_tf_serving_route(fb_server, mnist_images):
    image = mnist_images[5].reshape(28, 28).astype(int).tolist()
    status, doc, _ = _send(fb_server, {"image": image, "label": 4}, path="/v1/models/mnist:feedback")
    assert status == 201, doc
    rows = _rows(fb_server.settings, f"feedback_id = '{doc['feedbackId']}'")
    assert len(rows) == 1 and rows[0]["source"] == "example" and rows[0]["version"] == "v1"
    assert rows[0]["image"] == np.ravel(image).tolist() and rows[0]["prediction_id"] is None
    status, _, _ = _send(fb_server, {"image": image, "label": 4})  # the same example on the ml v1 route
    assert status == 200 and len(_rows(fb_server.settings, f"feedback_id = '{doc['feedbackId']}'")) == 1


def test_cli_resolves_a_prediction_id_from_the_prediction_log(fb_server, mnist_images):
    """A separate process has no memory of the server's predictions: it reads the prediction log."""
    preds, _ = _predict(fb_server, mnist_images[10:12], path="/v1/models/mnist/labels/champion:predict")
    pid = preds[0]["predictionId"]
    settings = fb_server.settings
    deadline = time.monotonic() + 60
    while not query_rows(settings, f"SELECT 1 FROM `{settings.table_id('predictions')}` "
                                   f"WHERE prediction_id = '{pid}'"):
        assert time.monotonic() < deadline, "the prediction log row did not arrive"
        time.sleep(0.5)
    cmd = [sys.executable, "-m", "mlpipe.cli", "feedback", "--prediction-id", pid, "--label", "2",
           *cli_flags(settings)]
    out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "recorded" in out.stdout
    rows = _rows(settings, f"prediction_id = '{pid}'")
    assert len(rows) == 1 and rows[0]["version"] == "v2" and rows[0]["label"] == 2
    assert rows[0]["image"] == np.rint(mnist_images[10]).astype(int).tolist()
    unknown = [sys.executable, "-m", "mlpipe.cli", "feedback", "--prediction-id", "f" * 32 + "-0", "--label", "2",
               *cli_flags(settings)]
    bad = subprocess.run(unknown, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "unknown predictionId" in bad.stderr and "Traceback" not in bad.stderr


def test_bad_feedback_is_a_4xx_and_writes_nothing(fb_server, mnist_images):
    preds, _ = _predict(fb_server, mnist_images[:1])
    pid = preds[0]["predictionId"]
    before = len(_rows(fb_server.settings))
    unknown = "0" * 32 + "-0"
    for doc, want in (
        ({"predictionId": unknown, "label": 3}, 404),
        ({"predictionId": pid, "label": 10}, 400),
        ({"predictionId": pid, "label": True}, 400),
        ({"predictionId": "../../etc", "label": 3}, 400),
        ({"image": [0] * 783, "label": 3}, 400),
        ({"image": [[0] * 28] * 27, "label": 3}, 400),
        ({"image": [0] * 784}, 400),
        ({"predictionId": pid, "label": 3, "extra": 1}, 400),
        ([{"predictionId": pid, "label": 3}], 400),
    ):
        status, body, headers = _send(fb_server, doc)
        assert status == want, (doc, body)
        assert set(body) == {"error"} and headers["Content-Type"] == "application/json"
    status, body, _ = fb_server.request("POST", FEEDBACK, raw=b'{"predictionId":', headers=JSON)
    assert status == 400 and "not valid JSON" in body["error"]
    for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
        status, body, _ = _send(fb_server, {"predictionId": pid, "label": 3},
                                headers={"Content-Type": ctype} if ctype else {})
        assert status == 415, (ctype, body)
    status, _, _ = _send(fb_server, {"predictionId": pid, "label": 3}, path=f"{ML}x:feedback")
    assert status == 404
    assert len(_rows(fb_server.settings)) == before


def test_bigquery_down_is_a_503_and_the_retry_lands(fb_server, mnist_images):
    preds, _ = _predict(fb_server, mnist_images[20:21])
    pid = preds[0]["predictionId"]
    settings = fb_server.settings
    service.stop(settings)
    try:
        status, doc, headers = _send(fb_server, {"predictionId": pid, "label": 9})
        assert status == 503, doc
        assert int(headers["Retry-After"]) > 0 and "retry" in doc["error"]
    finally:
        service.start(settings)
    # A client retries after Retry-After until it is acknowledged; the feedback then exists once.
    for _ in range(12):
        status, doc, headers = _send(fb_server, {"predictionId": pid, "label": 9})
        if status != 503:
            break
        time.sleep(int(headers["Retry-After"]))
    assert status in (200, 201) and doc["status"] in ("recorded", "already recorded"), doc
    assert len(_rows(settings, f"prediction_id = '{pid}'")) == 1
