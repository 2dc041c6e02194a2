"""What artifacts' files say: split row counts, anomalies, training summary, evaluation results.

MLMD records where an artifact lives, not what is in it; these readers open the files and return plain
Python values. Statistics and anomalies are the `tensorflow_metadata` protos TFDV writes, parsed as
`tfdv.load_stats_binary` does, without importing TFDV (20 s of Beam and TensorFlow start-up for a
two-line parse); evaluations are read from TFMA's files by `tfma_files`, the same way, without
importing TFMA (it loads TensorFlow). A file that is gone (a pruned pipeline root) gives
an empty answer with a log line rather than failing the whole report.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from mlpipe.contract import NUM_CLASSES, TRAINING_SUMMARY_FILE
from mlpipe.metadata import tfma_files

log = logging.getLogger(__name__)

ACCURACY = "sparse_categorical_accuracy"  # TFMA's name for the Evaluator's accuracy metric
STATS_FILE = "FeatureStats.pb"
ANOMALIES_FILE = "SchemaDiff.pb"
# AdaNet reports the final ensemble only as a serialized text summary, "| 2_layer_dnn | 3_layer_dnn |".
_ENSEMBLE_RE = re.compile(r"\|((?: [^|\x00-\x1f]+ \|)+)")


@dataclass(frozen=True)
class Anomaly:
    split: str
    feature: str  # "" for a dataset-level anomaly
    description: str


@dataclass(frozen=True)
class ValidationFailure:
    """A threshold the candidate missed: `is_diff` means the comparison with the baseline."""

    metric: str
    value: float | None  # the metric, or for `is_diff` its change against the baseline
    is_diff: bool
    bound: float | None  # the value threshold's lower bound, or the change threshold's absolute limit
    slice: str  # "" for the overall slice, else e.g. "label=3"
    message: str


def split_dir(uri: str, split: str) -> str:
    return os.path.join(uri, f"Split-{split}")


def split_row_counts(statistics_uri: str, splits: list[str]) -> dict[str, int]:
    """Examples per split, from the ExampleStatistics artifact's `Split-*/FeatureStats.pb`."""
    return {
        split: int(sum(d.num_examples for d in stats.datasets))
        for split, stats in _per_split(statistics_uri, splits, STATS_FILE, statistics_pb2.DatasetFeatureStatisticsList)
    }


def split_anomalies(anomalies_uri: str, splits: list[str]) -> list[Anomaly]:
    """Anomalies per split and feature, from the ExampleAnomalies artifact's `Split-*/SchemaDiff.pb`."""
    found: list[Anomaly] = []
    for split, anomalies in _per_split(anomalies_uri, splits, ANOMALIES_FILE, anomalies_pb2.Anomalies):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            found.append(Anomaly(split, feature, info.description or info.short_description))
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            found.append(Anomaly(split, "", info.description or info.short_description))
    return found


def split_statistics(statistics_uri: str, splits: list[str]) -> dict[str, Any]:
    """Each split's `DatasetFeatureStatisticsList` (TFDV's proto), from `Split-*/FeatureStats.pb`."""
    return dict(_per_split(statistics_uri, splits, STATS_FILE, statistics_pb2.DatasetFeatureStatisticsList))


def _per_split(uri: str, splits: list[str], filename: str, proto_class) -> Iterator[tuple[str, Any]]:
    """(split, parsed `uri/Split-<split>/<filename>`) for each split whose file is there."""
    for split in splits:
        path = os.path.join(split_dir(uri, split), filename)
        if not os.path.exists(path):
            log.warning("%s of split %s is gone: %s", filename, split, path)
            continue
        yield split, proto_class.FromString(_read(path))


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def training_summary(model_run_uri: str) -> dict:
    """`training_summary.json`, written by `models.model.run_fn` into the Trainer's model_run dir."""
    path = os.path.join(model_run_uri, TRAINING_SUMMARY_FILE)
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        log.warning("no training summary at %s", path)
        return {}
    except ValueError:
        log.warning("unreadable training summary at %s", path)
        return {}
    return data if isinstance(data, dict) else {}


def final_ensemble(summary: dict) -> list[str]:
    """Subnetworks of the ensemble AdaNet selected last, from the training summary's eval metrics."""
    text = str(summary.get("eval", {}).get("architecture/adanet/ensembles", ""))
    match = _ENSEMBLE_RE.search(text)
    if not match:
        return []
    return [part.strip() for part in match.group(1).split("|") if part.strip()]


def evaluation_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """Overall-slice metrics of the candidate and the baseline; {} when the evaluation is gone."""
    if not os.path.isdir(evaluation_uri):
        log.warning("evaluation output is gone: %s", evaluation_uri)
        return {}
    return overall_metrics(evaluation_uri)


def validation_failures(evaluation_uri: str) -> list[ValidationFailure]:
    """The thresholds the candidate missed, from TFMA's validation result (empty when it passed)."""
    if not os.path.isdir(evaluation_uri):
        return []
    try:
        result = tfma_files.load_validation_result(evaluation_uri)
    except (OSError, ValueError, IndexError) as e:
        log.warning("no readable validation result in %s: %s", evaluation_uri, e)
        return []
    failures = []
    # A threshold without slicing specs applies to every slice, so a single label can fail it too.
    for per_slice in result.metric_validations_per_slice:
        where = ",".join(f"{k.column}={_slice_value(k)}" for k in per_slice.slice_key.single_slice_keys)
        for f in per_slice.failures:
            value = f.metric_value.double_value.value if f.metric_value.HasField("double_value") else None
            failures.append(ValidationFailure(f.metric_key.name, value, f.metric_key.is_diff,
                                              _bound(f.metric_threshold), where, f.message))
    return sorted(failures, key=lambda f: (f.slice != "", f.slice, f.metric))


def failure_summary(failures: list[ValidationFailure], metrics: dict[str, dict[str, float]]) -> str:
    """One line: the overall thresholds the candidate missed, then how many slices missed theirs.

    TFMA's own failure messages are empty for these thresholds, so the line is built from the values:
    "accuracy 0.1390 < floor 0.7000 and < baseline 0.8970; 10 slice(s) below their threshold (label=0, …)".
    """
    overall = [f for f in failures if not f.slice]
    parts = []
    for metric in dict.fromkeys(f.metric for f in overall):
        mine = [f for f in overall if f.metric == metric]
        value = metrics.get("candidate", {}).get(metric)
        if value is None:
            value = next((f.value for f in mine if not f.is_diff), None)
        bits = []
        for f in mine:
            baseline = metrics.get("baseline", {}).get(metric)
            if not f.is_diff:
                bits.append("below its threshold" if f.bound is None else f"< floor {f.bound:.4f}")
            elif baseline is not None:
                bits.append(f"< baseline {baseline:.4f}" + (f" - {-f.bound:.4f}" if f.bound else ""))
            elif f.value is not None:
                bits.append(f"changed by {f.value:+.4f} vs the baseline")
            else:
                bits.append("worse than the baseline")
        shown = "" if value is None else f" {value:.4f}"
        parts.append(f"{short_metric(metric)}{shown} " + " and ".join(bits))
    slices = list(dict.fromkeys(f.slice for f in failures if f.slice))
    if slices:
        more = ", …" if len(slices) > 3 else ""
        parts.append(f"{len(slices)} slice(s) below their threshold ({', '.join(slices[:3])}{more})")
    return "; ".join(parts)


def short_metric(metric: str) -> str:
    return "accuracy" if metric == ACCURACY else metric


def _bound(threshold) -> float | None:
    if threshold.HasField("value_threshold") and threshold.value_threshold.HasField("lower_bound"):
        return threshold.value_threshold.lower_bound.value
    if threshold.HasField("change_threshold") and threshold.change_threshold.HasField("absolute"):
        return threshold.change_threshold.absolute.value
    return None


def _slice_value(key) -> str:
    which = key.WhichOneof("kind")
    value = getattr(key, which) if which else ""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def evaluation_accuracy(evaluation_uri: str) -> dict[str, float]:
    """Overall-slice accuracy of the candidate and (if there was one) the baseline model."""
    return {
        role: metrics["sparse_categorical_accuracy"]
        for role, metrics in overall_metrics(evaluation_uri).items()
        if "sparse_categorical_accuracy" in metrics
    }


def slice_accuracy(evaluation_uri: str, feature: str) -> dict[str, dict[str, float]]:
    """Accuracy of the candidate and the baseline on each slice of one feature: value → role → acc."""
    found: dict[str, dict[str, float]] = {}
    for metrics in tfma_files.load_metrics(evaluation_uri):
        keys = metrics.slice_key.single_slice_keys
        if len(keys) != 1 or keys[0].column != feature:
            continue
        for kv in metrics.metric_keys_and_values:
            if kv.key.name == "sparse_categorical_accuracy" and not kv.key.is_diff:
                role = "baseline" if kv.key.model_name == "baseline" else "candidate"
                found.setdefault(_slice_value(keys[0]), {})[role] = kv.value.double_value.value
    return found


def overall_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """Overall-slice scalar metrics (name → value) of the "candidate" and the "baseline" model;
    the candidate-minus-baseline diffs are left out."""
    found: dict[str, dict[str, float]] = {}
    for metrics in tfma_files.load_metrics(evaluation_uri):
        if metrics.slice_key.single_slice_keys:
            continue
        for kv in metrics.metric_keys_and_values:
            key = kv.key
            if key.is_diff or not kv.value.HasField("double_value"):
                continue
            role = "baseline" if key.model_name == "baseline" else "candidate"
            found.setdefault(role, {})[key.name] = kv.value.double_value.value
    return found


def test_confusion_matrix(evaluation_uri: str, n_classes: int = NUM_CLASSES):
    """Overall-slice confusion matrix (rows: true class, columns: predicted) of the candidate model,
    from TFMA's MultiClassConfusionMatrixPlot; None when the evaluation has no such plot."""
    import numpy as np

    for plots in tfma_files.load_plots(evaluation_uri):
        if plots.slice_key.single_slice_keys:
            continue
        for kv in plots.plot_keys_and_values:
            if kv.key.name != "multi_class_confusion_matrix_plot" or kv.key.model_name == "baseline":
                continue
            matrices = kv.value.multi_class_confusion_matrix_at_thresholds.matrices
            if not matrices:
                continue
            counts = np.zeros((n_classes, n_classes), dtype=np.int64)
            for entry in matrices[0].entries:  # threshold 0: the arg-max class
                counts[entry.actual_class_id, entry.predicted_class_id] += int(round(entry.num_weighted_examples))
            return counts
    return None
