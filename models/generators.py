"""The AutoML search space: AdaNet subnetwork generators over DNN and CNN families, and the estimator.

Every AdaNet iteration trains all candidates of that iteration side by side in one graph, then keeps
the candidate ensemble that scores best on the held-out `eval` split (AdaNet.HoldOut). The families:

- `dnn`: the seed's simple DNN (the architecture of `adanet.examples.simple_dnn`, reading the image
  tensor directly instead of through feature columns): k and k+1 dense layers per iteration.
- `cnn`: conv blocks (3×3 conv + ReLU + 2×2 max-pool; optionally more convs and batch norm per
  block), then dense + dropout; n and n+1 blocks per iteration, trained with random-shift
  augmentation, label smoothing and a cosine learning-rate decay that restarts every iteration.

Keras layers get explicit, stable `name=`s: AdaNet rebuilds the graph between iterations and
restores previous members from checkpoints by variable name (see STACK.md).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from mlpipe.contract import CANDIDATE_EVALS_FILE, IMAGE_KEY, IMAGE_SIDE, NUM_CLASSES
from models.adanet_compat import adanet
from models.hparams import SearchSpace

logger = logging.getLogger(__name__)

# Keys in `Subnetwork.shared`: how the generator reads back the shape of the last member it added.
_FAMILY_KEY = "family"
_DEPTH_KEY = "depth"


def _learning_rate(space: SearchSpace, iteration_step: tf.Tensor) -> tf.Tensor:
    """The per-iteration schedule: each member is trained only during its own iteration."""
    step = tf.cast(iteration_step, tf.float32)
    if space.lr_schedule == "cosine":
        progress = tf.minimum(step / float(space.max_iteration_steps), 1.0)
        return space.learning_rate * 0.5 * (1.0 + tf.cos(math.pi * progress))
    if space.lr_schedule == "exponential":
        return space.learning_rate * tf.pow(space.lr_decay_rate, step / float(space.max_iteration_steps))
    return tf.constant(space.learning_rate)


def _random_shift(images: tf.Tensor, max_shift: int, seed: int) -> tf.Tensor:
    """Translate each image independently by up to `max_shift` pixels (zero fill, exact pixels)."""
    batch = tf.shape(images)[0]
    offsets = tf.random.uniform([batch, 2], -max_shift, max_shift + 1, dtype=tf.int32, seed=seed)
    offsets = tf.cast(offsets, tf.float32)
    ones, zeros = tf.ones([batch, 1]), tf.zeros([batch, 1])
    # Projective transform rows [a0 a1 a2 b0 b1 b2 c0 c1] map output (x, y) to input (x + dx, y + dy).
    transforms = tf.concat([ones, zeros, offsets[:, :1], zeros, ones, offsets[:, 1:], zeros, zeros], axis=1)
    shifted = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.constant([IMAGE_SIDE, IMAGE_SIDE]),
        fill_value=0.0,
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )
    shifted.set_shape(images.shape)
    return shifted


def _sparse_labels(labels: tf.Tensor) -> tf.Tensor:
    return tf.reshape(tf.cast(labels, tf.int32), [-1])


class _Builder(adanet.subnetwork.Builder):
    """What the two families share: the input, the training loss, the optimiser and its schedule."""

    family: str = ""

    def __init__(self, space: SearchSpace, depth: int, feature_key: str, seed: int) -> None:
        self._space = space
        self._depth = depth
        self._feature_key = feature_key
        self._seed = seed
        self._update_ops: list[tf.Operation] = []

    def _inputs(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.reshape(tf.cast(features[self._feature_key], tf.float32), [-1, IMAGE_SIDE * IMAGE_SIDE])

    def _body(self, images: tf.Tensor, training: bool) -> tuple[tf.Tensor, list[tf.keras.layers.Layer]]:
        raise NotImplementedError

    def _complexity(self) -> float:
        raise NotImplementedError

    def build_subnetwork(
        self, features, logits_dimension, training, iteration_step, summary, previous_ensemble=None
    ) -> adanet.Subnetwork:
        last_layer, layers = self._body(self._inputs(features), training)
        # Under a mixed (bf16) policy the body computes in bf16; the logits, and everything AdaNet
        # builds on them (mixture weights, loss, metrics), stay float32. No-ops under float32.
        last_layer = tf.cast(last_layer, tf.float32)
        logits = tf.keras.layers.Dense(logits_dimension, name="logits", dtype="float32")(last_layer)
        # Keras layers called outside a Keras model do not add their moving-average updates to the
        # UPDATE_OPS collection; the train op has to run them explicitly.
        self._update_ops = [op for layer in layers for op in layer.updates] if training else []
        complexity = tf.constant(self._complexity(), dtype=tf.float32)
        with tf.name_scope(""):
            summary.scalar("complexity", complexity)
            summary.scalar("depth", tf.constant(self._depth))
        return adanet.Subnetwork(
            last_layer=last_layer,
            logits=logits,
            complexity=complexity,
            shared={_FAMILY_KEY: self.family, _DEPTH_KEY: self._depth},
        )

    def build_subnetwork_train_op(
        self, subnetwork, loss, var_list, labels, iteration_step, summary, previous_ensemble
    ) -> tf.Operation:
        if self._space.label_smoothing > 0:
            # MultiClassHead's loss has no label smoothing; train on our own smoothed loss instead.
            onehot = tf.one_hot(_sparse_labels(labels), NUM_CLASSES)
            loss = tf.reduce_mean(
                tf.keras.losses.categorical_crossentropy(
                    onehot, subnetwork.logits, from_logits=True, label_smoothing=self._space.label_smoothing
                )
            )
        learning_rate = _learning_rate(self._space, iteration_step)
        summary.scalar("learning_rate", learning_rate)
        # One optimiser per builder: a shared TF1 Adam would share its beta-power accumulators.
        optimizer = tf.compat.v1.train.AdamOptimizer(learning_rate)
        with tf.control_dependencies(self._update_ops):
            return optimizer.minimize(loss, var_list=var_list)

    @property
    def name(self) -> str:
        return f"{self.family}_{self._depth}"


class _DNNBuilder(_Builder):
    """The seed's simple DNN: `depth` ReLU layers of equal width with dropout (0 layers = linear)."""

    family = "dnn"

    def _body(self, images: tf.Tensor, training: bool) -> tuple[tf.Tensor, list[tf.keras.layers.Layer]]:
        x = images
        init = tf.keras.initializers.GlorotUniform(seed=self._seed)
        for i in range(self._depth):
            x = tf.keras.layers.Dense(
                self._space.dnn_layer_size, activation="relu", kernel_initializer=init, name=f"dense_{i}"
            )(x)
            x = tf.keras.layers.Dropout(self._space.dnn_dropout, seed=self._seed, name=f"dropout_{i}")(
                x, training=training
            )
        return x, []

    def _complexity(self) -> float:
        # As in simple_dnn: Rademacher complexity grows like the square root of depth.
        return math.sqrt(self._depth)

    @property
    def name(self) -> str:
        return "linear" if self._depth == 0 else f"dnn_{self._depth}"


class _CNNBuilder(_Builder):
    """`depth` conv blocks (convs + optional batch norm + 2×2 max-pool), then dense + dropout."""

    family = "cnn"

    def _filters(self, block: int) -> int:
        filters = self._space.cnn_filters
        return filters[min(block, len(filters) - 1)]

    def _body(self, images: tf.Tensor, training: bool) -> tuple[tf.Tensor, list[tf.keras.layers.Layer]]:
        space = self._space
        x = tf.reshape(images, [-1, IMAGE_SIDE, IMAGE_SIDE, 1])
        if training and space.augment_shift > 0:
            x = _random_shift(x, space.augment_shift, self._seed)
        init = tf.keras.initializers.HeNormal(seed=self._seed)
        norms: list[tf.keras.layers.Layer] = []
        side = IMAGE_SIDE
        for block in range(self._depth):
            for conv in range(space.cnn_convs_per_block):
                x = tf.keras.layers.Conv2D(
                    self._filters(block),
                    3,
                    padding="same",
                    use_bias=not space.cnn_batch_norm,
                    kernel_initializer=init,
                    name=f"conv_{block}_{conv}",
                )(x)
                if space.cnn_batch_norm:
                    norm = tf.keras.layers.BatchNormalization(name=f"bn_{block}_{conv}")
                    x = norm(x, training=training)
                    norms.append(norm)
                x = tf.nn.relu(x)
            # Once the map is 1×1 there is nothing left to pool; deeper blocks keep that size.
            if side >= 2:
                x = tf.keras.layers.MaxPooling2D(2, name=f"pool_{block}")(x)
                side //= 2
        x = tf.keras.layers.Flatten(name="flatten")(x)
        x = tf.keras.layers.Dense(space.cnn_dense_units, activation="relu", kernel_initializer=init, name="fc")(x)
        x = tf.keras.layers.Dropout(space.cnn_dropout, seed=self._seed, name="fc_dropout")(x, training=training)
        return x, norms

    def _complexity(self) -> float:
        return math.sqrt(self._depth * self._space.cnn_convs_per_block + 1)


class Generator(adanet.subnetwork.Generator):
    """Per iteration: from each enabled family, its current depth and one deeper.

    A family's current depth is that of the newest member of the previous ensemble from the same
    family, or the family's initial depth; seeds differ per iteration so repeated shapes still give
    diverse members, which is what averaging in the ensemble feeds on.
    """

    def __init__(self, space: SearchSpace, feature_key: str = IMAGE_KEY) -> None:
        self._space = space
        self._feature_key = feature_key

    def _current_depth(self, family: str, previous_ensemble) -> int:
        depth = self._space.dnn_initial_layers if family == "dnn" else self._space.cnn_initial_blocks
        if previous_ensemble:
            for weighted in previous_ensemble.weighted_subnetworks:
                shared = weighted.subnetwork.shared
                if shared.get(_FAMILY_KEY) == family:
                    depth = int(shared[_DEPTH_KEY])
        return depth

    def generate_candidates(
        self, previous_ensemble, iteration_number, previous_ensemble_reports, all_reports
    ) -> list[adanet.subnetwork.Builder]:
        seed = self._space.seed + 1000 * int(iteration_number)
        builders: list[adanet.subnetwork.Builder] = []
        if "dnn" in self._space.families:
            depth = self._current_depth("dnn", previous_ensemble)
            for offset in (0, 1):
                builders.append(_DNNBuilder(self._space, depth + offset, self._feature_key, seed + offset))
        if "cnn" in self._space.families:
            depth = self._current_depth("cnn", previous_ensemble)
            for offset in self._space.cnn_depth_offsets:
                builders.append(_CNNBuilder(self._space, depth + offset, self._feature_key, seed + 10 + offset))
        return builders


def build_generator(space: SearchSpace, feature_key: str = IMAGE_KEY) -> adanet.subnetwork.Generator:
    """The subnetwork generator for `space`; features arrive as `features[feature_key]`, [batch, 784]."""
    return Generator(space, feature_key)


def _mixture_optimizer(space: SearchSpace) -> Callable[[], tf.compat.v1.train.Optimizer]:
    return lambda: tf.compat.v1.train.AdamOptimizer(space.learning_rate / 10)


def _ensemblers(space: SearchSpace) -> list[adanet.ensemble.Ensembler]:
    ensemblers: list[adanet.ensemble.Ensembler] = []
    for kind in space.ensemblers:
        if kind == "mean":
            ensemblers.append(adanet.ensemble.MeanEnsembler())
            continue
        learned = kind == "learned"
        ensemblers.append(
            adanet.ensemble.ComplexityRegularizedEnsembler(
                # Without an optimiser the scalar mixture weights stay at 1/N: a plain logit average.
                # A factory, so each iteration's graph gets its own optimiser (and slot variables).
                optimizer=_mixture_optimizer(space) if learned else None,
                adanet_lambda=space.adanet_lambda,
                adanet_beta=space.adanet_beta,
                name=kind,
            )
        )
    return ensemblers


def _strategies(space: SearchSpace) -> list[adanet.ensemble.Strategy]:
    by_name = {
        "grow": adanet.ensemble.GrowStrategy,
        "all": adanet.ensemble.AllStrategy,
        "solo": adanet.ensemble.SoloStrategy,
    }
    return [by_name[name]() for name in space.ensemble.split("+")]


class RecordingEvaluator(adanet.Evaluator):
    """`adanet.Evaluator` that also appends every candidate ensemble's eval metrics to a JSONL file.

    AdaNet only logs the per-candidate numbers it selects on; the search report needs them. The
    candidates' names are read from the scopes of their metric tensors
    (`.../ensemble_<name>/...`), which is where AdaNet builds them.
    """

    _RECORDED = ("accuracy", "average_loss", "adanet_loss")

    def __init__(
        self, input_fn: Callable, record_path: str, steps: int | None = None, metric_name: str = "adanet_loss"
    ) -> None:
        objective = (
            adanet.Evaluator.Objective.MAXIMIZE if metric_name == "accuracy" else adanet.Evaluator.Objective.MINIMIZE
        )
        super().__init__(input_fn=input_fn, metric_name=metric_name, objective=objective, steps=steps)
        self._record_path = record_path

    def evaluate(self, sess, ensemble_metrics: Sequence[dict[str, Any]]) -> list[float]:
        evals_completed = 0
        update_ops = [[m[key][1] for key in self._RECORDED if key in m] for m in ensemble_metrics]
        sess.run(tf.compat.v1.local_variables_initializer())
        while self.steps is None or evals_completed < self.steps:
            try:
                sess.run(update_ops)
            except tf.errors.OutOfRangeError:
                break
            evals_completed += 1
        values = sess.run([{key: m[key][0] for key in self._RECORDED if key in m} for m in ensemble_metrics])
        self._record(sess, ensemble_metrics, values)
        return [float(v[self.metric_name]) for v in values]

    def _record(self, sess, ensemble_metrics, values: list[dict[str, np.ndarray]]) -> None:
        names = [_ensemble_name(m) for m in ensemble_metrics]
        iteration = _iteration_number(names)
        selected = int(self.objective_fn([float(v[self.metric_name]) for v in values]))
        record = {
            "iteration": iteration,
            "global_step": int(sess.run(tf.compat.v1.train.get_global_step())),
            "selection_metric": self.metric_name,
            "selected": names[selected],
            "candidates": [
                {"name": name, **{key: float(val) for key, val in v.items()}}
                for name, v in zip(names, values, strict=True)
            ],
        }
        tf.io.gfile.makedirs(os.path.dirname(self._record_path))
        with tf.io.gfile.GFile(self._record_path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")


def _ensemble_name(metrics: dict[str, Any]) -> str:
    for key in ("accuracy", "average_loss"):
        if key in metrics:
            for part in metrics[key][0].name.split("/"):
                if part.startswith("ensemble_"):
                    return part[len("ensemble_") :]
    return "unknown"


def _iteration_number(names: Sequence[str]) -> int | None:
    """The iteration being evaluated: the newest `t<n>_` prefix among the candidate ensembles."""
    numbers = [int(m.group(1)) for m in (re.match(r"t(\d+)_", name) for name in names) if m]
    return max(numbers) if numbers else None


def build_estimator(
    space: SearchSpace,
    model_dir: str,
    run_config: tf.estimator.RunConfig | None = None,
    feature_key: str = IMAGE_KEY,
    eval_input_fn: Callable | None = None,
    eval_steps: int | None = None,
    best_ensemble_indices: Sequence[int] | None = None,
) -> adanet.Estimator:
    """An `adanet.Estimator` over `space`; train it with `max_steps=space.total_steps`.

    `eval_input_fn` (the `eval` split, never test) selects among candidate ensembles at the end of
    each iteration; every candidate's metrics on it are kept in `model_dir/search/` for the report.
    Without it AdaNet selects on a moving average of the training AdaNet loss.

    `best_ensemble_indices` (one per iteration, e.g. from `best_ensemble_index_<i>` of a finished
    search's `evaluate`) fixes the selection instead (AdaNet's replay): an estimator for predicting
    and exporting a trained model. Without it, EVERY `evaluate`, `predict` and `export_saved_model`
    call first re-evaluates all candidates of the last iteration on the eval split to pick one.
    """
    config = run_config or tf.estimator.RunConfig(tf_random_seed=space.seed)
    config = config.replace(
        model_dir=model_dir,
        tf_random_seed=space.seed if config.tf_random_seed is None else config.tf_random_seed,
        # AdaNet restores previous members from checkpoints at iteration boundaries.
        save_checkpoints_steps=config.save_checkpoints_steps or space.max_iteration_steps,
        save_checkpoints_secs=None,
    )
    evaluator = None
    if eval_input_fn is not None:
        evaluator = RecordingEvaluator(
            eval_input_fn,
            record_path=os.path.join(model_dir, CANDIDATE_EVALS_FILE),
            steps=eval_steps,
            metric_name=space.selection_metric,
        )
    return adanet.Estimator(
        head=tf.estimator.MultiClassHead(n_classes=NUM_CLASSES),
        subnetwork_generator=build_generator(space, feature_key),
        max_iteration_steps=space.max_iteration_steps,
        max_iterations=space.max_iterations,
        ensemblers=_ensemblers(space),
        ensemble_strategies=_strategies(space),
        evaluator=evaluator,
        adanet_loss_decay=space.adanet_loss_decay,
        model_dir=model_dir,
        config=config,
        replay_config=None if best_ensemble_indices is None else
        adanet.replay.Config(best_ensemble_indices=[int(i) for i in best_ensemble_indices]),
    )
