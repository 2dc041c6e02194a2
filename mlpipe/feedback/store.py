"""Users' labels into BigQuery `DATASET.feedback`: never lost, never duplicated.

A feedback document is either a correction of a served prediction, `{"predictionId": ID, "label": N}`
(the pixels and the model version come from the served instance: this process's recent predictions
or the prediction log), or a user-contributed example, `{"image": PIXELS, "label": N}` /
`{"image_bytes": {"b64": PNG}, "label": N}` (credited to the model version that serves by default).

Unlike the prediction log, a write is synchronous: `record` returns only after BigQuery accepted the
row, through one `MERGE` on the feedback id, a hash of what the feedback says. Sending the same
feedback again therefore leaves one row (and says so); BigQuery unreachable → `FeedbackUnavailable`
(HTTP 503 with Retry-After), and the caller's retry lands it.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpipe.config import Settings
from mlpipe.contract import NUM_CLASSES
from mlpipe.errors import NotFoundError, ServiceUnavailable, UsageError
from mlpipe.serving import prediction_log
from mlpipe.serving.instances import parse_instance
from mlpipe.serving.prediction_log import ServedInstance

log = logging.getLogger(__name__)

TABLE = "feedback"
SCHEMA = (
    ("feedback_id", "STRING", "REQUIRED"),
    ("time", "TIMESTAMP", "REQUIRED"),
    ("source", "STRING", "REQUIRED"),  # "correction" (of a served prediction) or "example"
    ("model", "STRING", "REQUIRED"),
    ("version", "STRING", "NULLABLE"),  # the version that served it / served by default
    ("prediction_id", "STRING", "NULLABLE"),
    ("predicted_class", "INT64", "NULLABLE"),
    ("label", "INT64", "REQUIRED"),
    ("image", "INT64", "REPEATED"),  # 784 raw pixels 0..255, like DATASET.train
)
CALL_DEADLINE_S = 5.0
# The whole write, however the client library retries inside it (seen: a minute on a refused port).
HARD_DEADLINE_S = 15.0
RETRY_AFTER_S = 5
PREDICTION_ID = re.compile(r"[0-9a-f]{32}-[0-9]{1,6}")


class BadFeedbackError(UsageError):
    """A feedback document is malformed (fields, label, image)."""


class FeedbackUnavailable(ServiceUnavailable):
    """BigQuery did not accept the row; nothing was written, the caller may retry."""

    retry_after = RETRY_AFTER_S


@dataclass(frozen=True)
class Feedback:
    feedback_id: str
    source: str
    model: str
    version: str | None
    prediction_id: str | None
    predicted_class: int | None
    label: int
    image: list[int]

    def row(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("feedback_id", "source", "model", "version", "prediction_id",
                                              "predicted_class", "label", "image")}


@dataclass(frozen=True)
class Recorded:
    feedback: Feedback
    created: bool  # False: the same feedback was already there


def new_prediction_ids(n: int) -> list[str]:
    """Ids for the n instances of one prediction call: one random base, the instance's index."""
    import uuid

    base = uuid.uuid4().hex
    return [f"{base}-{i}" for i in range(n)]


def parse_label(doc: dict[str, Any]) -> int:
    label = doc.get("label")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < NUM_CLASSES:
        raise BadFeedbackError(f'"label" must be an integer 0..{NUM_CLASSES - 1}, not {str(label)[:20]!r}')
    return label


def _id(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


class FeedbackStore:
    """`lookup_recent(prediction_id)` is the server's in-memory index of what it just served."""

    def __init__(self, settings: Settings,
                 lookup_recent: Callable[[str], ServedInstance | None] | None = None) -> None:
        self.settings = settings
        self.lookup_recent = lookup_recent or (lambda _id: None)
        self._client = None
        self._table_ready = False
        self._lock = threading.Lock()
        self._writer_lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def table_id(self) -> str:
        return self.settings.table_id(TABLE)

    # ---- parse ----------------------------------------------------------------------------------

    def parse(self, doc: Any, model: str, default_version: Callable[[], str | None]) -> Feedback:
        """A feedback document → Feedback; BadFeedbackError / NotFoundError (unknown prediction)."""
        if not isinstance(doc, dict):
            raise BadFeedbackError('feedback must be a JSON object like {"predictionId": "...", "label": 3}')
        keys = set(doc)
        if keys == {"predictionId", "label"}:
            label = parse_label(doc)
            served = self.served(doc["predictionId"])
            if served.model != model:
                raise NotFoundError(f"prediction {served.prediction_id} was made by model {served.model!r}, "
                                    f"not {model!r}")
            image = served.image.astype(np.int64).tolist()
            return Feedback(_id("correction", served.prediction_id, label), "correction", model,
                            served.version, served.prediction_id, served.predicted_class, label, image)
        if keys in ({"image", "label"}, {"image_bytes", "label"}):
            label = parse_label(doc)
            field = "image" if "image" in keys else "image_bytes"
            pixels = parse_instance({field: doc[field]}, 0)
            image = prediction_log.pixels_of(pixels)
            digest = hashlib.sha256(np.asarray(image, np.uint8).tobytes()).hexdigest()
            return Feedback(_id("example", model, digest, label), "example", model, default_version(),
                            None, None, label, image)
        raise BadFeedbackError(
            'feedback must have exactly "predictionId" and "label", or "image" (or "image_bytes") and '
            f'"label"; got {sorted(map(str, keys))[:6]}'
        )

    def served(self, prediction_id: Any) -> ServedInstance:
        """The served instance behind a prediction id: this process's memory, else the prediction log."""
        if not isinstance(prediction_id, str) or not PREDICTION_ID.fullmatch(prediction_id):
            raise BadFeedbackError(f'"predictionId" is not a prediction id: {str(prediction_id)[:80]!r}')
        recent = self.lookup_recent(prediction_id)
        if recent is not None:
            return recent
        from google.cloud import bigquery

        sql = (f"SELECT model, version, predicted_class, image FROM `{self.settings.table_id('predictions')}` "
               f"WHERE prediction_id = @id LIMIT 1")
        config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("id", "STRING",
                                                                                         prediction_id)])
        rows = self._call(lambda c: [dict(r.items()) for r in c.query(sql, job_config=config, **_bounded())
                                     .result(**_bounded())],
                          missing_ok=True)
        if not rows or len(rows[0]["image"] or []) != 784:
            raise NotFoundError(f"unknown predictionId {prediction_id} (not served here, or its log row "
                                f"did not reach {self.settings.table_id('predictions')})")
        r = rows[0]
        return ServedInstance(prediction_id, r["model"], r["version"], int(r["predicted_class"]),
                              np.asarray(r["image"], dtype=np.uint8))

    # ---- write ----------------------------------------------------------------------------------

    def record(self, feedback: Feedback) -> Recorded:
        """MERGE the row; returns after BigQuery accepted it. FeedbackUnavailable if it did not."""
        from google.cloud import bigquery

        columns = [name for name, _, _ in SCHEMA]
        types = {name: kind for name, kind, _ in SCHEMA}
        params = []
        for name, value in feedback.row().items():
            if name == "image":
                params.append(bigquery.ArrayQueryParameter(name, "INT64", value))
            else:
                params.append(bigquery.ScalarQueryParameter(name, types[name], value))
        select = ", ".join("CURRENT_TIMESTAMP() AS time" if c == "time" else f"@{c} AS {c}" for c in columns)
        sql = (f"MERGE `{self.table_id}` T USING (SELECT {select}) S ON T.feedback_id = S.feedback_id "
               f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns)}) "
               f"VALUES ({', '.join('S.' + c for c in columns)})")
        config = bigquery.QueryJobConfig(query_parameters=params)

        def merge(client) -> int:
            if not self._table_ready:
                from mlpipe.bigquery.tables import ensure_table

                ensure_table(client, self.settings, TABLE, SCHEMA, retry=_retry(), timeout=CALL_DEADLINE_S)
                self._table_ready = True
            job = client.query(sql, job_config=config, **_bounded())
            job.result(**_bounded())
            return int(job.num_dml_affected_rows or 0)

        created = self._merge_within_deadline(merge) > 0
        log.info("feedback %s %s (%s, label %d)", feedback.feedback_id, "recorded" if created else "duplicate",
                 feedback.source, feedback.label)
        return Recorded(feedback, created)

    def _merge_within_deadline(self, merge) -> int:
        """One writer per process (two identical concurrent sends cannot both insert), and an answer
        within HARD_DEADLINE_S whatever the client library's retries do: a MERGE still running then is
        left to finish in the background, holding the writer lock, and the caller gets a 503 — its
        retry cannot duplicate the row, because it waits for that lock."""
        if not self._lock.acquire(timeout=HARD_DEADLINE_S):
            raise FeedbackUnavailable(f"an earlier feedback write to {self.table_id} has not finished; "
                                      f"retry in {RETRY_AFTER_S}s")
        try:
            future = self._writer().submit(self._call, merge)
        except BaseException:
            self._lock.release()
            raise
        future.add_done_callback(lambda _: self._lock.release())
        try:
            return future.result(timeout=HARD_DEADLINE_S)
        except concurrent.futures.TimeoutError:
            log.warning("feedback write to %s still running after %.0fs; answered 503", self.table_id,
                        HARD_DEADLINE_S)
            raise FeedbackUnavailable(
                f"BigQuery did not confirm the feedback within {HARD_DEADLINE_S:.0f}s; retry in "
                f"{RETRY_AFTER_S}s (a retry never records it twice)"
            ) from None

    def _writer(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._writer_lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedback")
            return self._pool

    def _call(self, fn, missing_ok: bool = False):
        from google.api_core import exceptions as gexc

        from mlpipe.bigquery.tables import retry_conflicts

        try:
            return retry_conflicts(lambda: fn(self._bq()))
        except gexc.NotFound:
            if missing_ok:
                return []
            self._table_ready = False
            raise FeedbackUnavailable(f"{self.table_id} is missing; retry") from None
        except gexc.BadRequest as e:
            raise UsageError(f"BigQuery refused the feedback: {_short(e)}") from None
        except Exception as e:  # connection refused, timeouts, 5xx, retry deadline: not written
            self._table_ready = False
            log.warning("BigQuery did not accept feedback: %s", _short(e))
            raise FeedbackUnavailable(
                f"BigQuery is unavailable, the feedback was not recorded; retry in {RETRY_AFTER_S}s"
            ) from None

    def _bq(self):
        if self._client is None:
            from mlpipe.bigquery.client import bq_client

            self._client = bq_client(self.settings, check=False)
        return self._client


def _retry():
    from google.cloud import bigquery

    return bigquery.DEFAULT_RETRY.with_deadline(CALL_DEADLINE_S)


def _bounded() -> dict[str, Any]:
    """Retries of a query (its API calls and the job itself) cut to CALL_DEADLINE_S: the library's
    own job retry keeps re-trying a refused connection for 40 minutes."""
    from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

    return {"retry": _retry(), "timeout": CALL_DEADLINE_S,
            "job_retry": DEFAULT_JOB_RETRY.with_deadline(CALL_DEADLINE_S)}


def _short(e: Exception) -> str:
    text = getattr(e, "message", None) or str(e)
    return (text.splitlines()[0] if text else type(e).__name__)[:200]
