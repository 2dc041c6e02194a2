"""Warm start: a retrain continues the serving model's AdaNet search instead of starting over.

AdaNet grows an ensemble one iteration at a time and freezes what earlier iterations chose, so the
natural warm start is to resume from the base model's checkpoints and train ONE more iteration on the
new data (which now holds users' feedback): its new candidates learn what the frozen ensemble gets
wrong, and the mixture weights are re-fit. That costs one iteration's steps instead of all of them.

The base model reaches the Trainer as TFX's `base_model` (its Format-Serving directory). Its AdaNet
model directory is the `model_run` output of the same Trainer execution: TFX names output artifacts
`<pipeline root>/<component>/<output key>/<execution id>`, so it sits beside the model. When it cannot
be found (another pipeline root, a deleted run), or its search space differs (other families or
shapes), training starts cold and says why.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass

import tensorflow as tf

from mlpipe import contract
from models.hparams import SearchSpace, TrainingConfig

log = logging.getLogger(__name__)

# What must be equal for the base's checkpoint to fit the new graph (the budget may differ).
ARCHITECTURE_FIELDS = ("families", "dnn_layer_size", "cnn_filters", "cnn_initial_blocks", "cnn_convs_per_block",
                       "cnn_dense_units", "cnn_depth_offsets", "ensemble", "ensemblers", "max_iteration_steps")
_MODEL_DIR = re.compile(r"^(?P<root>.*)/(?P<component>[^/]+)/model/(?P<execution>\d+)(?:/Format-Serving)?/?$")


@dataclass(frozen=True)
class WarmStart:
    model_run_dir: str  # the base Trainer run's AdaNet model_dir
    global_step: int
    space: SearchSpace  # the base's search space, continued for one more iteration
    reason: str = ""


def model_run_of(base_model: str) -> str | None:
    """The `model_run` directory of the Trainer execution that produced `base_model`."""
    m = _MODEL_DIR.match(base_model.rstrip("/"))
    if not m:
        return None
    return f"{m['root']}/{m['component']}/model_run/{m['execution']}"


def plan(base_model: str | None, space: SearchSpace) -> WarmStart | None:
    """How to continue from `base_model`, or None (with the reason logged) to train cold."""
    if not base_model:
        return None
    run_dir = model_run_of(base_model)
    summary_path = run_dir and os.path.join(run_dir, contract.TRAINING_SUMMARY_FILE)
    if not summary_path or not tf.io.gfile.exists(summary_path):
        log.warning("warm start: no AdaNet run beside %s; training cold", base_model)
        return None
    with tf.io.gfile.GFile(summary_path) as f:
        base_space = TrainingConfig.from_custom_config(json.load(f)).search
    different = [k for k in ARCHITECTURE_FIELDS if getattr(base_space, k) != getattr(space, k)]
    if different:
        log.warning("warm start: the base model was searched with other %s; training cold", ", ".join(different))
        return None
    checkpoint = tf.train.latest_checkpoint(run_dir)
    if checkpoint is None:
        log.warning("warm start: no checkpoint in %s; training cold", run_dir)
        return None
    step = int(tf.train.load_variable(checkpoint, "global_step"))
    continued = base_space.replace(max_iterations=base_space.max_iterations + 1)
    return WarmStart(run_dir, step, continued)


def copy_run(src: str, dst: str) -> None:
    """The base run's model_dir (checkpoints, architectures, candidate evaluations) into `dst`."""
    for dirpath, _dirs, files in tf.io.gfile.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst if rel == "." else os.path.join(dst, rel)
        tf.io.gfile.makedirs(target)
        for name in files:
            if name == contract.TRAINING_SUMMARY_FILE:
                continue  # this run writes its own
            tf.io.gfile.copy(os.path.join(dirpath, name), os.path.join(target, name), overwrite=True)
