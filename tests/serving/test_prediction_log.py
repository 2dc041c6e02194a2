"""Served predictions land in BigQuery `DATASET.predictions`; a dead BigQuery never fails one."""

from __future__ import annotations

import time

import pytest

from mlpipe.bigquery.client import query_rows
from mlpipe.errors import NotFoundError
from mlpipe.registry import registry_for
from mlpipe.serving.prediction_log import PredictionLogger
from tests.conftest import make_settings
from tests.serving.conftest import populate
from tests.serving.server import start_server

PREDICT = "/v1/projects/local-project/models/mnist:predict"


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_dead_bigquery_never_fails_predictions(served, mnist_images):
    # The session server logs to a BigQuery port where nothing listens.
    for i in range(20):
        body = {"instances": [{"image": img.tolist()} for img in mnist_images[i : i + 3]]}
        status, doc, _ = served.request("POST", PREDICT, body, timeout=10)
        assert status == 200 and len(doc["predictions"]) == 3
    _wait_for(lambda: "could not log" in served.log(), 30, "the dropped-rows warning")
    assert "unhandled" not in served.log()  # no catch-all (ours or the framework hook) fired


@pytest.fixture(scope="module")
def logging_server(bq_settings, tmp_path_factory, fake_models):
    state = tmp_path_factory.mktemp("logging-state")
    settings = bq_settings.replace(state_dir=state, log_predictions=True)
    populate(registry_for(settings), fake_models)
    server = start_server(settings, state)
    yield server
    server.stop()


@pytest.mark.e2e  # its own server and BigQuery emulator: > 10 s
def test_predictions_are_logged_to_bigquery(logging_server, mnist_images):
    sent = {}
    for i, (path, n) in enumerate(((PREDICT, 3), ("/v1/models/mnist/labels/champion:predict", 2))):
        rid = f"logtest-{time.time_ns()}-{i}"
        body = {"instances": [{"image": img.tolist()} for img in mnist_images[:n]]}
        status, doc, headers = logging_server.request("POST", path, body, headers={"X-Request-Id": rid},
                                                      timeout=120)
        assert status == 200 and headers["X-Request-Id"] == rid
        sent[rid] = (headers["X-Model-Version"].split("/")[1], doc["predictions"])
    settings = logging_server.settings
    ids = ", ".join(f"'{rid}'" for rid in sent)
    sql = (f"SELECT time, model, version, instance, predicted_class, confidence, latency_ms, request_id "
           f"FROM `{settings.table_id('predictions')}` WHERE request_id IN ({ids}) "
           f"ORDER BY request_id, instance")
    def logged():
        try:
            rows = query_rows(settings, sql)
        except NotFoundError:  # the first flush has not created the dataset/table yet
            return None
        return rows if len(rows) == 5 else None

    rows = _wait_for(logged, 60, "5 logged rows")
    for row in rows:
        version, predictions = sent[row["request_id"]]
        pred = predictions[row["instance"]]
        assert row["model"] == "mnist" and row["version"] == version
        assert row["predicted_class"] == pred["class_ids"][0]
        assert row["confidence"] == pytest.approx(max(pred["probabilities"]), rel=1e-6)
        assert row["latency_ms"] > 0 and row["time"] is not None
    assert {r["version"] for r in rows} == {"v1", "v2"}


def test_logger_never_blocks_and_drops_when_full(tmp_path):
    settings = make_settings(tmp_path)  # BigQuery ports where nothing listens
    logger = PredictionLogger(settings, flush_rows=5, flush_seconds=60, max_queued=10)
    started = time.perf_counter()
    for _ in range(50):
        logger.log("mnist", "v1", [3, 4], [0.9, 0.8], 1.5, "rid")
    assert time.perf_counter() - started < 1.0
    # At most the queue plus the batch the sender holds survive; the rest is dropped at once.
    assert logger.dropped >= 100 - 10 - 5
    logger.close(timeout=0)  # the daemon sender gives up on its own; nothing to wait for
    assert logger.sent == 0
