"""Pipeline benchmark: per-component wall time and peak RSS of a run, test accuracy, training steps.

Starts its own emulator in a temporary state dir, loads MNIST, runs `mlpipe run --no-cache` as a
subprocess while sampling its RSS (VmRSS of the process tree, every 0.25 s), then attributes samples
to components with the execution start/end times recorded in ML Metadata. The training step count is
the model's measured global step, not the configured budget.
    .venv/bin/python bench/bench_pipeline.py [--profile full|quick] [--keep STATE_DIR]
    .venv/bin/python bench/bench_pipeline.py --quick   # = --profile quick, written to BENCHMARKS.quick.md
`--keep DIR` keeps the state dir, whose registry then holds the run's model (`make bench` serves it
in bench_serving.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import load_average, write_section  # noqa: E402
from mlpipe.bigquery import service  # noqa: E402
from mlpipe.bigquery.load import load_mnist_tables  # noqa: E402
from mlpipe.config import load_settings  # noqa: E402
from mlpipe.procutil import free_loopback_port  # noqa: E402


def _tree_rss_kb(pid: int) -> int:
    """VmRSS of `pid` and its descendants (Beam may fork workers)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            todo += [int(c) for c in children]
        except (OSError, ValueError):
            continue
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), _tree_rss_kb(self.pid)))
            time.sleep(self.every_s)


def component_intervals(metadata_path: str) -> list[tuple[str, str, float, float]]:
    from mlpipe.config import Settings
    from mlpipe.metadata.graph import MetadataGraph

    graph = MetadataGraph.open(metadata_path, Settings().pipeline_name)
    return [(e.component, e.state, e.started_ms / 1000, e.updated_ms / 1000)
            for e in graph.run_executions(graph.run_ids()[-1])]


def measured_steps(training_summary: dict, model_run_dir: Path | None) -> int | str:
    """The trained model's global step: from the Trainer's final evaluation, else its checkpoint."""
    step = training_summary.get("eval", {}).get("global_step")
    if step is not None:
        return int(step)
    if model_run_dir is None:
        return "?"
    import tensorflow as tf

    return int(tf.train.load_variable(str(model_run_dir), "global_step"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="full", choices=["full", "quick"])
    parser.add_argument("--keep", help="use this state dir and keep it (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="--profile quick, written to BENCHMARKS.quick.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.profile = "quick"

    tmp = tempfile.TemporaryDirectory(prefix="bench-pipeline-")
    state = Path(args.keep or tmp.name)
    settings = load_settings(
        environ={}, state_dir=state, bq_port=free_loopback_port(), bq_grpc_port=free_loopback_port()
    )
    service.start(settings)
    load_before = load_average()
    try:
        t = time.perf_counter()
        load_mnist_tables(settings)
        load_s = time.perf_counter() - t
        cmd = [str(ROOT / ".venv/bin/mlpipe"), "run", "--profile", args.profile, "--no-cache",
               "--state-dir", str(state), "--bq-port", str(settings.bq_port),
               "--bq-grpc-port", str(settings.bq_grpc_port)]
        t = time.perf_counter()
        log_path = state / "bench-run.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
            sampler = RssSampler(proc.pid)
            sampler.start()
            stdout, _ = proc.communicate()
            sampler.stop.set()
        wall_s = time.perf_counter() - t
        if proc.returncode != 0:
            print(stdout, Path(log_path).read_text()[-3000:], sep="\n", file=sys.stderr)
            return proc.returncode
        print(stdout)
        from pipeline.configs import PipelineConfig

        cfg = PipelineConfig.for_profile(settings, args.profile)
        intervals = component_intervals(str(cfg.metadata_path))
        summaries = sorted((cfg.pipeline_root / "Trainer" / "model_run").glob("*/training_summary.json"))
        summary_path = summaries[-1] if summaries else None
        training = json.loads(summary_path.read_text()) if summary_path else {}
        steps = measured_steps(training, summary_path.parent if summary_path else None)
    finally:
        service.stop(settings)

    peak_total = max((kb for _, kb in sampler.samples), default=0)
    rows = []
    for node, _state, start, end in intervals:
        in_window = [kb for ts, kb in sampler.samples if start - 0.25 <= ts <= end + 0.25]
        rows.append(f"| {node} | {end - start:.1f} | {max(in_window, default=0) / 1024:.0f} |")
    accuracy = next((line.split(":", 1)[1].strip() for line in stdout.splitlines()
                     if line.startswith("test accuracy")), "n/a")
    tcfg = training.get("training", {}).get("search", {})
    budget = tcfg.get("max_iteration_steps", 0) * tcfg.get("max_iterations", 0)
    test_table = ("the 10,000-image standard test table" if args.profile == "full"
                  else "a 1,000-row slice of the test table")
    md = "\n".join([
        f"## Pipeline, `{args.profile}` profile (`bench/bench_pipeline.py`)",
        "",
        f"Load average (1/5/15 min) before / after the run: {load_before} / {load_average()} "
        "(2 cores: above 2 means other work shared the CPU and the times are inflated). "
        f"Data load before the run: {load_s:.1f} s. Pipeline wall time (`mlpipe run --no-cache`, "
        f"process start to summary): **{wall_s:.0f} s**; peak RSS of the whole run {peak_total / 1024:.0f} MiB.",
        f"Test accuracy ({test_table}): **{accuracy}**. "
        f"Training: {steps} steps measured (the model's global step; budget {budget} = "
        f"{tcfg.get('max_iterations', '?')} AdaNet iterations × {tcfg.get('max_iteration_steps', '?')} steps, "
        f"batch {tcfg.get('batch_size', '?')}), {training.get('train_seconds', '?')} s of training.",
        "",
        "| component | wall s | peak RSS MiB |",
        "|---|---|---|",
        *rows,
    ])  # fmt: skip
    write_section(f"pipeline-{args.profile}", md, quick=args.quick)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
