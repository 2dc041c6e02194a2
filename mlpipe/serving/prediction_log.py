"""Append every served prediction to BigQuery `DATASET.predictions`, off the request path.

Requests only put rows on a bounded in-memory queue (never blocking); one background thread sends
them with `insert_rows_json` every `flush_rows` rows or `flush_seconds`, creating the table on first
use. A slow or dead BigQuery never fails or delays a prediction: rows that cannot be queued or sent
are dropped with a warning. The thread is started on first use, inside the serving worker process
(threads do not survive the fork of a pre-forking server).

Each row carries the instance's `prediction_id` (returned to the caller as `predictionId`) and its
pixels, so that feedback can name a served prediction and `mlpipe monitor` can see what was served.
`RecentPredictions` keeps the last served instances in memory too: feedback for a prediction whose
log row is still queued (or was dropped) is resolved from there.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from mlpipe.config import Settings

log = logging.getLogger(__name__)

TABLE = "predictions"
SCHEMA = (
    ("time", "TIMESTAMP", "REQUIRED"),
    ("model", "STRING", "REQUIRED"),
    ("version", "STRING", "REQUIRED"),
    ("instance", "INT64", "REQUIRED"),
    ("predicted_class", "INT64", "REQUIRED"),
    ("confidence", "FLOAT64", "REQUIRED"),
    ("latency_ms", "FLOAT64", "REQUIRED"),
    ("request_id", "STRING", "REQUIRED"),
    # Added later (NULLABLE/REPEATED, so older tables gain them in place).
    ("prediction_id", "STRING", "NULLABLE"),
    ("image", "INT64", "REPEATED"),
    # served: returned to the caller; canary: a challenger's answer, returned; shadow: a
    # challenger's prediction on a copy of the request, not returned.
    ("role", "STRING", "NULLABLE"),
)
# Seconds one BigQuery call may take, retries included, before its rows are given up.
CALL_DEADLINE_S = 5.0
WARN_EVERY_S = 10.0
# How long a stopping server waits for the last rows to be sent.
EXIT_FLUSH_S = CALL_DEADLINE_S


class PredictionLogger:
    def __init__(
        self,
        settings: Settings,
        flush_rows: int = 500,
        flush_seconds: float = 2.0,
        max_queued: int = 20_000,
    ) -> None:
        self.settings = settings
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_queued)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._client = None
        self._table_ready = False
        self._last_warning = -WARN_EVERY_S
        self.sent = 0
        self.dropped = 0

    @property
    def table_id(self) -> str:
        return self.settings.table_id(TABLE)

    def log(
        self, model: str, version: str, class_ids: list[int], confidences: list[float],
        latency_ms: float, request_id: str, prediction_ids: list[str] | None = None,
        images: np.ndarray | None = None, role: str = "served",
    ) -> None:
        """Queue one row per instance; never blocks, never raises."""
        i = 0
        try:
            self._ensure_thread()
            now = datetime.now(timezone.utc).isoformat()
            for i, (cls, conf) in enumerate(zip(class_ids, confidences, strict=True)):
                row = {
                    "time": now, "model": model, "version": version, "instance": i,
                    "predicted_class": int(cls), "confidence": float(conf),
                    "latency_ms": round(latency_ms, 3), "request_id": request_id, "role": role,
                }
                if prediction_ids is not None:
                    row["prediction_id"] = prediction_ids[i]
                if images is not None:
                    row["image"] = pixels_of(images[i])
                self._queue.put_nowait(row)
        except queue.Full:
            self.dropped += len(class_ids) - i
            self._warn(f"prediction log queue is full ({self._queue.maxsize} rows); dropping rows")
        except Exception:
            log.warning("prediction logging failed; the prediction was served anyway", exc_info=True)

    def close(self, timeout: float = EXIT_FLUSH_S) -> None:
        """Send what is queued (bounded by `timeout`) and stop the thread."""
        atexit.unregister(self.close)  # closed once is enough; do not wait again at exit
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
                self._thread.start()
                atexit.register(self.close)

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch:
                self._send(batch)
            if self._stop.is_set() and self._queue.empty():
                return

    def _collect(self) -> list[dict[str, Any]]:
        """Rows until `flush_rows` are gathered, `flush_seconds` passed since the first, or stop."""
        batch: list[dict[str, Any]] = []
        deadline: float | None = None
        while len(batch) < self.flush_rows:
            if self._stop.is_set():
                return batch + _drain(self._queue)
            wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=wait))
            except queue.Empty:
                if deadline is None:
                    return batch
                continue
            if deadline is None:
                deadline = time.monotonic() + self.flush_seconds
        return batch

    def _send(self, rows: list[dict[str, Any]]) -> None:
        try:
            client = self._bq()
            if not self._table_ready:
                self._create_table(client)
                self._table_ready = True
            errors = client.insert_rows_json(self.table_id, rows, retry=_retry(), timeout=CALL_DEADLINE_S)
        except Exception as e:
            self.dropped += len(rows)
            reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            self._warn(f"could not log {len(rows)} predictions to {self.table_id} (dropped): {reason}")
            return
        if errors:
            self.dropped += len(errors)
            self._warn(f"BigQuery rejected {len(errors)} of {len(rows)} prediction rows: {errors[:1]}")
        self.sent += len(rows) - len(errors)

    def _warn(self, message: str) -> None:
        """At most one warning per WARN_EVERY_S: a dead BigQuery must not flood the server log."""
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_S:
            self._last_warning = now
            log.warning("%s (%d rows dropped so far)", message, self.dropped)

    def _bq(self):
        if self._client is None:
            from mlpipe.bigquery.client import bq_client

            self._client = bq_client(self.settings, check=False)
        return self._client

    def _create_table(self, client) -> None:
        from mlpipe.bigquery.tables import ensure_table

        ensure_table(client, self.settings, TABLE, SCHEMA, retry=_retry(), timeout=CALL_DEADLINE_S)


def pixels_of(image: np.ndarray) -> list[int]:
    """A served instance's pixels as the model saw them: rounded to integers 0..255."""
    return np.rint(np.asarray(image, dtype=np.float32)).astype(np.int64).tolist()


@dataclass(frozen=True)
class ServedInstance:
    prediction_id: str
    model: str
    version: str
    predicted_class: int
    image: np.ndarray  # uint8 [784]


class RecentPredictions:
    """The last `capacity` served instances of this process, by prediction id (thread-safe)."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, ServedInstance] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, model: str, version: str, prediction_ids: list[str], class_ids: list[int],
            images: np.ndarray) -> None:
        pixels = np.rint(images).astype(np.uint8)
        with self._lock:
            for pid, cls, img in zip(prediction_ids, class_ids, pixels, strict=True):
                self._items[pid] = ServedInstance(pid, model, version, int(cls), img)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, prediction_id: str) -> ServedInstance | None:
        with self._lock:
            return self._items.get(prediction_id)


def _retry():
    """BigQuery's default retry, cut to CALL_DEADLINE_S (its own default keeps trying for minutes)."""
    from google.cloud import bigquery

    return bigquery.DEFAULT_RETRY.with_deadline(CALL_DEADLINE_S)


def _drain(q: queue.Queue) -> list[dict[str, Any]]:
    rows = []
    while True:
        try:
            rows.append(q.get_nowait())
        except queue.Empty:
            return rows
