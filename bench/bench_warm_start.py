"""Cold run vs warm retrain on new feedback, side by side in one run: the Trainer's wall time and
where it goes (the training summary's `seconds`, written by `models.model.run_fn`).

Starts its own emulator in a temporary state dir and loads MNIST (the profile's slice). Then:

1. `--feedback-rows` labelled feedback rows (inverted MNIST training images no profile's slice
   reads, with their true labels: the drifted domain users send), and a cold `mlpipe run --no-cache --feedback on` → v1;
2. as many NEW feedback rows, and `mlpipe run --no-cache --feedback on --warm-start`: one more AdaNet
   iteration on top of v1, on the data that now holds both batches.

    .venv/bin/python bench/bench_warm_start.py [--profile full|quick] [--feedback-rows N]
    .venv/bin/python bench/bench_warm_start.py --quick   # = --profile quick, into BENCHMARKS.quick.md

`make bench` runs the full profile: on the quick one (2 × 150 tiny steps) the Trainer is mostly fixed
cost that a warm start cannot skip (graph building, evaluation, calibration, export), so only the
full profile's 2 × 4,000-step search shows what skipping iterations saves.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import load_average, write_section  # noqa: E402

# run_fn's phases (models/model.py), in order; `train` includes `train_steps`.
PHASES = (
    ("warm_start_copy", "plan + copy the base run's model dir"),
    ("setup", "Transform output, input functions, estimator"),
    ("train", "`estimator.train`, all of it"),
    ("train_steps", "… of which inside training steps (`session.run`)"),
    ("evaluate", "final `estimator.evaluate` on the eval split"),
    ("calibrate", "eval-split logits + temperature fit"),
    ("export", "SavedModel export + signatures + temperature"),
    ("search_report", "search report"),
)


def write_feedback_batch(settings, images, labels, prefix: str) -> None:
    """Users' labels as `{"image", "label"}` feedback through the real store (one MERGE each)."""
    from mlpipe.feedback.store import FeedbackStore

    store = FeedbackStore(settings)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        # A distinct image per row (the id is a hash of model, pixels and label).
        doc = {"image": [int(p) for p in image], "label": int(label)}
        store.record(store.parse(doc, settings.model_name, lambda: None))
        if (i + 1) % 100 == 0:
            print(f"  {prefix}: {i + 1} feedback rows", flush=True)


def run_pipeline(settings, profile: str, *extra: str) -> tuple[float, str]:
    cmd = [str(ROOT / ".venv/bin/mlpipe"), "run", "--profile", profile, "--no-cache", "--feedback", "on",
           "--state-dir", str(settings.state_dir), "--bq-port", str(settings.bq_port),
           "--bq-grpc-port", str(settings.bq_grpc_port), *extra]
    started = time.perf_counter()
    log_path = Path(settings.state_dir) / f"bench-run-{len(list(Path(settings.state_dir).glob('bench-run-*')))}.log"
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n"
                         f"{log_path.read_text()[-3000:]}")
    return time.perf_counter() - started, proc.stdout


def trainer_of_last_run(settings) -> tuple[float, dict]:
    """The last run's Trainer component seconds (ML Metadata) and its training summary."""
    from mlpipe.metadata.graph import MetadataGraph
    from mlpipe.metadata.payloads import training_summary
    from mlpipe.metadata.runs import list_runs

    graph = MetadataGraph.open(settings.metadata_path, settings.pipeline_name)
    record = list_runs(graph)[-1]
    trainer = next(c for c in record.components if c.component == "Trainer")
    run_dir = next(graph.artifact(link.artifact_id).uri for link in trainer.outputs if link.key == "model_run")
    return trainer.seconds, training_summary(run_dir)


def markdown(profile: str, rows: dict, cold: dict, warm: dict) -> str:
    def fmt(x) -> str:
        return "-" if x is None else f"{x:.1f} s"

    lines = ["| | cold run | warm retrain |", "|---|---|---|",
             f"| `mlpipe run` wall time (process start to summary) | {fmt(cold['wall'])} | {fmt(warm['wall'])} |",
             f"| **Trainer component** (ML Metadata) | **{fmt(cold['trainer'])}** | **{fmt(warm['trainer'])}** |"]
    for key, what in PHASES:
        lines.append(f"| `{key}`: {what} | {fmt(cold['seconds'].get(key))} | {fmt(warm['seconds'].get(key))} |")
    for key, what in (("steps", "training steps run"), ("train_graphs", "training graphs built")):
        lines.append(f"| {what} | {cold['seconds'].get(key, '-')} | {warm['seconds'].get(key, '-')} |")
    ratio = warm["trainer"] / cold["trainer"] if cold["trainer"] else float("nan")
    space = cold["summary"].get("training", {}).get("search", {})
    return f"""## Warm start: cold run vs retrain on new feedback (`bench/bench_warm_start.py --profile {profile}`)

Profile `{profile}`: {rows['mnist']} ({space.get('max_iterations')} AdaNet
iterations × {space.get('max_iteration_steps')} steps cold); {rows['first']} labelled feedback rows before the
cold run, {rows['second']} new ones before the warm retrain (`--warm-start`: one more iteration on top of the
cold run's model). Both runs `--no-cache`, one after the other on the same machine.

{chr(10).join(lines)}

Warm / cold Trainer time: **{ratio:.2f}**. The `run_fn` phases do not add up to the Trainer component's
time: TFX's own work around `run_fn` (module import, artifact bookkeeping) is the rest. Load average at
the end: {load_average()}.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="full", choices=["full", "quick"],
                        help="pipeline profile of both runs (default full)")
    parser.add_argument("--feedback-rows", type=int, default=300, help="feedback rows per batch (default 300)")
    parser.add_argument("--quick", action="store_true", help="--profile quick, written to BENCHMARKS.quick.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.profile = "quick"

    from mlpipe.bigquery import service
    from mlpipe.bigquery.load import load_mnist_tables
    from mlpipe.config import load_settings
    from mlpipe.data.drift import invert
    from mlpipe.data.mnist_source import load_mnist
    from mlpipe.procutil import free_loopback_port
    from pipeline.configs import PROFILES

    n = args.feedback_rows
    limits = PROFILES[args.profile].row_limits
    with tempfile.TemporaryDirectory(prefix="bench-warm-start-") as tmp:
        settings = load_settings(environ={}, state_dir=Path(tmp), bq_port=free_loopback_port(),
                                 bq_grpc_port=free_loopback_port())
        service.start(settings)
        try:
            load_mnist_tables(settings, limit=max(limits.values()) if limits else None)
            train = load_mnist()["train"]
            # The last training images, inverted: never in a test split, not in the quick slice.
            images = invert(train.images[-2 * n:].reshape(2 * n, -1))
            labels = train.labels[-2 * n:]
            results = {}
            for name, batch, extra in (("cold", slice(0, n), ()), ("warm", slice(n, 2 * n), ("--warm-start",))):
                write_feedback_batch(settings, images[batch], labels[batch], name)
                print(f"{name} run (profile {args.profile}) …", flush=True)
                wall, stdout = run_pipeline(settings, args.profile, *extra)
                trainer, summary = trainer_of_last_run(settings)
                if (summary.get("warm_start") is not None) != (name == "warm"):
                    raise SystemExit(f"the {name} run's Trainer did not train {name}: {summary.get('warm_start')}")
                results[name] = {"wall": wall, "trainer": trainer, "summary": summary,
                                 "seconds": summary.get("seconds", {})}
                print(f"  Trainer {trainer:.1f} s; run_fn phases {json.dumps(summary.get('seconds'))}", flush=True)
        finally:
            service.stop(settings)
    mnist = ("all of MNIST" if not limits else
             "MNIST " + " / ".join(f"{split} {k:,}" for split, k in limits.items()) + " rows")
    rows = {"mnist": mnist, "first": n, "second": n}
    md = markdown(args.profile, rows, results["cold"], results["warm"])
    write_section("warm_start", md, quick=args.quick)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
