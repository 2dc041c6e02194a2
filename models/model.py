"""TFX Trainer module: `run_fn` trains an `adanet.Estimator` and exports the serving SavedModel.

The SavedModel at `fn_args.serving_model_dir` has two signatures, both applying the Transform graph:
- `serving_default`: `image` float32 [n, 784] raw 0..255 pixels → `class_ids`, `probabilities`,
  `logits` (what JSON clients and the serving function call);
- `serving_examples`: `examples` serialized tf.Examples → the same outputs (what TFMA calls).

`probabilities` are calibrated: softmax(logits / T) with a temperature T fitted on the eval split after
training (`mlpipe.calibration`), baked into the exported graph; `logits` stay the ensemble's raw logits
and `class_ids` their argmax (a temperature does not change it). T and the eval split's accuracy and
expected calibration error before/after are in the search report's `calibration` section.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from mlpipe import calibration, contract
from models import generators, precision, search_report, warm_start
from models.hparams import TrainingConfig

log = logging.getLogger(__name__)


def _gzip_reader(files: list[str]) -> tf.data.Dataset:
    return tf.data.TFRecordDataset(files, compression_type="GZIP")


# Records parsed per `parse_example` call when the input is parsed once: large batches amortise the
# per-call cost; the batch size the model sees is applied after the cache.
PARSE_BATCH = 1024


def _files(file_pattern: list[str] | str) -> list[str]:
    patterns = [file_pattern] if isinstance(file_pattern, str) else file_pattern
    return [f for pattern in patterns for f in tf.io.gfile.glob(pattern)]


def make_input_fn(
    file_pattern: list[str] | str,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    shuffle: bool,
    repeat: bool,
    seed: int = 0,
    parse_once: bool = True,
):
    """Estimator input_fn over Transform's materialized examples: (features, label).

    `parse_once` (the default): gunzip and parse each record once, in large vectorised batches, and
    keep the parsed tensors in memory (`cache`, ~160 MB for the 50k training rows), so the epochs
    after the first only shuffle and batch. The shuffle sees the same elements in the same order as
    on the serialized records, so with the same seed the batches are the same as with
    `parse_once=False` (the per-batch parse of the serialized records, kept for comparison).
    """
    spec = tf_transform_output.transformed_feature_spec()

    def split(f):
        return {contract.IMAGE_KEY: f[contract.IMAGE_KEY]}, f[contract.LABEL_KEY]

    def parse(records):
        return split(tf.io.parse_example(records, spec))

    def input_fn():
        ds = _gzip_reader(_files(file_pattern))
        if parse_once:
            ds = ds.batch(PARSE_BATCH).map(parse, num_parallel_calls=tf.data.AUTOTUNE).cache().unbatch()
        if shuffle:
            ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.batch(batch_size)
        if not parse_once:
            ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    return input_fn


def _receiver_fn(tf_transform_output: tft.TFTransformOutput):
    """Raw `image` pixels by default, serialized tf.Examples as the alternative; Transform applied."""
    raw_spec = tf_transform_output.raw_feature_spec()
    example_spec = {contract.IMAGE_KEY: raw_spec[contract.IMAGE_KEY]}

    def receiver_fn():
        examples = tf.compat.v1.placeholder(tf.string, [None], contract.EXAMPLES_INPUT)
        parsed = tf.io.parse_example(examples, example_spec)[contract.IMAGE_KEY]
        # The pixel input is an overridable default of the parsed examples, so both signatures
        # share one Transform subgraph: feeding `image` bypasses the parser.
        image = tf.compat.v1.placeholder_with_default(
            tf.cast(parsed, tf.float32), [None, contract.IMAGE_PIXELS], contract.IMAGE_KEY
        )
        raw = {contract.IMAGE_KEY: tf.cast(tf.round(image), tf.int64)}
        transformed = tf_transform_output.transform_raw_features(raw)
        return tf.estimator.export.ServingInputReceiver(
            features={contract.IMAGE_KEY: transformed[contract.IMAGE_KEY]},
            receiver_tensors={contract.IMAGE_KEY: image},
            receiver_tensors_alternatives={contract.EXAMPLES_INPUT: {contract.EXAMPLES_INPUT: examples}},
        )

    return receiver_fn


# Whether each training session writes its graph (graph.pbtxt as text, the event file, a .meta per
# checkpoint). AdaNet starts three training sessions per iteration it enters, and writing the graph
# of all candidates as text is seconds each (a profile of a quick warm start: 8 % of run_fn); nothing
# reads these files. Tests that inspect the training graph switch it on.
SAVE_GRAPH_DEF = False


class StepClock(tf.estimator.SessionRunHook):
    """Wall seconds inside the training steps' `session.run` calls, and how many training graphs were
    built (AdaNet builds one per iteration it enters): the rest of `estimator.train` is graph building,
    checkpoint restore/save and AdaNet's bookkeeping between iterations."""

    def __init__(self) -> None:
        self.graphs = 0
        self.steps = 0
        self.step_seconds = 0.0
        self._t = 0.0

    def begin(self) -> None:
        self.graphs += 1

    def before_run(self, run_context):
        self._t = time.perf_counter()

    def after_run(self, run_context, run_values) -> None:
        self.step_seconds += time.perf_counter() - self._t
        self.steps += 1


class _Phases:
    """Wall seconds per named phase of `run_fn`, in order (the training summary's `seconds`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 2)


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (GenericExecutor)."""
    phase = _Phases()
    cfg = TrainingConfig.from_custom_config(fn_args.custom_config)
    space = cfg.search
    with phase("warm_start_copy"):
        warm = warm_start.plan(getattr(fn_args, "base_model", None), space)
        max_steps = space.total_steps
        if warm is not None:
            # One more AdaNet iteration on top of the serving model's frozen ensemble (models/warm_start.py).
            warm_start.copy_run(warm.model_run_dir, fn_args.model_run_dir)
            space = warm.space
            max_steps = warm.global_step + space.max_iteration_steps
            log.info("warm start from %s at step %d: one more iteration (%d steps)", warm.model_run_dir,
                     warm.global_step, space.max_iteration_steps)
    with phase("setup"):
        tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
        train_input_fn = make_input_fn(
            fn_args.train_files, tf_transform_output, space.batch_size, shuffle=True, repeat=True, seed=space.seed
        )
        eval_input_fn = make_input_fn(
            fn_args.eval_files, tf_transform_output, space.eval_batch_size, shuffle=False, repeat=True
        )
        run_config = tf.estimator.RunConfig(
            tf_random_seed=space.seed,
            save_summary_steps=max(space.max_iteration_steps // 4, 1),
            log_step_count_steps=max(space.max_iteration_steps // 10, 1),
            keep_checkpoint_max=2,
            checkpoint_save_graph_def=SAVE_GRAPH_DEF,
        )
        estimator = generators.build_estimator(
            space, fn_args.model_run_dir, run_config, contract.IMAGE_KEY, eval_input_fn, cfg.eval_steps
        )
    policy = precision.training_policy()
    log.info("training with the %s dtype policy", policy)
    clock = StepClock()
    with phase("train"), _dtype_policy(policy):
        estimator.train(input_fn=train_input_fn, max_steps=max_steps, hooks=[clock])
    train_seconds = phase.seconds["train"]
    # Evaluation and export in float32 (variables are float32 either way): the served graph does not
    # depend on the training machine's CPU.
    with phase("evaluate"):
        # The one evaluation of the last iteration's candidates: it selects the final ensemble.
        eval_metrics = estimator.evaluate(input_fn=eval_input_fn, steps=cfg.eval_steps, name="eval")
    log.info("trained to step %d in %.1fs; eval %s", max_steps, train_seconds, eval_metrics)
    # Predict and export that ensemble without selecting it again (adanet would re-run the candidate
    # evaluation in each call: one more graph with every candidate, and the eval batches, per call).
    selected = selected_ensembles(eval_metrics)
    final = generators.build_estimator(space, fn_args.model_run_dir, run_config, contract.IMAGE_KEY,
                                       best_ensemble_indices=selected)
    with phase("calibrate"):
        logits, labels = eval_logits(final, fn_args.eval_files, tf_transform_output, space.eval_batch_size)
        temperature = calibration.fit_temperature(logits, labels)
    with phase("export"):
        export_serving_model(final, tf_transform_output, fn_args.serving_model_dir, temperature)
    with phase("search_report"):
        report = search_report.build_search_report(estimator, space)
        report["calibration"] = search_report.calibration_section(logits, labels, temperature, "eval")
        log.info("calibration on eval: T=%.3f, ECE %.4f → %.4f", temperature, report["calibration"]["ece_before"],
                 report["calibration"]["ece_after"])
        report["train_seconds"] = round(train_seconds, 1)
        search_report.write_report(report, os.path.join(fn_args.serving_model_dir, contract.SEARCH_REPORT_DIR))
    summary = {
        # The space actually searched (a warm start continues the base's space one iteration further).
        "training": TrainingConfig(search=space, eval_steps=cfg.eval_steps).to_custom_config(),
        "warm_start": None if warm is None else {"from": warm.model_run_dir, "global_step": warm.global_step},
        "train_seconds": round(train_seconds, 1),
        # Where run_fn's time went; `train` = the steps + everything else AdaNet does in
        # estimator.train (a graph per iteration entered, checkpoint restore/save, bookkeeping).
        "seconds": {**phase.seconds, "train_steps": round(clock.step_seconds, 2), "steps": clock.steps,
                    "train_graphs": clock.graphs},
        "precision": policy,
        "eval": {k: _jsonable(v) for k, v in eval_metrics.items()},
        "final_ensemble": report.get("final_ensemble"),
        "calibration": report["calibration"],
    }
    log.info("run_fn seconds: %s", summary["seconds"])
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, contract.TRAINING_SUMMARY_FILE), "w") as f:
        json.dump(summary, f, indent=2)


def selected_ensembles(eval_metrics: dict) -> list[int]:
    """The candidate ensemble AdaNet selected in each iteration, from `evaluate`'s
    `best_ensemble_index_<i>` (i = 0 … `iteration`)."""
    last = int(eval_metrics["iteration"])
    return [int(eval_metrics[f"best_ensemble_index_{i}"]) for i in range(last + 1)]


@contextlib.contextmanager
def _dtype_policy(name: str):
    """Keras' global dtype policy set to `name` for the block, then back to what it was."""
    before = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(before)


def _jsonable(value):
    """Eval metrics hold numbers and AdaNet's serialized architecture summary (bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value.item() if hasattr(value, "item") else value


def eval_logits(estimator, eval_files, tf_transform_output: tft.TFTransformOutput,
                batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The final ensemble's logits [n, 10] and the labels [n] of the whole eval split, in file order."""
    input_fn = make_input_fn(eval_files, tf_transform_output, batch_size, shuffle=False, repeat=False)
    labels = np.concatenate([y.numpy().reshape(-1) for _, y in input_fn()])
    logits = np.stack([p["logits"] for p in estimator.predict(lambda: input_fn().map(lambda x, _y: x),
                                                               predict_keys=["logits"],
                                                               yield_single_examples=True)])
    if len(logits) != len(labels):
        raise RuntimeError(f"eval predictions ({len(logits)}) and labels ({len(labels)}) differ in number")
    return logits.reshape(len(labels), contract.NUM_CLASSES), labels.astype(np.int64)


def export_serving_model(estimator, tf_transform_output: tft.TFTransformOutput, serving_dir: str,
                         temperature: float = 1.0) -> None:
    """Export the Estimator, name its signatures for serving and bake the temperature into their
    probabilities; the result lands at `serving_dir`."""
    export_base = serving_dir.rstrip("/") + ".export"
    exported = estimator.export_saved_model(export_base, _receiver_fn(tf_transform_output)).decode()
    set_serving_signatures(exported)
    bake_temperature(exported, temperature)
    if tf.io.gfile.exists(serving_dir):
        tf.io.gfile.rmtree(serving_dir)
    tf.io.gfile.rename(exported, serving_dir)
    tf.io.gfile.rmtree(export_base)


def set_serving_signatures(export_dir: str) -> None:
    """Expose the head's `predict` outputs as `serving_default` / `serving_examples`.

    The Estimator names its default signature after the head's classification output, which only
    accepts serialized examples and is dropped for a float pixel input. The predict signatures are
    the ones we want; copying their SignatureDefs under stable names (keeping only the three
    prediction outputs) is a metadata edit of saved_model.pb, the graph is untouched.
    """
    with _edited_saved_model(export_dir) as model:
        for meta_graph in model.meta_graphs:
            sigs = meta_graph.signature_def
            for target, source in (
                (contract.SERVING_SIGNATURE, "predict"),
                (contract.EXAMPLES_SIGNATURE, f"{contract.EXAMPLES_INPUT}:predict"),
            ):
                sig = type(sigs[source])()
                sig.CopyFrom(sigs[source])
                for key in list(sig.outputs):
                    if key not in contract.PREDICTION_KEYS:
                        del sig.outputs[key]
                sigs[target].CopyFrom(sig)


@contextlib.contextmanager
def _edited_saved_model(export_dir: str):
    """saved_model.pb of `export_dir` as a proto to edit in place; written back when the block ends."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(export_dir, "saved_model.pb")
    model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        model.ParseFromString(f.read())
    yield model
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(model.SerializeToString())


CALIBRATION_SCOPE = "calibration"


def bake_temperature(export_dir: str, temperature: float) -> None:
    """Point both serving signatures' `probabilities` at softmax(logits / T), T a constant in the graph.

    An edit of saved_model.pb like `set_serving_signatures`: a few nodes (Const T, RealDiv, Softmax)
    are appended after each signature's logits tensor; the variables are untouched.
    """
    from tensorflow.python.framework import op_def_registry

    if not temperature > 0:
        raise ValueError(f"temperature must be positive, not {temperature}")
    with _edited_saved_model(export_dir) as model:
        for meta_graph in model.meta_graphs:
            sigs = meta_graph.signature_def
            taken = {n.name for n in meta_graph.graph_def.node}
            added: dict[str, str] = {}  # logits tensor → calibrated probabilities tensor
            for name in (contract.SERVING_SIGNATURE, contract.EXAMPLES_SIGNATURE):
                if name not in sigs:
                    continue
                outputs = sigs[name].outputs
                logits = outputs["logits"].name
                if logits not in added:
                    scope = CALIBRATION_SCOPE if not added else f"{CALIBRATION_SCOPE}_{len(added)}"
                    if any(n == scope or n.startswith(scope + "/") for n in taken):
                        raise ValueError(f"{export_dir} already has a {scope!r} scope: calibrated twice?")
                    nodes = _temperature_nodes(logits, temperature, scope)
                    meta_graph.graph_def.node.extend(nodes)
                    added[logits] = f"{scope}/probabilities:0"
                outputs[contract.PROBABILITIES_KEY].name = added[logits]
            have = {op.name for op in meta_graph.meta_info_def.stripped_op_list.op}
            for op in ("Const", "RealDiv", "Softmax"):
                if op not in have:
                    meta_graph.meta_info_def.stripped_op_list.op.append(op_def_registry.get(op))


def _temperature_nodes(logits_tensor: str, temperature: float, scope: str) -> list:
    """NodeDefs computing `scope/probabilities` = softmax(logits / T) from `logits_tensor` ("op:i")."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, contract.NUM_CLASSES], name="calibration_input")
        with tf.compat.v1.name_scope(scope + "/"):
            t = tf.constant(temperature, tf.float32, name="temperature")
            tf.nn.softmax(tf.math.truediv(x, t, name="scaled_logits"), name="probabilities")
    op, _, index = logits_tensor.partition(":")
    source = op if index in ("", "0") else f"{op}:{index}"
    nodes = []
    for node in graph.as_graph_def().node:
        if node.name == "calibration_input":
            continue
        inputs = [source if i == "calibration_input" else i for i in node.input]
        del node.input[:]
        node.input.extend(inputs)
        nodes.append(node)
    return nodes
