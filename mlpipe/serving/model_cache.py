"""Loaded SavedModels, kept in process memory across requests (a serverless instance's warm state).

A version is loaded on its first request (TensorFlow is imported then, not at start-up, so routes that
only read the registry answer immediately) and kept, least recently used first out, within a count and
a byte bound (see ModelCache). Registry version names are never reused, so (path, created time)
identifies a model for good. A per-version lock makes concurrent first requests load it once; other
versions keep serving.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlpipe.contract import IMAGE_KEY, OUTPUTS, SERVING_SIGNATURE
from mlpipe.errors import ModelLoadError, NotFoundError, ServiceUnavailable
from mlpipe.registry import VersionInfo

log = logging.getLogger(__name__)

# A version that failed to load is not retried on every request (a load can take seconds).
RETRY_FAILED_LOAD_S = 30.0
PREDICT_SLICE = 128
# Bounds of the cache (models kept loaded): SavedModel bytes on disk, and time a model stays at least.
MAX_CACHE_BYTES = 1024 * 1024 * 1024
MIN_RESIDENT_S = 60.0
LOAD_WAIT_S = 20.0  # a request waits this long for a load by another request, then 503
RETRY_AFTER_S = 5


class LoadedModel:
    def __init__(self, info: VersionInfo, saved_model_dir: Path) -> None:
        import tensorflow as tf

        started = time.perf_counter()
        self._tf = tf
        # Keep the loaded object: the signature function does not own the variables it reads.
        self._saved = tf.saved_model.load(str(saved_model_dir))
        self._fn = self._saved.signatures[SERVING_SIGNATURE]
        self.load_seconds = time.perf_counter() - started
        log.info("loaded %s/%s in %.2fs", info.model, info.name, self.load_seconds)

    def predict(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run in slices of PREDICT_SLICE rows, so the model's intermediate tensors stay small
        whatever the request's size."""
        parts = []
        for start in range(0, len(batch), PREDICT_SLICE):
            out = self._fn(**{IMAGE_KEY: self._tf.constant(batch[start : start + PREDICT_SLICE],
                                                          dtype=self._tf.float32)})
            parts.append({name: out[name].numpy() for name in OUTPUTS})
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([p[name] for p in parts]) for name in OUTPUTS}


class CacheBusyError(ServiceUnavailable):
    """No room to load another version right now (answered 503 with Retry-After)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def saved_model_bytes(path: Path) -> int:
    """A SavedModel's size on disk: graph and variables, what loading it puts in memory."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


class ModelCache:
    """`locate` gives a version's SavedModel as a local directory (the registry's `local_saved_model`).

    Bounded by `capacity` models and `max_bytes` (SavedModel sizes on disk). Loads are coalesced (one
    per version however many requests want it) and serialized (one at a time: each takes both cores
    for seconds). A model stays at least `min_resident_s` once loaded: a request for yet another
    version while every slot holds a younger model is answered 503 with Retry-After instead of evicting
    it, so clients cycling over more versions than fit cannot turn every request into a reload.
    """

    def __init__(self, locate: Callable[[VersionInfo], Path], capacity: int = 4,
                 max_bytes: int = MAX_CACHE_BYTES, min_resident_s: float = MIN_RESIDENT_S,
                 load_wait_s: float = LOAD_WAIT_S) -> None:
        self.locate = locate
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.min_resident_s = min_resident_s
        self.load_wait_s = load_wait_s
        self.loads = 0  # how many loads were made (for tests and the soak)
        self._models: OrderedDict[tuple[str, str], _Slot] = OrderedDict()
        self._failures: dict[tuple[str, str], tuple[float, str]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    def get(self, info: VersionInfo) -> LoadedModel:
        key = (info.saved_model_uri, info.created_time)
        with self._lock:
            slot = self._models.get(key)
            if slot is not None:
                self._models.move_to_end(key)
                return slot.model
            key_lock = self._locks.setdefault(key, threading.Lock())
        # Coalesce: whoever gets the version's lock loads it; the others find it loaded.
        if not key_lock.acquire(timeout=self.load_wait_s):
            raise CacheBusyError(f"version {info.name} of model {info.model!r} is still loading; retry",
                                 RETRY_AFTER_S)
        try:
            with self._lock:
                if key in self._models:
                    return self._models[key].model
            self._check_failure(key)
            saved_model_dir = self.locate(info)
            if not saved_model_dir.is_dir():
                raise NotFoundError(f"version {info.name} of model {info.model!r} was deleted")
            size = saved_model_bytes(saved_model_dir)
            self._make_room(info, size)
            if not self._load_lock.acquire(timeout=self.load_wait_s):
                raise CacheBusyError("another model version is loading; retry", RETRY_AFTER_S)
            try:
                model = self._load(info, key, saved_model_dir)
            finally:
                self._load_lock.release()
            with self._lock:
                self._make_room_locked(info, size)
                self._models[key] = _Slot(model, size, time.monotonic())
            return model
        finally:
            key_lock.release()

    def _make_room(self, info: VersionInfo, size: int) -> None:
        with self._lock:
            evicted = self._make_room_locked(info, size)
        if evicted:
            gc.collect()  # the evicted model's graph holds reference cycles

    def _make_room_locked(self, info: VersionInfo, size: int) -> bool:
        """Evict least recently used models old enough to go until `size` more bytes and one more
        model fit; CacheBusyError if only younger ones would have to go."""
        if size > self.max_bytes:
            raise ModelLoadError(f"version {info.name} of model {info.model!r} ({size:,} bytes) is larger "
                                 f"than the model cache ({self.max_bytes:,} bytes)")
        now, evicted = time.monotonic(), False
        while self._models and (len(self._models) >= self.capacity
                                or sum(s.size for s in self._models.values()) + size > self.max_bytes):
            key, slot = next(iter(self._models.items()))
            age = now - slot.loaded_at
            if age < self.min_resident_s:
                wait = max(1, int(self.min_resident_s - age + 0.999))
                raise CacheBusyError(
                    f"the model cache is full of recently loaded versions; version {info.name} of model "
                    f"{info.model!r} can be loaded in {wait}s", wait)
            del self._models[key]
            self._locks.pop(key, None)
            evicted = True
            log.info("evicted %s from the model cache (%d bytes)", key[0], slot.size)
        return evicted

    def _check_failure(self, key: tuple[str, str]) -> None:
        failed = self._failures.get(key)
        if failed and time.monotonic() - failed[0] < RETRY_FAILED_LOAD_S:
            error = ModelLoadError(failed[1])
            error.retry_after = int(RETRY_FAILED_LOAD_S - (time.monotonic() - failed[0])) + 1
            raise error

    def _load(self, info: VersionInfo, key: tuple[str, str], saved_model_dir: Path) -> LoadedModel:
        try:
            model = LoadedModel(info, saved_model_dir)
        except Exception as e:  # any TensorFlow load failure is the registry's fault, not the caller's
            log.exception("loading %s/%s from %s failed", info.model, info.name, saved_model_dir)
            reason = f"version {info.name} of model {info.model!r} failed to load: {type(e).__name__}"
            self._failures[key] = (time.monotonic(), reason)
            raise ModelLoadError(reason) from None
        self.loads += 1
        self._failures.pop(key, None)
        return model

    def loaded(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._models)


@dataclass
class _Slot:
    model: LoadedModel
    size: int
    loaded_at: float


def to_predictions(outputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Batch outputs → AI Platform's row format, one dict per instance."""
    columns = {name: outputs[name].tolist() for name in OUTPUTS}
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
