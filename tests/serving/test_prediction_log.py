"""Served predictions land in BigQuery `DATASET.predictions`; a dead BigQuery never fails one."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from mlpipe.bigquery.client import query_rows
from mlpipe.errors import NotFoundError
from mlpipe.registry import registry_for
from mlpipe.serving import prediction_log
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


class HungServer:
    """A real TCP listener that accepts connections and never answers (a hung BigQuery)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self._conns.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def hung_bigquery(monkeypatch):
    # Without the per-call deadline the sender stays inside its first call for as long as the test runs.
    monkeypatch.setattr(prediction_log, "CALL_DEADLINE_S", 3600.0)
    server = HungServer()
    yield server
    server.close()


def test_logging_does_not_block_while_bigquery_hangs(tmp_path, hung_bigquery):
    settings = make_settings(tmp_path).replace(bq_port=hung_bigquery.port)
    logger = PredictionLogger(settings, flush_rows=5, flush_seconds=60, max_queued=10)
    for _ in range(5):  # one full batch: the sender takes it and calls BigQuery, which never answers
        logger.log("mnist", "v1", [3], [0.9], 1.5, "rid")
    assert hung_bigquery.accepted.wait(60), "the sender never connected to BigQuery"

    # 50 more requests while the sender is stuck: each log() returns at once (a blocking put would wait
    # on a sender that never comes back, and this thread would never finish).
    caller = threading.Thread(target=lambda: [logger.log("mnist", "v1", [3, 4], [0.9, 0.8], 1.5, "rid")
                                              for _ in range(50)], daemon=True)
    caller.start()
    caller.join(120)  # a deadlock detector, not a speed limit
    assert not caller.is_alive(), "PredictionLogger.log blocked on a hung BigQuery"
    assert logger._thread.is_alive() and logger.sent == 0  # the sender is still waiting for an answer
    # The queue holds 10 rows; the other 100 - 10 were dropped at once, not waited for.
    assert logger.dropped == 100 - 10
    logger.close(timeout=0)
