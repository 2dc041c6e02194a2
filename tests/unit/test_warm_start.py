"""Warm start: find the base model's AdaNet run, refuse one that does not fit, continue one iteration."""

from __future__ import annotations

import json

import pytest

from mlpipe import contract
from models import warm_start
from models.hparams import SearchSpace, TrainingConfig


@pytest.mark.parametrize(("base", "expected"), [
    ("/p/root/Trainer/model/17/Format-Serving", "/p/root/Trainer/model_run/17"),
    ("/p/root/Trainer/model/17", "/p/root/Trainer/model_run/17"),
    ("gs://b/pipelines/mnist/Trainer/model/5/Format-Serving/", "gs://b/pipelines/mnist/Trainer/model_run/5"),
    ("/somewhere/else/saved_model", None),
])
def test_the_model_run_is_beside_the_model(base, expected):
    assert warm_start.model_run_of(base) == expected


def _base_run(tmp_path, space: SearchSpace):
    run = tmp_path / "root" / "Trainer" / "model_run" / "3"
    run.mkdir(parents=True)
    (run / contract.TRAINING_SUMMARY_FILE).write_text(
        json.dumps({"training": TrainingConfig(search=space).to_custom_config()}))
    return tmp_path / "root" / "Trainer" / "model" / "3" / "Format-Serving", run


def test_no_base_or_no_run_or_other_architecture_is_cold(tmp_path):
    space = SearchSpace.quick()
    assert warm_start.plan(None, space) is None
    assert warm_start.plan(str(tmp_path / "nowhere" / "model" / "1"), space) is None
    base, _ = _base_run(tmp_path, space.replace(families=("dnn",)))
    assert warm_start.plan(str(base), space) is None  # other families: the checkpoint cannot fit


def test_a_fitting_run_continues_one_iteration_from_its_step(tmp_path):
    import tensorflow as tf

    space = SearchSpace.quick()
    base, run = _base_run(tmp_path, space.replace(max_iterations=2, batch_size=16))
    assert warm_start.plan(str(base), space) is None  # no checkpoint yet
    # A checkpoint as the Estimator saves it (TF1 names: `global_step`).
    with tf.Graph().as_default():
        gs = tf.compat.v1.train.get_or_create_global_step()
        with tf.compat.v1.Session() as sess:
            sess.run(gs.assign(60))
            tf.compat.v1.train.Saver().save(sess, str(run / "model.ckpt"), global_step=60)
    plan = warm_start.plan(str(base), space)
    assert plan is not None and plan.global_step == 60 and plan.model_run_dir == str(run)
    # The base's own space (its batch size), one iteration longer.
    assert (plan.space.max_iterations, plan.space.batch_size) == (3, 16)
    dst = tmp_path / "new_run"
    warm_start.copy_run(str(run), str(dst))
    assert (dst / "checkpoint").exists() and not (dst / contract.TRAINING_SUMMARY_FILE).exists()
