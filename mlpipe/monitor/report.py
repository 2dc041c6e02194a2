"""Drift of a window of served instances against the serving model's training data.

1. The window: rows of `DATASET.predictions` for one model version in [since, until) — the pixels the
   model saw, its predicted class and confidence.
2. The reference: the version's Model artifact (registry metadata `model_artifact_id`) → its lineage
   in ML Metadata (Trainer ← Transform ← ExampleGen's Examples, and StatisticsGen's statistics of
   them) → a sample of the `train` split's examples, run through the same model for its predicted
   class and confidence.
3. Per image: `mlpipe.monitor.features` (ink mass, bounding box, centroid, stroke width), plus the
   predicted class and the confidence. TFDV computes the statistics of window and reference and
   compares them (`validate_statistics` with a Jensen–Shannon divergence drift comparator per feature,
   thresholds configurable); a feature above its threshold is drift.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mlpipe.config import Settings
from mlpipe.contract import IMAGE_KEY, IMAGE_PIXELS, LABEL_KEY, NUM_CLASSES, SERVING_SIGNATURE
from mlpipe.errors import NotFoundError, UsageError
from mlpipe.monitor.features import FEATURES, image_features

log = logging.getLogger(__name__)

MODEL_FEATURES = ("predicted_class", "confidence")
ALL_FEATURES = (*FEATURES, *MODEL_FEATURES)
DEFAULT_THRESHOLD = 0.1
DEFAULT_REFERENCE_SIZE = 2000


@dataclass(frozen=True)
class MonitorConfig:
    since: datetime | None = None
    until: datetime | None = None
    version: str | None = None  # default: the registry's default version
    thresholds: dict[str, float] = field(default_factory=dict)  # feature → JSD threshold
    default_threshold: float = DEFAULT_THRESHOLD
    reference_size: int = DEFAULT_REFERENCE_SIZE
    min_instances: int = 50

    def threshold(self, feature: str) -> float:
        return self.thresholds.get(feature, self.default_threshold)


@dataclass
class Window:
    images: np.ndarray  # uint8 [n, 784]
    predicted_class: np.ndarray
    confidence: np.ndarray
    first: str | None = None
    last: str | None = None


# ---- the served window --------------------------------------------------------------------------

def served_window(settings: Settings, model: str, version: str, since: datetime | None,
                  until: datetime | None) -> Window:
    from google.cloud import bigquery

    from mlpipe.bigquery.client import bq_client

    where = ["model = @model", "version = @version", f"ARRAY_LENGTH(image) = {IMAGE_PIXELS}"]
    params = [bigquery.ScalarQueryParameter("model", "STRING", model),
              bigquery.ScalarQueryParameter("version", "STRING", version)]
    if since is not None:
        where.append("time >= @since")
        params.append(bigquery.ScalarQueryParameter("since", "TIMESTAMP", since))
    if until is not None:
        where.append("time < @until")
        params.append(bigquery.ScalarQueryParameter("until", "TIMESTAMP", until))
    sql = (f"SELECT time, predicted_class, confidence, image FROM `{settings.table_id('predictions')}` "
           f"WHERE {' AND '.join(where)} ORDER BY time")
    client = bq_client(settings)
    from google.api_core import exceptions as gexc

    try:
        rows = [dict(r.items()) for r in client.query(sql, job_config=bigquery.QueryJobConfig(
            query_parameters=params)).result()]
    except gexc.NotFound:
        raise NotFoundError(f"{settings.table_id('predictions')} does not exist: nothing was served and logged "
                            "yet") from None
    if not rows:
        return Window(np.zeros((0, IMAGE_PIXELS), np.uint8), np.zeros(0, np.int64), np.zeros(0))
    return Window(
        images=np.asarray([r["image"] for r in rows], dtype=np.uint8),
        predicted_class=np.asarray([r["predicted_class"] for r in rows], dtype=np.int64),
        confidence=np.asarray([r["confidence"] for r in rows], dtype=np.float64),
        first=rows[0]["time"].isoformat(), last=rows[-1]["time"].isoformat(),
    )


# ---- the reference: the serving model's training data, through its lineage ------------------------

@dataclass
class Reference:
    images: np.ndarray
    labels: np.ndarray
    examples_uri: str
    statistics_uri: str | None
    model_artifact_id: int


def reference_sample(settings: Settings, model_artifact_id: int | None, size: int) -> Reference:
    from mlpipe.metadata.graph import MetadataGraph
    from mlpipe.metadata.training_data import training_data

    if model_artifact_id is None:
        raise NotFoundError("this version has no model_artifact_id in the registry: it was not pushed by the "
                            "pipeline, so its training data cannot be found")
    graph = MetadataGraph.open(settings.metadata_path, settings.pipeline_name)
    data = training_data(graph, model_artifact_id)
    images, labels = read_examples(data.examples.uri, "train", size)
    return Reference(images, labels, data.examples.uri, data.statistics.uri if data.statistics else None,
                     model_artifact_id)


def read_examples(examples_uri: str, split: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to `limit` raw examples (image, label) of `split` from an Examples artifact's gzipped TFRecords."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(f"{examples_uri.rstrip('/')}/Split-{split}/*"))
    if not files:
        raise NotFoundError(f"no {split} examples under {examples_uri}")
    spec = {IMAGE_KEY: tf.io.FixedLenFeature([IMAGE_PIXELS], tf.int64),
            LABEL_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=-1)}
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit).batch(512)
    images, labels = [], []
    for batch in ds:
        parsed = tf.io.parse_example(batch, spec)
        images.append(parsed[IMAGE_KEY].numpy())
        labels.append(parsed[LABEL_KEY].numpy())
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels)


def model_outputs(saved_model_dir: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The served model's predicted class and confidence for `images`."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(saved_model_dir)).signatures[SERVING_SIGNATURE]
    classes, confidence = [], []
    for start in range(0, len(images), 500):
        out = fn(**{IMAGE_KEY: tf.constant(images[start : start + 500], tf.float32)})
        classes.append(out["class_ids"].numpy().reshape(-1))
        confidence.append(out["probabilities"].numpy().max(axis=1))
    return np.concatenate(classes), np.concatenate(confidence)


# ---- comparison ---------------------------------------------------------------------------------

def feature_table(images: np.ndarray, predicted_class: np.ndarray, confidence: np.ndarray) -> dict[str, np.ndarray]:
    return {**image_features(images), "predicted_class": predicted_class.astype(np.int64),
            "confidence": confidence.astype(np.float64)}


def compare(window: dict[str, np.ndarray], reference: dict[str, np.ndarray],
            config: MonitorConfig) -> list[dict[str, Any]]:
    """Per feature: TFDV's Jensen–Shannon divergence of window vs reference, its threshold, drift."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    current = tfdv.generate_statistics_from_dataframe(pd.DataFrame(window))
    previous = tfdv.generate_statistics_from_dataframe(pd.DataFrame(reference))
    schema = tfdv.infer_schema(previous)
    for name in ALL_FEATURES:
        tfdv.get_feature(schema, name).drift_comparator.jensen_shannon_divergence.threshold = config.threshold(name)
    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=previous)
    measured = {}
    for info in anomalies.drift_skew_info:
        for m in info.drift_measurements:
            measured[".".join(info.path.step)] = float(m.value)
    rows = []
    for name in ALL_FEATURES:
        jsd = measured.get(name)
        rows.append({
            "feature": name,
            "window_mean": float(np.mean(window[name])) if len(window[name]) else None,
            "reference_mean": float(np.mean(reference[name])) if len(reference[name]) else None,
            "jensen_shannon": jsd,
            "threshold": config.threshold(name),
            "drift": name in anomalies.anomaly_info,
        })
    return rows


def class_distribution(classes: np.ndarray) -> list[float]:
    counts = np.bincount(np.asarray(classes, dtype=np.int64).clip(0, NUM_CLASSES - 1), minlength=NUM_CLASSES)
    return (counts / max(counts.sum(), 1)).round(4).tolist()


def monitor(settings: Settings, config: MonitorConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report, data for the plot). Raises NotFoundError when the window is too small to judge."""
    from mlpipe.registry import registry_for

    registry = registry_for(settings)
    info = registry.resolve(version=config.version)
    window = served_window(settings, info.model, info.name, config.since, config.until)
    n = len(window.images)
    if n < config.min_instances:
        raise NotFoundError(
            f"only {n} instances served by {info.model}/{info.name} in the window (at least "
            f"{config.min_instances} are needed to judge drift; widen --since or lower --min-instances)"
        )
    ref = reference_sample(settings, info.metadata.model_artifact_id, config.reference_size)
    ref_class, ref_conf = model_outputs(registry.local_saved_model(info), ref.images)
    w = feature_table(window.images, window.predicted_class, window.confidence)
    r = feature_table(ref.images, ref_class, ref_conf)
    rows = compare(w, r, config)
    drifted = [row["feature"] for row in rows if row["drift"]]
    report = {
        "model": info.model,
        "version": info.name,
        "window": {"since": _iso(config.since), "until": _iso(config.until), "first": window.first,
                   "last": window.last, "instances": n},
        "reference": {"model_artifact_id": ref.model_artifact_id, "examples_uri": ref.examples_uri,
                      "statistics_uri": ref.statistics_uri, "split": "train", "instances": len(ref.images)},
        "features": rows,
        "predicted_class_distribution": {"window": class_distribution(window.predicted_class),
                                         "reference": class_distribution(ref_class)},
        "drift": bool(drifted),
        "drifted_features": drifted,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return report, {"window": w, "reference": r}


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


# ---- output -------------------------------------------------------------------------------------

def table_text(report: dict[str, Any]) -> str:
    w = report["window"]
    lines = [
        f"drift monitor: {report['model']}/{report['version']}, {w['instances']} served instances "
        f"({w['first'] or '-'} … {w['last'] or '-'}) vs {report['reference']['instances']} training examples",
        f"{'feature':<16}{'window mean':>12}{'train mean':>12}{'JS div.':>9}{'threshold':>10}  drift",
    ]
    for row in report["features"]:
        jsd = "-" if row["jensen_shannon"] is None else f"{row['jensen_shannon']:.3f}"
        lines.append(f"{row['feature']:<16}{_num(row['window_mean']):>12}{_num(row['reference_mean']):>12}"
                     f"{jsd:>9}{row['threshold']:>10.3f}  {'DRIFT' if row['drift'] else 'ok'}")
    dist = report["predicted_class_distribution"]
    lines.append("predicted class %  window: " + " ".join(f"{100 * p:4.1f}" for p in dist["window"]))
    lines.append("                  train : " + " ".join(f"{100 * p:4.1f}" for p in dist["reference"]))
    verdict = ("DRIFT in " + ", ".join(report["drifted_features"])) if report["drift"] else "no drift"
    lines.append(f"verdict: {verdict}")
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def write_plot(report: dict[str, Any], data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(13, 6))
    rows = {r["feature"]: r for r in report["features"]}
    for ax, name in zip(axes.flat, ALL_FEATURES, strict=True):
        w, r = data["window"][name], data["reference"][name]
        if name == "predicted_class":
            x = np.arange(NUM_CLASSES)
            ax.bar(x - 0.2, report["predicted_class_distribution"]["reference"], 0.4, label="training data")
            ax.bar(x + 0.2, report["predicted_class_distribution"]["window"], 0.4, label="served window")
            ax.set_xticks(x)
        else:
            lo, hi = float(min(w.min(), r.min())), float(max(w.max(), r.max()))
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 30)
            ax.hist(r, bins=bins, density=True, alpha=0.55, label="training data")
            ax.hist(w, bins=bins, density=True, alpha=0.55, label="served window")
        row = rows[name]
        jsd = "-" if row["jensen_shannon"] is None else f"{row['jensen_shannon']:.2f}"
        ax.set_title(f"{name}: JS {jsd}" + (" DRIFT" if row["drift"] else ""), fontsize=9,
                     color="tab:red" if row["drift"] else "black")
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    verdict = "drift: " + ", ".join(report["drifted_features"]) if report["drift"] else "no drift"
    fig.suptitle(f"{report['model']}/{report['version']}: {report['window']['instances']} served vs "
                 f"{report['reference']['instances']} training images — {verdict}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save(settings: Settings, report: dict[str, Any], data: dict[str, Any], plot: Path | None) -> Path:
    """Write the report (and plot) under STATE_DIR/monitor/ and record the run in ML Metadata."""
    from mlpipe.metadata.training_data import record_monitor_run

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    out_dir = settings.monitor_dir / f"{report['model']}-{report['version']}-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / "drift.json"
    report_path.write_text(json.dumps(report, indent=2, sort_keys=True))
    write_plot(report, data, out_dir / "drift.png")
    if plot is not None:
        plot.parent.mkdir(parents=True, exist_ok=True)
        write_plot(report, data, plot)
    summary = {"drift": report["drift"], "drifted_features": report["drifted_features"],
               "instances": report["window"]["instances"], "window_start": report["window"]["first"],
               "window_end": report["window"]["last"],
               "jensen_shannon": {r["feature"]: r["jensen_shannon"] for r in report["features"]}}
    report["mlmd_execution_id"] = record_monitor_run(
        str(settings.metadata_path), report["reference"]["model_artifact_id"], report["model"],
        report["version"], str(report_path.absolute()), summary)
    report["report_path"] = str(report_path)
    report_path.write_text(json.dumps(report, indent=2, sort_keys=True))
    return report_path


def parse_threshold(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or name not in ALL_FEATURES:
        raise UsageError(f"--threshold takes FEATURE=VALUE with FEATURE one of {', '.join(ALL_FEATURES)}; "
                         f"got {text!r}")
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"--threshold {name}= needs a number, not {value!r}") from None
    if not 0 < number <= 1:
        raise UsageError(f"--threshold {name}: a Jensen–Shannon divergence threshold is in (0, 1]")
    return name, number
