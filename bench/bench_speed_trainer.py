"""Trainer throughput, side by side in one process, on real MNIST written as Transform writes it
(gzipped tf.Examples of normalized float pixels):

1. input pipeline: batches of 64 per CPU-second, the old per-batch parse of serialized records vs the
   parse-once cached pipeline (`models.model.make_input_fn`);
2. the same final architecture (a CNN of `--blocks` conv blocks, the search space's filters, dense
   and dropout) trained as a plain Keras model and as the only candidate of an AdaNet iteration:
   steady-state steps/s (after `--warmup` steps) and the ratio; and the default search space's first
   iteration (every candidate trained each step) for the per-candidate cost.

CPU seconds (`time.process_time`, all threads of this process) are given beside wall time: the ratio
of CPU seconds per step does not move when other processes share the machine.

    .venv/bin/python bench/bench_speed_trainer.py [--steps N] [--quick]

--quick: 5,000 rows, 150 timed steps; prints the table and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.report import write_section  # noqa: E402
from mlpipe import contract  # noqa: E402
from mlpipe.data.mnist_source import load_mnist  # noqa: E402
from models import generators, model, precision  # noqa: E402
from models.hparams import SearchSpace  # noqa: E402

SPEC = {contract.IMAGE_KEY: tf.io.FixedLenFeature([contract.IMAGE_PIXELS], tf.float32),
        contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}


class _TransformOutput:
    """The one method of `tft.TFTransformOutput` the input function calls."""

    def transformed_feature_spec(self) -> dict:
        return dict(SPEC)


def write_transformed(path: Path, rows: int) -> str:
    """`rows` MNIST train rows as the Transform component materializes them (GZIP TFRecords)."""
    train = load_mnist()["train"]
    path.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path / "data-00000-of-00001.gz"), options="GZIP") as w:
        for image, label in zip(train.images[:rows], train.labels[:rows], strict=True):
            feature = {
                contract.IMAGE_KEY: tf.train.Feature(float_list=tf.train.FloatList(value=image / np.float32(255))),
                contract.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            }
            w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(path / "data-*.gz")


class Clock:
    """CPU and wall seconds between two marks."""

    def __init__(self) -> None:
        self.start = self.stop = (0.0, 0.0)

    def mark_start(self) -> None:
        self.start = (time.process_time(), time.perf_counter())

    def mark_stop(self) -> None:
        self.stop = (time.process_time(), time.perf_counter())

    @property
    def cpu(self) -> float:
        return self.stop[0] - self.start[0]

    @property
    def wall(self) -> float:
        return self.stop[1] - self.start[1]


def input_pipeline(files: str, batches: int, parse_once: bool) -> Clock:
    input_fn = model.make_input_fn(files, _TransformOutput(), 64, shuffle=True, repeat=True, seed=1,
                                   parse_once=parse_once)
    it = iter(input_fn())
    next(it)  # build and fill the first buffers outside the timing
    clock = Clock()
    clock.mark_start()
    for _ in range(batches):
        next(it)
    clock.mark_stop()
    return clock


class _StepClock(tf.compat.v1.train.SessionRunHook):
    def __init__(self, warmup: int, clock: Clock) -> None:
        self.warmup, self.clock, self.step = warmup, clock, 0

    def after_run(self, run_context, run_values) -> None:
        self.step += 1
        if self.step == self.warmup:
            self.clock.mark_start()

    def end(self, session) -> None:
        self.clock.mark_stop()


def adanet_steps(space: SearchSpace, files: str, warmup: int, steps: int, model_dir: str) -> Clock:
    """One AdaNet iteration of `warmup + steps` steps; the clock covers the last `steps`."""
    space = space.replace(max_iteration_steps=warmup + steps + 1, max_iterations=1)
    estimator = generators.build_estimator(space, model_dir)
    clock = Clock()
    input_fn = model.make_input_fn(files, _TransformOutput(), space.batch_size, shuffle=True, repeat=True,
                                   seed=space.seed)
    estimator.train(input_fn=input_fn, steps=warmup + steps, hooks=[_StepClock(warmup, clock)])
    return clock


def keras_cnn(space: SearchSpace, blocks: int) -> tf.keras.Model:
    """The CNN family's candidate with `blocks` blocks, as a plain Keras model (same layers)."""
    inputs = tf.keras.Input([contract.IMAGE_PIXELS], name=contract.IMAGE_KEY)
    x = tf.keras.layers.Reshape([contract.IMAGE_SIDE, contract.IMAGE_SIDE, 1])(inputs)
    side = contract.IMAGE_SIDE
    for block in range(blocks):
        filters = space.cnn_filters[min(block, len(space.cnn_filters) - 1)]
        for _ in range(space.cnn_convs_per_block):
            x = tf.keras.layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_initializer="he_normal")(x)
        if side >= 2:
            x = tf.keras.layers.MaxPooling2D(2)(x)
            side //= 2
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(space.cnn_dense_units, activation="relu", kernel_initializer="he_normal")(x)
    x = tf.keras.layers.Dropout(space.cnn_dropout)(x)
    outputs = tf.keras.layers.Dense(contract.NUM_CLASSES)(x)
    net = tf.keras.Model(inputs, outputs)
    net.compile(optimizer=tf.keras.optimizers.Adam(space.learning_rate),
                loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return net


class _BatchClock(tf.keras.callbacks.Callback):
    def __init__(self, warmup: int, clock: Clock) -> None:
        super().__init__()
        self.warmup, self.clock = warmup, clock

    def on_train_batch_end(self, batch, logs=None) -> None:
        if batch + 1 == self.warmup:
            self.clock.mark_start()

    def on_train_end(self, logs=None) -> None:
        self.clock.mark_stop()


def keras_steps(space: SearchSpace, blocks: int, files: str, warmup: int, steps: int) -> Clock:
    net = keras_cnn(space, blocks)
    ds = model.make_input_fn(files, _TransformOutput(), space.batch_size, shuffle=True, repeat=True,
                             seed=space.seed)()
    clock = Clock()
    net.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[_BatchClock(warmup, clock)])
    return clock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=1_000, help="timed steps per trainer measurement")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--blocks", type=int, default=3, help="conv blocks of the compared architecture")
    parser.add_argument("--quick", action="store_true", help="5,000 rows, 150 steps; print, do not write")
    args = parser.parse_args(argv)
    rows, steps, warmup = (5_000, 150, 30) if args.quick else (args.rows, args.steps, args.warmup)
    space = SearchSpace()
    load = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        files = write_transformed(Path(tmp) / "train", rows)
        batches = steps * 2
        old_in = input_pipeline(files, batches, parse_once=False)
        new_in = input_pipeline(files, batches, parse_once=True)
        # The Keras model has no random-shift augmentation: leave it out of the AdaNet candidate too.
        solo = space.replace(families=("cnn",), cnn_initial_blocks=args.blocks, cnn_depth_offsets=(0,),
                             augment_shift=0)
        keras = keras_steps(space, args.blocks, files, warmup, steps)
        ada = adanet_steps(solo, files, warmup, steps, str(Path(tmp) / "adanet_solo"))
        full = adanet_steps(space, files, warmup, steps, str(Path(tmp) / "adanet_default"))

    def rate(c: Clock, n: int) -> str:
        return f"{n / c.wall:.1f} | {c.cpu / n * 1000:.1f}"

    text = (
        f"### Trainer throughput (one process; {rows:,} MNIST rows, batch 64; policy "
        f"{precision.training_policy()})\n\n"
        "| measurement | per second (wall) | CPU ms each |\n|---|---:|---:|\n"
        f"| input batches, old: per-batch parse of serialized records | {rate(old_in, batches)} |\n"
        f"| input batches, now: parse once, cached | {rate(new_in, batches)} |\n"
        f"| steps, plain Keras CNN ({args.blocks} blocks) | {rate(keras, steps)} |\n"
        f"| steps, the same CNN as AdaNet's only candidate (no augmentation in either) | {rate(ada, steps)} |\n"
        f"| steps, AdaNet default space, iteration 0 (dnn_1, dnn_2, cnn_2, cnn_3) | {rate(full, steps)} |\n\n"
        f"Input pipeline CPU per batch old/now: **{old_in.cpu / new_in.cpu:.2f}×**. "
        f"AdaNet/Keras CPU per step for the same CNN: **{ada.cpu / keras.cpu:.2f}×** "
        f"(steps/s ratio Keras/AdaNet {ada.wall / keras.wall:.2f}×); the default space's step costs "
        f"{full.cpu / keras.cpu:.2f}× a plain CNN step (every candidate trains on every batch). "
        f"{steps} timed steps after {warmup} warm-up steps; load average at start "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}."
    )
    print(text)
    if not args.quick:
        write_section("speed-trainer", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
