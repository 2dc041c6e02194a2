"""Loaded SavedModels, kept in process memory across requests (a serverless instance's warm state).

A version is loaded on its first request (TensorFlow is imported then, not at start-up, so routes that
only read the registry answer immediately) and kept, least recently used first out, up to `capacity`.
Registry version names are never reused, so (path, created time) identifies a model for good.
A per-version lock makes concurrent first requests load it once; other versions keep serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlpipe.contract import IMAGE_KEY, OUTPUTS, SERVING_SIGNATURE
from mlpipe.errors import ModelLoadError, NotFoundError
from mlpipe.registry import VersionInfo

log = logging.getLogger(__name__)

# A version that failed to load is not retried on every request (a load can take seconds).
RETRY_FAILED_LOAD_S = 30.0


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
        out = self._fn(**{IMAGE_KEY: self._tf.constant(batch, dtype=self._tf.float32)})
        return {name: out[name].numpy() for name in OUTPUTS}


class ModelCache:
    """`locate` gives a version's SavedModel as a local directory (the registry's `local_saved_model`)."""

    def __init__(self, locate: Callable[[VersionInfo], Path], capacity: int = 4) -> None:
        self.locate = locate
        self.capacity = capacity
        self._models: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._failures: dict[tuple[str, str], tuple[float, str]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, info: VersionInfo) -> LoadedModel:
        key = (info.saved_model_uri, info.created_time)
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            key_lock = self._locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._models:
                    return self._models[key]
            model = self._load(info, key)
            with self._lock:
                self._models[key] = model
                while len(self._models) > self.capacity:
                    evicted, _ = self._models.popitem(last=False)
                    self._locks.pop(evicted, None)
            return model

    def _load(self, info: VersionInfo, key: tuple[str, str]) -> LoadedModel:
        failed = self._failures.get(key)
        if failed and time.monotonic() - failed[0] < RETRY_FAILED_LOAD_S:
            raise ModelLoadError(failed[1])
        saved_model_dir = self.locate(info)
        if not saved_model_dir.is_dir():
            raise NotFoundError(f"version {info.name} of model {info.model!r} was deleted")
        try:
            model = LoadedModel(info, saved_model_dir)
        except Exception as e:  # any TensorFlow load failure is the registry's fault, not the caller's
            log.exception("loading %s/%s from %s failed", info.model, info.name, saved_model_dir)
            reason = f"version {info.name} of model {info.model!r} failed to load: {type(e).__name__}"
            self._failures[key] = (time.monotonic(), reason)
            raise ModelLoadError(reason) from None
        self._failures.pop(key, None)
        return model

    def loaded(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._models)


def to_predictions(outputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Batch outputs → AI Platform's row format, one dict per instance."""
    columns = {name: outputs[name].tolist() for name in OUTPUTS}
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
