"""AutoML benchmark: the seed's simple-DNN AdaNet vs. our search space vs. a plain hand-written CNN.

Same data (real MNIST: train 50k, select on valid 10k, report on the standard test 10k), same
wall-clock training budget for each contender (a hook stops training when the budget is spent), same
two CPU cores. Wall times include contention from whatever else runs on the machine, so each row also
records the CPU seconds the process got and the load average around it.

    .venv/bin/python bench/bench_automl.py                     # full comparison, writes BENCHMARKS.md
    .venv/bin/python bench/bench_automl.py --quick             # smoke run, to BENCHMARKS.quick.md
    .venv/bin/python bench/bench_automl.py --only search --space cnn_batch_norm=false --no-write
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import tensorflow as tf  # noqa: E402

from mlpipe.data.mnist_source import Split, load_mnist  # noqa: E402
from models.adanet_compat import adanet  # noqa: E402
from models.generators import build_estimator  # noqa: E402
from models.hparams import SearchSpace  # noqa: E402

logger = logging.getLogger("bench_automl")

SECTION = "automl"
CONTENDERS = ("seed", "search", "cnn")
FEATURE_KEY = "image"


# ---------------------------------------------------------------------------------------------- data
def to_features(images: np.ndarray) -> np.ndarray:
    """What the TFX Transform hands the trainer: pixels / 255 as float32."""
    return images.astype(np.float32) / 255.0


def make_input_fn(split: Split, batch_size: int, train: bool, seed: int = 0, limit: int | None = None) -> Callable:
    """Batches of `{image: float32 [b, 784]}, label` from numpy, like the trainer's TFRecord input.

    Batches come from a Python generator on purpose: `from_tensor_slices` would embed the whole
    split in the graph as a constant (157 MB for train), and AdaNet writes that graph into every
    checkpoint's .meta, graph.pbtxt and the event files, which costs minutes per run.
    """
    x = to_features(split.images[:limit])
    y = split.labels[:limit]

    def batches():
        rng = np.random.default_rng(seed)
        while True:
            order = rng.permutation(len(y)) if train else np.arange(len(y))
            for start in range(0, len(y), batch_size):
                idx = order[start : start + batch_size]
                yield {FEATURE_KEY: x[idx]}, y[idx]
            if not train:
                return

    def input_fn() -> tf.data.Dataset:
        signature = (
            {FEATURE_KEY: tf.TensorSpec([None, x.shape[1]], tf.float32)},
            tf.TensorSpec([None], tf.int64),
        )
        return tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(2)

    return input_fn


# ------------------------------------------------------------------------------------------- timing
class DeadlineHook(tf.estimator.SessionRunHook):
    """Stops training once `seconds` of wall time have passed since the hook was made.

    One instance spans all AdaNet iterations (AdaNet passes the same hooks to every iteration), so
    the budget covers the whole search, bookkeeping included.
    """

    def __init__(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds
        self.fired = False
        self.fired_at: float | None = None  # time.monotonic() of the first stop request

    def after_run(self, run_context, run_values) -> None:
        if time.monotonic() >= self._deadline:
            if not self.fired:
                self.fired, self.fired_at = True, time.monotonic()
            run_context.request_stop()


@dataclass
class Result:
    contender: str
    description: str
    valid_accuracy: float
    test_accuracy: float
    steps: int
    train_seconds: float
    cpu_seconds: float
    load_before: float
    load_after: float
    stopped_by_budget: bool
    after_cap_seconds: float = 0.0  # wall time train() took after the cap stopped the training steps
    architecture: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def cpu_share(self) -> float:
        """CPU seconds per wall second during training (2.0 = both cores, uncontended)."""
        return self.cpu_seconds / self.train_seconds if self.train_seconds else 0.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed_train(train: Callable[[], None]) -> tuple[float, float, float, float]:
    load_before = os.getloadavg()[0]
    cpu0, t0 = _cpu_seconds(), time.monotonic()
    train()
    seconds, cpu = time.monotonic() - t0, _cpu_seconds() - cpu0
    return seconds, cpu, load_before, os.getloadavg()[0]


def _after_cap(hook: DeadlineHook, t_end: float) -> float:
    return max(t_end - hook.fired_at, 0.0) if hook.fired_at is not None else 0.0


def _predict(estimator: tf.estimator.Estimator, split: Split, batch_size: int) -> np.ndarray:
    fn = make_input_fn(split, batch_size, train=False)
    return np.array([int(p["class_ids"][0]) for p in estimator.predict(fn, predict_keys=["class_ids"])])


def _accuracy(estimator: tf.estimator.Estimator, split: Split, batch_size: int) -> float:
    return float(np.mean(_predict(estimator, split, batch_size) == split.labels))


def _global_step(model_dir: str) -> int:
    return int(tf.train.load_variable(model_dir, "global_step"))


# --------------------------------------------------------------------------------------- contenders
def run_search(
    space: SearchSpace,
    data: dict[str, Split],
    budget_s: float,
    model_dir: str,
    description: str = "our search space",
    report_dir: str | None = None,
) -> Result:
    """(b) The AdaNet search over `space`, selecting on valid; its search report goes to `report_dir`."""
    estimator = build_estimator(
        space,
        model_dir,
        eval_input_fn=make_input_fn(data["valid"], space.eval_batch_size, train=False),
    )
    hook = DeadlineHook(budget_s)
    seconds, cpu, lb, la = _timed_train(
        lambda: estimator.train(
            make_input_fn(data["train"], space.batch_size, train=True, seed=space.seed),
            max_steps=space.total_steps,
            hooks=[hook],
        )
    )
    after_cap = _after_cap(hook, time.monotonic())
    valid = _accuracy(estimator, data["valid"], space.eval_batch_size)
    test_pred = _predict(estimator, data["test"], space.eval_batch_size)
    test = float(np.mean(test_pred == data["test"].labels))
    from models.search_report import build_search_report, write_report

    report = build_search_report(model_dir, space, data["test"].labels, test_pred)
    if report_dir:
        write_report(report, report_dir)
    return Result(
        "search",
        description,
        valid,
        test,
        _global_step(model_dir),
        seconds,
        cpu,
        lb,
        la,
        hook.fired,
        after_cap_seconds=after_cap,
        architecture=report.get("final_architecture_text", ""),
    )


def run_seed(data: dict[str, Split], budget_s: float, model_dir: str, quick: bool) -> Result:
    """(a) The seed's AdaNet: `adanet.examples.simple_dnn` (128-unit layers, Adam 1e-3, batch 64).

    DNN steps are cheap, so it gets up to 3 × 10,000 steps; the budget stops it earlier if need be.
    """
    from adanet.examples import simple_dnn  # the shim is installed by the import of `adanet` above

    steps, iterations = (30, 2) if quick else (10_000, 3)
    estimator = adanet.Estimator(
        head=tf.estimator.MultiClassHead(n_classes=10),
        subnetwork_generator=simple_dnn.Generator(
            feature_columns=[tf.feature_column.numeric_column(FEATURE_KEY, shape=[784])],
            optimizer=tf.compat.v1.train.AdamOptimizer(learning_rate=1e-3),
            layer_size=128,
            initial_num_layers=1,
            seed=42,
        ),
        max_iteration_steps=steps,
        max_iterations=iterations,
        evaluator=adanet.Evaluator(make_input_fn(data["valid"], 500, train=False)),
        model_dir=model_dir,
        config=tf.estimator.RunConfig(tf_random_seed=42, save_checkpoints_steps=steps, save_checkpoints_secs=None),
    )
    hook = DeadlineHook(budget_s)
    seconds, cpu, lb, la = _timed_train(
        lambda: estimator.train(
            make_input_fn(data["train"], 64, train=True, seed=42), max_steps=steps * iterations, hooks=[hook]
        )
    )
    after_cap = _after_cap(hook, time.monotonic())
    valid = _accuracy(estimator, data["valid"], 500)
    test = _accuracy(estimator, data["test"], 500)
    return Result(
        "seed",
        f"(a) seed: simple_dnn AdaNet, 128-unit layers, Adam 1e-3, up to {iterations}×{steps:,} steps",
        valid,
        test,
        _global_step(model_dir),
        seconds,
        cpu,
        lb,
        la,
        hook.fired,
        after_cap_seconds=after_cap,
    )


def _plain_cnn_model_fn(features, labels, mode, params):
    """The textbook Keras MNIST CNN: conv 32 → conv 64 → pool → dropout → dense 128 → dropout → 10."""
    training = mode == tf.estimator.ModeKeys.TRAIN
    x = tf.reshape(features[FEATURE_KEY], [-1, 28, 28, 1])
    x = tf.keras.layers.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = tf.keras.layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = tf.keras.layers.MaxPooling2D(2, name="pool")(x)
    x = tf.keras.layers.Dropout(0.25, name="drop1")(x, training=training)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = tf.keras.layers.Dense(128, activation="relu", name="fc")(x)
    x = tf.keras.layers.Dropout(0.5, name="drop2")(x, training=training)
    logits = tf.keras.layers.Dense(10, name="logits")(x)
    head = tf.estimator.MultiClassHead(n_classes=10)
    optimizer = tf.compat.v1.train.AdamOptimizer(params["learning_rate"])
    update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)

    def train_op_fn(loss):
        with tf.control_dependencies(update_ops):
            return optimizer.minimize(loss, global_step=tf.compat.v1.train.get_global_step())

    return head.create_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels, train_op_fn=train_op_fn
    )


def run_plain_cnn(data: dict[str, Split], budget_s: float, model_dir: str, quick: bool) -> Result:
    """(c) A plain hand-written CNN `tf.estimator.Estimator`, trained until the budget is spent."""
    max_steps = 60 if quick else 1_000_000
    estimator = tf.estimator.Estimator(
        model_fn=_plain_cnn_model_fn,
        model_dir=model_dir,
        params={"learning_rate": 1e-3},
        # One checkpoint, at the end of training (the budget decides when that is).
        config=tf.estimator.RunConfig(tf_random_seed=42, save_checkpoints_secs=24 * 3600),
    )
    hook = DeadlineHook(budget_s)
    seconds, cpu, lb, la = _timed_train(
        lambda: estimator.train(
            make_input_fn(data["train"], 64, train=True, seed=42), max_steps=max_steps, hooks=[hook]
        )
    )
    after_cap = _after_cap(hook, time.monotonic())
    valid = _accuracy(estimator, data["valid"], 500)
    test = _accuracy(estimator, data["test"], 500)
    return Result(
        "cnn",
        "(c) plain CNN Estimator (the Keras-example CNN), Adam 1e-3, batch 64, until the budget",
        valid,
        test,
        _global_step(model_dir),
        seconds,
        cpu,
        lb,
        la,
        hook.fired,
        after_cap_seconds=after_cap,
    )


# ------------------------------------------------------------------------------------------- output
def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs for SearchSpace fields; values are Python literals (true/false allowed)."""
    fields = {f.name for f in dataclasses.fields(SearchSpace)}
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        if key not in fields:
            raise SystemExit(f"error: unknown SearchSpace field {key!r}")
        text = {"true": "True", "false": "False"}.get(raw.lower(), raw)
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = raw
        overrides[key] = tuple(value) if isinstance(value, list) else value
    return overrides


def machine_info() -> str:
    return f"Python {platform.python_version()} · TensorFlow {tf.__version__} · adanet {adanet.__version__}"


def _experiment_rows(path: str) -> list[str]:
    """The configurations tried (rows appended by `--json-out` runs of this script), as table rows."""
    rows = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("quick"):
                continue
            rows.append(
                f"| {r['description']} | {r['valid_accuracy'] * 100:.2f} % | {r['test_accuracy'] * 100:.2f} % | "
                f"{r['steps']:,} | {r['train_seconds']:.0f} s | {r['cpu_seconds']:.0f} s | {r['cpu_share']:.2f} | "
                f"{r.get('architecture') or '–'} |"
            )
    return rows


def render_markdown(
    results: list[Result],
    budget_minutes: float,
    space: SearchSpace,
    quick: bool,
    experiments: str | None = None,
    budget_s: float | None = None,
) -> str:
    cap_text = f"{budget_s:.0f}-second" if budget_s is not None else f"{budget_minutes:g}-minute"
    lines = [
        "## AutoML: AdaNet search space vs. seed and a plain CNN (`bench/bench_automl.py`)",
        "",
        f"`.venv/bin/python bench/bench_automl.py --budget-minutes {budget_minutes:g}"
        f"{' --quick' if quick else ''}` · {machine_info()}",
        "",
        "Same data (MNIST train 50k; candidate selection on valid 10k; the standard test 10k scored once at "
        f"the end) and the same {cap_text} wall-clock training cap for each contender, run one after "
        "the other: one hook, created when `train()` starts, stops the training steps of every contender "
        "when the cap is spent. **after cap** = wall seconds `train()` still took after that stop "
        "(AdaNet's end-of-iteration candidate evaluation and checkpoint cannot be interrupted); **steps** = "
        "the trained model's global step; **CPU share** = CPU seconds per wall second while training (≈ 2 "
        "= both cores to ourselves; less means other processes were competing); **load** = 1-minute load "
        "average before → after.",
        "",
        "| contender | test acc | valid acc | steps | train wall | after cap | CPU share | load | hit cap |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.description} | **{r.test_accuracy * 100:.2f} %** | {r.valid_accuracy * 100:.2f} % | "
            f"{r.steps:,} | {r.train_seconds:.0f} s | {r.after_cap_seconds:.0f} s | {r.cpu_share:.2f} | "
            f"{r.load_before:.1f} → "
            f"{r.load_after:.1f} | {'yes' if r.stopped_by_budget else 'no'} |"
        )
    search = [r for r in results if r.contender == "search"]
    if len(search) > 1:
        acc = [r.test_accuracy * 100 for r in search]
        lines += ["", f"Search over {len(search)} seeds: test accuracy mean **{statistics.mean(acc):.2f} %**, "
                  f"min {min(acc):.2f} %, max {max(acc):.2f} %, standard deviation {statistics.stdev(acc):.2f} "
                  f"points; train wall mean {statistics.mean(r.train_seconds for r in search):.0f} s."]
    chosen = [f"`{r.architecture}` ({r.description.rsplit(', ', 1)[-1]})" for r in search if r.architecture]
    if chosen:
        lines += ["", f"Chosen ensemble{'s' if len(chosen) > 1 else ''}: {'; '.join(chosen)}."]
    lines += [
        "",
        "<details><summary>SearchSpace used (the seed of each search row as named)</summary>",
        "",
        "```json",
        json.dumps(space.to_dict(), sort_keys=True),
        "```",
        "</details>",
    ]
    if experiments and os.path.exists(experiments):
        lines += [
            "",
            "### Configurations tried",
            "",
            "Each row is one run of `bench_automl.py --only search --space …` (single-member rows are "
            "`max_iterations=1`, one CNN). Wall times were measured on shared cores; CPU seconds and "
            "CPU share show how contended each run was.",
            "",
            "| configuration | valid acc | test acc | steps | train wall | CPU | CPU share | chosen ensemble |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
            *_experiment_rows(experiments),
        ]
    return "\n".join(lines) + "\n"


def write_benchmarks(markdown: str, quick: bool = False) -> None:
    from bench.report import write_section

    write_section(SECTION, markdown, quick=quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=12.0,
        help="wall-clock training budget per contender (default 12)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2k rows per split, SearchSpace.quick(), a 30 s cap; to BENCHMARKS.quick.md",
    )
    parser.add_argument(
        "--only", default=",".join(CONTENDERS), help=f"comma-separated subset of {CONTENDERS} (default all)"
    )
    parser.add_argument(
        "--space",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="SearchSpace overrides for the search contender, e.g. cnn_batch_norm=false",
    )
    parser.add_argument(
        "--seeds",
        default=None,
        help="comma-separated seeds of the search contender (default 42,43,44; --quick: 42): one row each, "
        "and their mean and spread",
    )
    parser.add_argument("--label", default="", help="description of the search row (default: the overrides)")
    parser.add_argument("--work-dir", default=None, help="where model dirs go (default: a fresh temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the model dirs")
    parser.add_argument("--report-dir", default=None, help="write the search's search_report.json and plots here")
    parser.add_argument("--json-out", default=None, help="append each result as a JSON line to this file")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument(
        "--experiments",
        default=None,
        help="a --json-out file of earlier search runs to include as the 'configurations tried' table",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # AdaNet logs every trackable variable at INFO through absl; keep the output readable.
    logging.getLogger("absl").setLevel(logging.WARNING)
    tf.get_logger().setLevel(logging.ERROR)

    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(chosen) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; choose from {CONTENDERS}")

    space = (SearchSpace.quick() if args.quick else SearchSpace()).replace(**parse_overrides(args.space))
    data = load_mnist()
    if args.quick:
        data = {name: Split(s.name, s.images[:2000], s.labels[:2000]) for name, s in data.items()}
    budget_s = args.budget_minutes * 60 if not args.quick else min(args.budget_minutes * 60, 30.0)

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_automl_"))
    work.mkdir(parents=True, exist_ok=True)
    seeds = [int(x) for x in (args.seeds or ("42" if args.quick else "42,43,44")).split(",") if x.strip()]
    runs = [(c, seed) for c in chosen for seed in (seeds if c == "search" else [None])]
    results: list[Result] = []
    for contender, seed in runs:
        model_dir = work / (contender if seed is None else f"{contender}-{seed}")
        shutil.rmtree(model_dir, ignore_errors=True)
        logger.info("training %s (budget %.0f s) in %s", contender, budget_s, model_dir)
        if contender == "seed":
            result = run_seed(data, budget_s, str(model_dir), args.quick)
        elif contender == "search":
            label = args.label or (
                "(b) our search: `SearchSpace()`" + (f" with {' '.join(args.space)}" if args.space else "")
            )
            seeded = space.replace(seed=seed)
            result = run_search(seeded, data, budget_s, str(model_dir), f"{label}, seed {seed}", args.report_dir)
        else:
            result = run_plain_cnn(data, budget_s, str(model_dir), args.quick)
        results.append(result)
        print(
            f"{result.contender:7s} test {result.test_accuracy:.2%}  valid {result.valid_accuracy:.2%}"
            f"  steps {result.steps}  train {result.train_seconds:.0f} s  cpu share {result.cpu_share:.2f}"
            f"  load {result.load_before:.1f}>{result.load_after:.1f}  hit budget {result.stopped_by_budget}",
            flush=True,
        )
        if args.json_out:
            row = dataclasses.asdict(result) | {
                "cpu_share": result.cpu_share,
                "quick": args.quick,
                "space": space.replace(seed=seed).to_dict() if contender == "search" else None,
            }
            with open(args.json_out, "a") as f:
                f.write(json.dumps(row) + "\n")
        if not args.keep:
            shutil.rmtree(model_dir, ignore_errors=True)

    markdown = render_markdown(results, args.budget_minutes, space, args.quick, args.experiments, budget_s)
    print(markdown)
    if not args.no_write:
        write_benchmarks(markdown, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
