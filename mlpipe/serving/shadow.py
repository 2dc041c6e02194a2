"""Shadow predictions: a challenger sees a copy of a request after the default has answered it.

Best effort and bounded, like the prediction log: one background thread, a few pending requests at
most; when it is busy the copy is skipped (counted), so a slow challenger can never slow or fail
the answers users get. The challenger's predictions go to the prediction log with role `shadow`.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mlpipe.registry import VersionInfo
from mlpipe.serving.model_cache import ModelCache
from mlpipe.serving.prediction_log import PredictionLogger

log = logging.getLogger(__name__)

MAX_PENDING = 8


class ShadowRunner:
    def __init__(self, cache: ModelCache, prediction_log: PredictionLogger | None) -> None:
        self.cache = cache
        self.prediction_log = prediction_log
        self._slots = threading.BoundedSemaphore(MAX_PENDING)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.done = 0
        self.skipped = 0
        self.failed = 0

    def submit(self, info: VersionInfo, batch: np.ndarray, request_id: str, prediction_ids: list[str]) -> bool:
        """Queue the challenger's prediction; False (and nothing queued) when too many are pending."""
        if not self._slots.acquire(blocking=False):
            self.skipped += 1
            return False
        try:
            self._executor().submit(self._run, info, batch, request_id, prediction_ids)
        except RuntimeError:  # interpreter shutting down
            self._slots.release()
            return False
        return True

    def _executor(self) -> ThreadPoolExecutor:
        # Created on first use, inside the serving worker (threads do not survive a pre-fork).
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
            return self._pool

    def _run(self, info: VersionInfo, batch: np.ndarray, request_id: str, prediction_ids: list[str]) -> None:
        try:
            started = time.perf_counter()
            outputs = self.cache.get(info).predict(batch)
            latency_ms = (time.perf_counter() - started) * 1000
            if self.prediction_log is not None:
                self.prediction_log.log(info.model, info.name, outputs["class_ids"][:, 0].tolist(),
                                        outputs["probabilities"].max(axis=1).tolist(), latency_ms,
                                        request_id, prediction_ids, role="shadow")
            self.done += 1
        except Exception:
            self.failed += 1
            log.warning("shadow prediction of %s/%s failed (the default answered anyway)",
                        info.model, info.name, exc_info=True)
        finally:
            self._slots.release()
