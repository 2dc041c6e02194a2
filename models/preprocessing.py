"""TFX Transform: the preprocessing graph that travels with the served model."""

from __future__ import annotations

import tensorflow as tf

from mlpipe import contract


def normalize_pixels(image: tf.Tensor) -> tf.Tensor:
    """Raw 0..255 pixels (any numeric dtype) → float32 in [0, 1]."""
    return tf.cast(image, tf.float32) / 255.0


def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """tf.Transform entry point: normalized pixels; the label passes through; the key is dropped."""
    outputs = {contract.IMAGE_KEY: normalize_pixels(inputs[contract.IMAGE_KEY])}
    if contract.LABEL_KEY in inputs:
        outputs[contract.LABEL_KEY] = tf.cast(inputs[contract.LABEL_KEY], tf.int64)
    return outputs
