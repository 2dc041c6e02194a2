"""The feedback loop end to end, on the laptop, in a few minutes (`make flywheel-demo`).

1. A model is trained (quick profile) and served.
2. A drifted stream (thicker strokes) is served; `mlpipe monitor` sees the drift.
3. The least confident predictions get labels — their true labels, standing in for a person.
4. `mlpipe flywheel --once --warm-start` decides to retrain (drift + new labels): the pipeline
   continues the serving model's search on data that now holds the feedback, and the new model goes
   out as a canary challenger.
5. More drifted traffic is served and labelled; the canary's share is measured.
6. `mlpipe flywheel --once` judges the challenger on online accuracy and promotes it (or not).
Accuracy on held-out drifted images and on the standard test set, before and after, is printed
(and, from `bench/bench_flywheel.py`, written to BENCHMARKS.md).

Everything runs in its own state directory and ports, so the user's `.mlpipe` is left alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlpipe.config import Settings, load_settings  # noqa: E402
from mlpipe.procutil import free_loopback_port  # noqa: E402

log = logging.getLogger("flywheel-demo")

DRIFT = "thick"
LABELLED_FIRST = 300  # low-confidence predictions labelled after the first drifted window
PHASE = 1000  # drifted images per traffic phase
HELD_OUT = (8000, 2000)  # drifted test images [8000, 10000) are only used to measure


@dataclass
class DemoResult:
    drift_kind: str = DRIFT
    drift_detected: bool | None = None
    drifted_features: list[str] = field(default_factory=list)
    labels_sent: int = 0
    canary_share_configured: float = 0.0
    canary_share_observed: float | None = None
    decisions: list[str] = field(default_factory=list)
    cold_run_s: float = 0.0
    retrain_run_s: float = 0.0
    trainer_s: dict[str, float] = field(default_factory=dict)  # Trainer seconds: cold (first run), warm
    before: dict[str, float] = field(default_factory=dict)  # drifted / standard accuracy of v1
    after: dict[str, float] = field(default_factory=dict)  # of the version served at the end
    served_at_end: str = ""


def _cli(settings: Settings, *args: str) -> int:
    from mlpipe.cli import main

    flags = ["--state-dir", str(settings.state_dir), "--bq-port", str(settings.bq_port),
             "--bq-grpc-port", str(settings.bq_grpc_port)]
    return main([*args, *flags])


def _accuracy(saved_model_dir: Path, images: np.ndarray, labels: np.ndarray) -> float:
    import tensorflow as tf

    fn = tf.saved_model.load(str(saved_model_dir)).signatures["serving_default"]
    classes = []
    for i in range(0, len(images), 500):
        out = fn(image=tf.constant(images[i:i + 500], tf.float32))
        classes.append(out["class_ids"].numpy()[:, 0])
    return float((np.concatenate(classes) == labels).mean())


def _serve_stream(url: str, settings: Settings, images: np.ndarray, per_request: int = 10) -> list[dict]:
    """Send to the default route (so a canary can answer), one request id per request."""
    import requests

    session = requests.Session()
    path = f"{url}/v1/projects/{settings.project}/models/{settings.model_name}:predict"
    served = []
    for i in range(0, len(images), per_request):
        batch = images[i:i + per_request]
        r = session.post(path, json={"instances": batch.astype(int).tolist()},
                         headers={"X-Request-Id": uuid.uuid4().hex}, timeout=120)
        r.raise_for_status()
        version = r.headers["X-Model-Version"].split("/")[1]
        for j, p in enumerate(r.json()["predictions"]):
            served.append({"index": i + j, "predictionId": p["predictionId"], "version": version,
                           "class": p["class_ids"][0], "confidence": max(p["probabilities"])})
    return served


def _wait_logged(settings: Settings, rows: int, timeout: float = 300.0) -> None:
    """Until the server's prediction log (sent in the background) holds `rows` rows."""
    from mlpipe.bigquery.client import query_rows, table_exists

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if table_exists(settings, "predictions"):
            n = query_rows(settings, f"SELECT COUNT(*) AS n FROM `{settings.table_id('predictions')}`")[0]["n"]
            if n >= rows:
                return
        time.sleep(2)
    raise TimeoutError(f"the prediction log did not reach {rows} rows within {timeout:.0f} s")


def _label(url: str, settings: Settings, served: list[dict], labels: np.ndarray) -> int:
    import requests

    session = requests.Session()
    path = f"{url}/v1/projects/{settings.project}/models/{settings.model_name}:feedback"
    for s in served:
        r = session.post(path, json={"predictionId": s["predictionId"], "label": int(labels[s["index"]])},
                         timeout=60)
        r.raise_for_status()
    return len(served)


def run(workdir: Path, quick: bool = True) -> DemoResult:
    from mlpipe.bigquery import service
    from mlpipe.bigquery.load import load_mnist_tables
    from mlpipe.data.drift import drifted_test_stream
    from mlpipe.data.mnist_source import load_mnist
    from mlpipe.registry import registry_for
    from mlpipe.serving_check import running_server

    result = DemoResult()
    settings = load_settings(environ={}, state_dir=workdir, bq_port=free_loopback_port(),
                             bq_grpc_port=free_loopback_port(), log_predictions=True)
    test = load_mnist()["test"]
    with contextlib.ExitStack() as stack:
        service.start(settings)
        stack.callback(service.stop, settings)
        print("1/6 load MNIST and train the first model (quick profile)", flush=True)
        load_mnist_tables(settings, limit=None)
        started = time.perf_counter()
        assert _cli(settings, "run", "--profile", "quick") == 0
        result.cold_run_s = time.perf_counter() - started
        registry = registry_for(settings)
        v1 = registry.resolve()
        held_images = drifted_test_stream(DRIFT, n=HELD_OUT[1], start=HELD_OUT[0])
        held_labels = test.labels[HELD_OUT[0]:sum(HELD_OUT)]
        result.before = {
            "drifted": _accuracy(registry.local_saved_model(v1), held_images, held_labels),
            "standard": _accuracy(registry.local_saved_model(v1), test.images.reshape(len(test.images), -1),
                                  test.labels),
        }
        url = stack.enter_context(running_server(settings))

        print(f"2/6 serve {PHASE} drifted ({DRIFT}) images; monitor", flush=True)
        phase1 = drifted_test_stream(DRIFT, n=PHASE, start=0)
        served1 = _serve_stream(url, settings, phase1)
        _wait_logged(settings, len(served1))
        from mlpipe.monitor.report import MonitorConfig, monitor

        report, _ = monitor(settings, MonitorConfig())
        result.drift_detected, result.drifted_features = report["drift"], report["drifted_features"]

        print(f"3/6 label the {LABELLED_FIRST} least confident predictions", flush=True)
        low = sorted(served1, key=lambda s: s["confidence"])[:LABELLED_FIRST]
        result.labels_sent += _label(url, settings, low, test.labels[:PHASE])

        print("4/6 flywheel: retrain on the feedback, roll out as a canary", flush=True)
        started = time.perf_counter()
        assert _cli(settings, "flywheel", "--once", "--profile", "quick", "--canary-share", "0.5",
                    "--min-new-labels", "100", "--min-labelled", "100", "--warm-start") == 0
        result.retrain_run_s = time.perf_counter() - started
        rollout = registry.rollout()
        result.canary_share_configured = rollout.share if rollout else 0.0

        print(f"5/6 serve and label {PHASE} more drifted images", flush=True)
        phase2 = drifted_test_stream(DRIFT, n=PHASE, start=PHASE)
        served2 = _serve_stream(url, settings, phase2)
        if rollout:
            result.canary_share_observed = sum(s["version"] == rollout.version for s in served2) / len(served2)
        _wait_logged(settings, len(served1) + len(served2))
        result.labels_sent += _label(url, settings, served2, test.labels[PHASE:2 * PHASE])

        print("6/6 flywheel: judge the challenger on online accuracy", flush=True)
        assert _cli(settings, "flywheel", "--once", "--profile", "quick", "--min-labelled", "100") == 0
        result.decisions = [json.loads(line)["decision"]["action"] + ": " +
                            "; ".join(json.loads(line)["decision"]["reasons"])
                            for line in settings.flywheel_log.read_text().splitlines()]
        from mlpipe.metadata.graph import MetadataGraph
        from mlpipe.metadata.runs import list_runs

        runs = list_runs(MetadataGraph.open(settings.metadata_path, settings.pipeline_name))
        trainer = [next((c.seconds for c in r.components if c.component == "Trainer"), 0.0) for r in runs]
        result.trainer_s = {"cold": trainer[0], "warm": trainer[-1]} if len(runs) > 1 else {}
        final = registry.resolve()
        result.served_at_end = final.name
        result.after = {
            "drifted": _accuracy(registry.local_saved_model(final), held_images, held_labels),
            "standard": _accuracy(registry.local_saved_model(final), test.images.reshape(len(test.images), -1),
                                  test.labels),
        }
    return result


def plot(result: DemoResult, path: Path) -> None:
    """Accuracy before and after the loop, on the drifted stream and the standard test set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    names = [f"drifted ({result.drift_kind}), held out", "standard MNIST test"]
    xs = np.arange(len(names))
    before = [100 * result.before[k] for k in ("drifted", "standard")]
    after = [100 * result.after[k] for k in ("drifted", "standard")]
    for offset, values, label in ((-0.2, before, "v1 (before)"), (0.2, after, f"{result.served_at_end} (after)")):
        bars = ax.bar(xs + offset, values, 0.38, label=label)
        ax.bar_label(bars, fmt="%.1f%%", fontsize=8)
    ax.set_xticks(xs, names)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"One turn of the feedback loop ({result.labels_sent} labels)", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the demo's state directory")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--plot", type=Path, help="also draw accuracy before/after into this PNG")
    args = parser.parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C, so the demo's emulator and server are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="flywheel-demo-"))
    try:
        result = run(workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.plot:
        plot(result, args.plot)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
        return 0
    print(f"\ndrift detected: {result.drift_detected} ({', '.join(result.drifted_features) or '-'})")
    print(f"labels sent: {result.labels_sent}; canary share {result.canary_share_configured:.0%} configured, "
          f"{result.canary_share_observed or 0:.1%} observed")
    for d in result.decisions:
        print(f"decision: {d}")
    print(f"served at the end: {result.served_at_end}")
    print(f"accuracy on held-out drifted images: {result.before['drifted']:.2%} → {result.after['drifted']:.2%}")
    print(f"accuracy on the standard test set:   {result.before['standard']:.2%} → {result.after['standard']:.2%}")
    print(f"cold run {result.cold_run_s:.0f} s; warm retrain (flywheel turn) {result.retrain_run_s:.0f} s; "
          f"Trainer {result.trainer_s.get('cold', 0):.0f} s cold vs {result.trainer_s.get('warm', 0):.0f} s warm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
