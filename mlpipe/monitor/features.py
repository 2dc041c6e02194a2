"""Per-image features that make drift in handwritten digits visible (numpy only).

- `ink_mass`: total ink, Σ pixel / 255 (an inverted image has ~10× the ink of a digit);
- `bbox_width`, `bbox_height`: the box around pixels ≥ INK_LEVEL, in pixels (rotation, thickness);
- `centroid_x`, `centroid_y`: the ink-weighted centre, in pixels from the top-left (shift);
- `stroke_width`: 2 × ink pixels / boundary ink pixels — for a stroke of length L and width w,
  area ≈ L·w and boundary ≈ 2·L, so this estimates w (pen thickness).
"""

from __future__ import annotations

import numpy as np

from mlpipe.contract import IMAGE_PIXELS, IMAGE_SIDE

INK_LEVEL = 128
FEATURES = ("ink_mass", "bbox_width", "bbox_height", "centroid_x", "centroid_y", "stroke_width")


def image_features(images: np.ndarray) -> dict[str, np.ndarray]:
    """FEATURES for each of `images` ([n, 784] or [n, 28, 28] raw 0..255 pixels), float64 [n] each."""
    arr = np.asarray(images, dtype=np.float64)
    if arr.size % IMAGE_PIXELS:
        raise ValueError(f"images must be [n, {IMAGE_PIXELS}]; got {arr.shape}")
    sq = arr.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    n = len(sq)
    mass = sq.sum(axis=(1, 2))
    coords = np.arange(IMAGE_SIDE, dtype=np.float64)
    safe = np.where(mass > 0, mass, 1.0)
    centroid_y = (sq.sum(axis=2) * coords).sum(axis=1) / safe
    centroid_x = (sq.sum(axis=1) * coords).sum(axis=1) / safe
    ink = sq >= INK_LEVEL
    rows, cols = ink.any(axis=2), ink.any(axis=1)

    def extent(mask: np.ndarray) -> np.ndarray:
        first = mask.argmax(axis=1)
        last = IMAGE_SIDE - 1 - mask[:, ::-1].argmax(axis=1)
        return np.where(mask.any(axis=1), last - first + 1, 0).astype(np.float64)

    padded = np.pad(ink, ((0, 0), (1, 1), (1, 1)))
    interior = (padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:])
    boundary = (ink & ~interior).sum(axis=(1, 2)).astype(np.float64)
    area = ink.sum(axis=(1, 2)).astype(np.float64)
    stroke = np.where(boundary > 0, 2.0 * area / np.maximum(boundary, 1.0), 0.0)
    return {
        "ink_mass": mass / 255.0,
        "bbox_width": extent(cols),
        "bbox_height": extent(rows),
        "centroid_x": np.where(mass > 0, centroid_x, (IMAGE_SIDE - 1) / 2),
        "centroid_y": np.where(mass > 0, centroid_y, (IMAGE_SIDE - 1) / 2),
        "stroke_width": stroke if n else np.zeros(0),
    }
