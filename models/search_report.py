"""What the AdaNet search tried and chose, read back from its model_dir; JSON and PNG plots.

Sources, all written by a run of `models.generators.build_estimator`:

- `search/candidate_evals.jsonl` (our `RecordingEvaluator`): every candidate ensemble's accuracy,
  average loss and AdaNet loss on the `eval` split, and which one was selected, per iteration.
- `architecture-<i>.json` (AdaNet): the ensemble chosen at the end of iteration i (members as
  `(iteration, builder name)`, ensembler). AdaNet does not write one for the last iteration — it
  selects that one lazily at evaluate/export time — so the evaluator record supplies it.
- `ensemble/<name>/` and `subnetwork/<name>/` tf.summary event files (AdaNet): the training-time
  AdaNet loss of every candidate ensemble and the training loss and complexity of every subnetwork.

Both public functions are pure: a model_dir (and optional test labels/predictions) in, a dict or
files out. Every read and write goes through `tf.io.gfile`: in the cloud the model_dir and the
SavedModel are on gs://, where `open`/`os.makedirs`/`glob` would silently use the container's disk.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlpipe.contract import (
    ACCURACY_PLOT_FILE,
    CANDIDATE_EVALS_FILE,
    CONFUSION_PLOT_FILE,
    NUM_CLASSES,
    SEARCH_REPORT_FILE,
)
from models.hparams import ENSEMBLERS, SearchSpace

logger = logging.getLogger(__name__)

REPORT_KEYS = (
    "model_dir",
    "search_space",
    "selection_metric",
    "iterations",
    "final_ensemble",
    "final_architecture_text",
    "subnetworks",
    "test",
    "calibration",
)

_ITERATION_PREFIX = re.compile(r"^t(\d+)_(.+)$")


def _model_dir(estimator_or_model_dir: Any) -> str:
    if isinstance(estimator_or_model_dir, str | os.PathLike):
        return os.fspath(estimator_or_model_dir)
    return os.fspath(estimator_or_model_dir.model_dir)


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def _read_evaluator_records(model_dir: str) -> dict[int, dict[str, Any]]:
    """The last record per iteration: later ones (evaluate/predict/export) re-score the same checkpoint."""
    gfile = _gfile()
    path = os.path.join(model_dir, CANDIDATE_EVALS_FILE)
    records: dict[int, dict[str, Any]] = {}
    if not gfile.exists(path):
        return records
    with gfile.GFile(path) as f:
        for line in f.read().splitlines():
            if line.strip():
                record = json.loads(line)
                if record.get("iteration") is not None:
                    records[int(record["iteration"])] = record
    return records


def _read_architectures(model_dir: str) -> dict[int, dict[str, Any]]:
    gfile = _gfile()
    architectures = {}
    for path in gfile.glob(os.path.join(model_dir, "architecture-*.json")):
        match = re.search(r"architecture-(\d+)\.json$", path)
        if match:
            with gfile.GFile(path) as f:
                architectures[int(match.group(1))] = json.load(f)
    return architectures


def _last_scalars(event_dir: str) -> dict[str, float]:
    """Last value of every scalar tag in the (non-recursive) event files of `event_dir`."""
    import tensorflow as tf

    latest: dict[str, tuple[int, float]] = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(event_dir, "events.out.tfevents.*"))):
        try:
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in event.summary.value:
                    if value.HasField("simple_value"):
                        number = float(value.simple_value)
                    elif value.HasField("tensor") and value.tensor.dtype in (1, 2):  # DT_FLOAT, DT_DOUBLE
                        array = tf.make_ndarray(value.tensor)
                        if array.size != 1:
                            continue
                        number = float(array.reshape(()))
                    else:
                        continue
                    if value.tag not in latest or event.step >= latest[value.tag][0]:
                        latest[value.tag] = (event.step, number)
        except tf.errors.DataLossError:
            logger.warning("truncated event file %s; using what was readable", path)
    return {tag: number for tag, (_, number) in latest.items()}


def _summaries(model_dir: str, kind: str) -> dict[str, dict[str, float]]:
    """Training-time scalars per ensemble or subnetwork name, from `model_dir/<kind>/<name>/`."""
    gfile = _gfile()
    out = {}
    for path in sorted(gfile.glob(os.path.join(model_dir, kind, "*"))):
        if gfile.isdir(path):
            out[os.path.basename(path.rstrip("/"))] = _last_scalars(path)
    return out


def _split_name(name: str) -> tuple[int, str]:
    match = _ITERATION_PREFIX.match(name)
    return (int(match.group(1)), match.group(2)) if match else (-1, name)


def _members(
    candidate: str,
    iteration_builders: dict[int, list[str]],
    chosen_members: dict[int, list[tuple[int, str]]],
    ensemblers: Sequence[str],
) -> list[tuple[int, str]]:
    """The (iteration, builder) members of a candidate ensemble, decoded from AdaNet's naming.

    AdaNet names a candidate `t<i>_<strategy candidate>_<ensembler>`; the strategy candidate is
    `<builder>_grow` (previous ensemble + builder), `<builder>_solo` (builder alone) or `all`
    (previous ensemble + every builder of the iteration).
    """
    iteration, rest = _split_name(candidate)
    for ensembler in sorted(ensemblers, key=len, reverse=True):
        if rest.endswith("_" + ensembler):
            rest = rest[: -len(ensembler) - 1]
            break
    previous = chosen_members.get(iteration - 1, [])
    if rest == "all":
        return previous + [(iteration, b) for b in iteration_builders.get(iteration, [])]
    if rest.endswith("_grow"):
        return previous + [(iteration, rest[: -len("_grow")])]
    if rest.endswith("_solo"):
        return [(iteration, rest[: -len("_solo")])]
    return [(iteration, rest)]


def _architecture_text(members: Sequence[tuple[int, str]]) -> str:
    return " + ".join(f"t{i}:{builder}" for i, builder in members)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int = NUM_CLASSES) -> np.ndarray:
    """Counts[true, predicted]."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64).ravel(), np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape} vs {y_pred.shape}")
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def test_section(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, Any]:
    matrix = confusion_matrix(y_true, y_pred)
    total = int(matrix.sum())
    return {
        "n": total,
        "accuracy": float(np.trace(matrix) / total) if total else 0.0,
        "confusion_matrix": matrix.tolist(),
        "per_class_accuracy": [
            float(matrix[c, c] / row) if (row := matrix[c].sum()) else 0.0 for c in range(len(matrix))
        ],
    }


def build_search_report(
    estimator_or_model_dir: Any,
    space: SearchSpace | None = None,
    y_true: Sequence[int] | None = None,
    y_pred: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The search as a JSON-able dict with the keys in `REPORT_KEYS`.

    `iterations[i]` lists every candidate ensemble of iteration i with its members, its metrics on
    the eval split (`accuracy`, `average_loss`, `adanet_loss`; absent if no eval_input_fn was given)
    and its training-time `train_adanet_loss`, plus which one was `selected`. `final_ensemble` is
    the model the estimator serves. Pass test labels and predictions to add a `test` section.
    """
    model_dir = _model_dir(estimator_or_model_dir)
    records = _read_evaluator_records(model_dir)
    architectures = _read_architectures(model_dir)
    ensemble_summaries = _summaries(model_dir, "ensemble")
    subnetwork_summaries = _summaries(model_dir, "subnetwork")

    iteration_builders: dict[int, list[str]] = {}
    for name in subnetwork_summaries:
        i, builder = _split_name(name)
        iteration_builders.setdefault(i, []).append(builder)
    # Our ensemblers are named after their SearchSpace key; "complexity_regularized" is AdaNet's default.
    ensemblers = {a["ensembler_name"] for a in architectures.values()} | set(ENSEMBLERS) | {"complexity_regularized"}

    candidate_names: dict[int, set[str]] = {}
    for name in ensemble_summaries:
        candidate_names.setdefault(_split_name(name)[0], set()).add(name)
    for i, record in records.items():
        candidate_names.setdefault(i, set()).update(c["name"] for c in record["candidates"])
    n_iterations = max([*candidate_names, *architectures, -1]) + 1

    chosen_members: dict[int, list[tuple[int, str]]] = {}
    iterations = []
    for i in range(n_iterations):
        record = records.get(i, {})
        metrics = {c["name"]: c for c in record.get("candidates", [])}
        # A candidate from an earlier iteration here is the previous ensemble, kept as an option.
        names = sorted(candidate_names.get(i, set()), key=lambda n: (_split_name(n)[0] != i, n))
        names = [n for n in names if _split_name(n)[0] == i or n in metrics]
        selected = record.get("selected")
        if i in architectures:
            arch = architectures[i]
            chosen_members[i] = [(s["iteration_number"], s["builder_name"]) for s in arch["subnetworks"]]
            selected = selected or f"t{i}_{arch['ensemble_candidate_name']}_{arch['ensembler_name']}"
        candidates = []
        for name in names:
            members = (
                chosen_members.get(i - 1, [])
                if _split_name(name)[0] < i
                else _members(name, iteration_builders, chosen_members, sorted(ensemblers))
            )
            entry: dict[str, Any] = {
                "name": name,
                "members": [{"iteration": t, "builder": b} for t, b in members],
                "is_previous_ensemble": _split_name(name)[0] < i,
            }
            for key in ("accuracy", "average_loss", "adanet_loss"):
                if key in metrics.get(name, {}):
                    entry[key] = metrics[name][key]
            train = ensemble_summaries.get(name, {})
            if "adanet_loss/adanet/adanet_weighted_ensemble" in train:
                entry["train_adanet_loss"] = train["adanet_loss/adanet/adanet_weighted_ensemble"]
            candidates.append(entry)
        if selected is None and len(candidates) == 1:
            # AdaNet skips evaluation when there is nothing to choose from.
            selected = candidates[0]["name"]
        if i not in chosen_members and selected:
            chosen = next((c for c in candidates if c["name"] == selected), None)
            if chosen is not None:
                chosen_members[i] = [(m["iteration"], m["builder"]) for m in chosen["members"]]
        selected_entry = next((c for c in candidates if c["name"] == selected), {})
        iterations.append(
            {
                "iteration": i,
                "global_step": record.get("global_step"),
                "subnetworks": sorted(iteration_builders.get(i, [])),
                "candidates": candidates,
                "selected": selected,
                "selected_accuracy": selected_entry.get("accuracy"),
            }
        )

    final_members = chosen_members.get(n_iterations - 1, [])
    final = iterations[-1] if iterations else {}
    report: dict[str, Any] = {
        "model_dir": model_dir,
        "search_space": space.to_dict() if space is not None else None,
        "selection_metric": next((r["selection_metric"] for r in records.values()), None),
        "iterations": iterations,
        "final_ensemble": {
            "name": final.get("selected"),
            "members": [{"iteration": t, "builder": b} for t, b in final_members],
            "valid_accuracy": final.get("selected_accuracy"),
        },
        "final_architecture_text": _architecture_text(final_members),
        "subnetworks": {
            name: {key: values[key] for key in ("loss", "complexity", "depth", "learning_rate") if key in values}
            for name, values in subnetwork_summaries.items()
        },
        "test": test_section(y_true, y_pred) if y_true is not None and y_pred is not None else None,
        # Filled in by the Trainer after it fitted the temperature: see `calibration_section`.
        "calibration": None,
    }
    return report


def calibration_section(logits: Sequence[Sequence[float]], labels: Sequence[int], temperature: float,
                        split: str = "eval") -> dict[str, Any]:
    """Accuracy, expected calibration error and NLL of the final ensemble on `split`, before (T = 1)
    and after the temperature the exported model divides its logits by."""
    from mlpipe.calibration import calibration_report

    return calibration_report(np.asarray(logits), np.asarray(labels), temperature, split)


def _plot_accuracy(report: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    metric = "accuracy"
    has_accuracy = any("accuracy" in c for it in report["iterations"] for c in it["candidates"])
    if not has_accuracy:
        metric = "train_adanet_loss"
    chosen_x, chosen_y = [], []
    for it in report["iterations"]:
        i = it["iteration"]
        # The previous ensemble, offered again at each iteration, sits at the iteration's centre.
        positions = {c["name"]: float(i) for c in it["candidates"] if c["is_previous_ensemble"]}
        new = [c for c in it["candidates"] if not c["is_previous_ensemble"] and metric in c]
        for k, c in enumerate(new):
            x = i + (k - (len(new) - 1) / 2) * 0.08
            positions[c["name"]] = x
            ax.scatter(x, c[metric], color="tab:blue", alpha=0.7, s=24)
            members = "+".join(m["builder"] for m in c["members"])
            ax.annotate(members, (x, c[metric]), fontsize=6, alpha=0.8, xytext=(4, 0), textcoords="offset points")
        selected = next((c for c in it["candidates"] if c["name"] == it["selected"] and metric in c), None)
        if selected is not None:
            chosen_x.append(positions.get(selected["name"], float(i)))
            chosen_y.append(selected[metric])
    if chosen_x:
        ax.plot(chosen_x, chosen_y, "o-", color="tab:red", lw=2, label="chosen ensemble")
    if metric == "accuracy":
        ax.yaxis.set_major_formatter(lambda y, _: f"{y * 100:.1f} %")
    ax.scatter([], [], color="tab:blue", label="candidate ensembles")
    ax.set_xticks([it["iteration"] for it in report["iterations"]] or [0])
    ax.set_xlabel("AdaNet iteration")
    ax.set_ylabel("eval accuracy" if metric == "accuracy" else "training AdaNet loss")
    title = "AdaNet search"
    if report.get("final_architecture_text"):
        title += f" → {report['final_architecture_text']}"
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)


def _save_png(fig: Any, path: str) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    with _gfile().GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def _plot_confusion(test: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(test["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(6, 5.2))
    # Log scale so the few errors stay visible next to the ~1,000-per-class diagonal.
    shade = np.log1p(matrix)
    image = ax.imshow(shade, cmap="Blues")
    dark = 0.6 * shade.max()
    for (r, c), count in np.ndenumerate(matrix):
        if count:
            color = "white" if shade[r, c] > dark else "black"
            ax.text(c, r, str(count), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(len(matrix)))
    ax.set_yticks(range(len(matrix)))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test confusion matrix — accuracy {test['accuracy'] * 100:.2f} % of {test['n']:,}")
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)


def write_report(
    report: dict[str, Any],
    out_dir: str,
    y_true: Sequence[int] | None = None,
    y_pred: Sequence[int] | None = None,
) -> dict[str, str]:
    """Write `search_report.json` and the plots into `out_dir`; returns {artifact: path}.

    Test labels/predictions given here replace the report's `test` section (and are saved with it).
    """
    gfile = _gfile()
    gfile.makedirs(out_dir)
    if y_true is not None and y_pred is not None:
        report = {**report, "test": test_section(y_true, y_pred)}
    paths = {
        "report": os.path.join(out_dir, SEARCH_REPORT_FILE),
        "accuracy_plot": os.path.join(out_dir, ACCURACY_PLOT_FILE),
    }
    with gfile.GFile(paths["report"], "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    _plot_accuracy(report, paths["accuracy_plot"])
    if report.get("test"):
        paths["confusion_plot"] = os.path.join(out_dir, CONFUSION_PLOT_FILE)
        _plot_confusion(report["test"], paths["confusion_plot"])
    logger.info("search report written to %s", out_dir)
    return paths
