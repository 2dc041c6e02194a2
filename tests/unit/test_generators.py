"""The AutoML search space builds valid AdaNet subnetworks, with stable names, for iterations 0 and 1.

The end-to-end `adanet.Estimator` run on real MNIST rows lives in test_search_report.py, which
reads its model_dir back.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import tensorflow as tf

from models.adanet_compat import adanet
from models.generators import _random_shift, build_estimator, build_generator
from models.hparams import SearchSpace

BATCH = 8


class _NullSummary(adanet.Summary):
    """The builders only record scalars; tests have nowhere to write them."""

    def scalar(self, *args, **kwargs):
        return None

    def image(self, *args, **kwargs):
        return None

    def histogram(self, *args, **kwargs):
        return None

    def audio(self, *args, **kwargs):
        return None


def _fake_features(batch: int = BATCH, seed: int = 0) -> dict[str, tf.Tensor]:
    rng = np.random.default_rng(seed)
    return {"image": tf.constant(rng.random((batch, 784), dtype=np.float32))}


def _build(builder, training: bool, features: dict[str, tf.Tensor] | None = None) -> adanet.Subnetwork:
    with tf.compat.v1.variable_scope(f"subnetwork_{builder.name}"):
        return builder.build_subnetwork(
            features=features or _fake_features(),
            logits_dimension=10,
            training=training,
            iteration_step=tf.constant(0, tf.int64),
            summary=_NullSummary(),
            previous_ensemble=None,
        )


def _previous_ensemble(*subnetworks: adanet.Subnetwork):
    """The slice of `adanet.Ensemble` the generator reads: the members' `shared` dicts."""
    return types.SimpleNamespace(weighted_subnetworks=[types.SimpleNamespace(subnetwork=s) for s in subnetworks])


def _candidates(space: SearchSpace, previous=None, iteration: int = 0):
    return build_generator(space).generate_candidates(
        previous_ensemble=previous, iteration_number=iteration, previous_ensemble_reports=[], all_reports=[]
    )


def test_iteration_0_offers_both_families_at_depth_n_and_n_plus_1():
    space = SearchSpace.quick()
    names = [b.name for b in _candidates(space)]
    n = space.cnn_initial_blocks
    k = space.dnn_initial_layers
    assert names == [f"dnn_{k}", f"dnn_{k + 1}", f"cnn_{n}", f"cnn_{n + 1}"]


@pytest.mark.parametrize("training", [True, False])
def test_every_candidate_builds_logits_and_scalar_complexity(training):
    with tf.Graph().as_default():
        for builder in _candidates(SearchSpace.quick()):
            subnetwork = _build(builder, training)
            assert subnetwork.logits.shape.as_list() == [BATCH, 10], builder.name
            assert subnetwork.complexity.shape.ndims == 0, builder.name
            assert subnetwork.shared["depth"] >= 1


def test_logits_are_finite_and_differ_per_family():
    with tf.Graph().as_default():
        subnetworks = [_build(b, training=False) for b in _candidates(SearchSpace.quick())]
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            logits = sess.run([s.logits for s in subnetworks])
    for value in logits:
        assert np.isfinite(value).all()
    assert not np.allclose(logits[0], logits[2])


def test_iteration_1_grows_from_the_newest_member_of_each_family():
    space = SearchSpace.quick()
    with tf.Graph().as_default():
        built = {b.name: _build(b, training=False) for b in _candidates(space)}
    n = space.cnn_initial_blocks
    deeper_cnn = built[f"cnn_{n + 1}"]
    names = [b.name for b in _candidates(space, _previous_ensemble(deeper_cnn), iteration=1)]
    k = space.dnn_initial_layers
    # No DNN in the ensemble yet: the DNN family restarts at its initial depth.
    assert names == [f"dnn_{k}", f"dnn_{k + 1}", f"cnn_{n + 1}", f"cnn_{n + 2}"]


def test_names_and_variables_are_stable_between_builds():
    """AdaNet rebuilds the graph each iteration and restores members by variable name."""

    def variable_names() -> tuple[list[str], list[str]]:
        with tf.Graph().as_default() as graph:
            builders = _candidates(SearchSpace.quick())
            for builder in builders:
                _build(builder, training=True)
            return [b.name for b in builders], sorted(v.name for v in graph.get_collection("variables"))

    first, second = variable_names(), variable_names()
    assert first == second
    assert any("/conv_0_0/kernel" in name for name in first[1])


def test_train_op_updates_batch_norm_statistics_and_weights():
    space = SearchSpace.quick().replace(cnn_batch_norm=True)
    with tf.Graph().as_default():
        builder = _candidates(space)[2]  # the first CNN
        features = _fake_features()
        subnetwork = _build(builder, training=True, features=features)
        labels = tf.constant(np.arange(BATCH) % 10, dtype=tf.int64)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=subnetwork.logits))
        variables = tf.compat.v1.trainable_variables()
        train_op = builder.build_subnetwork_train_op(
            subnetwork, loss, variables, labels, tf.constant(0, tf.int64), _NullSummary(), None
        )
        moving_mean = next(v for v in tf.compat.v1.global_variables() if "moving_mean" in v.name)
        kernel = next(v for v in variables if "conv_0_0/kernel" in v.name)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            before = sess.run([moving_mean, kernel])
            sess.run(train_op)
            after = sess.run([moving_mean, kernel])
    assert not np.allclose(before[0], after[0]), "batch-norm moving mean was not updated"
    assert not np.allclose(before[1], after[1]), "conv kernel was not trained"


def test_random_shift_moves_digits_without_losing_ink():
    from mlpipe.data.mnist_source import load_mnist

    images = load_mnist()["train"].images[:32].astype(np.float32) / 255.0
    with tf.Graph().as_default():
        x = tf.reshape(tf.constant(images), [-1, 28, 28, 1])
        shifted = _random_shift(x, max_shift=2, seed=1)
        assert shifted.shape.as_list() == [32, 28, 28, 1]
        with tf.compat.v1.Session() as sess:
            out = sess.run(shifted)
    out = out.reshape(32, 784)
    # MNIST digits sit in the central 20×20 box, so a shift of ≤ 2 px keeps every pixel in frame.
    np.testing.assert_allclose(out.sum(axis=1), images.sum(axis=1), rtol=1e-6)
    moved = ~np.all(np.isclose(out, images), axis=1)
    assert moved.sum() >= 16  # 24 of the 25 possible offsets move the image
    assert set(np.unique(out)) <= set(np.unique(images))  # nearest-neighbour: no interpolated values


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"families": ("rnn",)}, r"families must be a non-empty subset of \('dnn', 'cnn'\)"),
        ({"families": ()}, "families must be a non-empty subset"),
        ({"ensemble": "grow+bagging"}, "unknown ensemble strategy 'bagging'"),
        ({"ensemblers": ("median",)}, "unknown ensembler 'median'"),
        ({"lr_schedule": "step"}, "lr_schedule must be one of"),
        ({"max_iteration_steps": 0}, "must be positive"),
        ({"cnn_depth_offsets": (-1, 0)}, "cnn_depth_offsets must be non-negative"),
    ],
)
def test_search_space_rejects_unknown_choices(changes, message):
    with pytest.raises(ValueError, match=message):
        SearchSpace().replace(**changes)


def test_quick_profile_is_small_and_defaults_are_the_full_profile():
    quick, full = SearchSpace.quick(), SearchSpace()
    assert quick.total_steps <= 100
    assert full.total_steps >= 20 * quick.total_steps
    assert set(full.families) == {"dnn", "cnn"}


def test_build_estimator_wires_strategies_ensemblers_and_budget(tmp_path):
    space = SearchSpace.quick().replace(ensemble="grow+solo", ensemblers=("uniform", "mean"))
    estimator = build_estimator(space, str(tmp_path / "model"))
    assert isinstance(estimator, adanet.Estimator)
    assert estimator.model_dir == str(tmp_path / "model")
    assert [type(s).__name__ for s in estimator._ensemble_strategies] == ["GrowStrategy", "SoloStrategy"]
    assert [e.name for e in estimator._iteration_builder._ensemblers] == ["uniform", "mean"]
    assert estimator._max_iterations == space.max_iterations
