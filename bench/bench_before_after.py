"""Issue 17's table, before and after, side by side on this machine: the commit the issue was measured
on (`--before`, default BEFORE) and this checkout's HEAD, each in its own fresh clone, one after the
other, with the load average beside each.

For each commit:
1. `make run` (setup with a warm uv cache, emulator on free ports, all 70,000 rows, full profile,
   push, serving check): wall time, per-component seconds, test accuracy on the standard 10k;
2. `mlpipe run --profile quick --no-cache` in the same state dir: process start to exit;
3. `mlpipe lineage` and `mlpipe runs list` on that store: start to exit (median of 3);
4. that clone's `mlpipe serve` on its registry's v1: cold start (process start → first prediction),
   p50 of one-instance requests over HTTP and images/s of 100-image requests, each interleaved with
   the same model called in this process (the ratios of `bench_serving.py`).

    .venv/bin/python bench/bench_before_after.py                 # writes BENCHMARKS.md (before-after)
    .venv/bin/python bench/bench_before_after.py --quick         # quick profile; BENCHMARKS.quick.md
"""

from __future__ import annotations

import argparse
import http.client
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_make_run import clone_env, parse_run_output  # noqa: E402
from bench.bench_serving import _start_server, measure  # noqa: E402
from bench.report import load_average, write_section  # noqa: E402
from mlpipe.procutil import free_loopback_port  # noqa: E402

# The last commit of 2026-11-26: the state issue 17's "now" column was measured on.
BEFORE = "e112a98"
OTHER_COMPONENTS = ("LocalBigQueryExampleGen", "StatisticsGen", "Transform", "Evaluator", "Pusher")


@dataclass
class Side:
    label: str
    commit: str
    make_run_s: float = 0.0
    components: dict[str, float] = field(default_factory=dict)
    accuracy: str = "n/a"
    quick_run_s: float = 0.0
    lineage_s: float = 0.0
    runs_list_s: float = 0.0
    serving: dict[str, float] = field(default_factory=dict)
    cold_start_s: float = 0.0
    load: list[str] = field(default_factory=list)


def _sh(cmd: list[str], cwd: Path, env: dict[str, str], check: bool = True) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if check and proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd} ({proc.returncode})")
    return seconds, proc.stdout + proc.stderr


def measure_commit(side: Side, work: Path, quick: bool, requests: int, batches: int) -> None:
    import numpy as np
    import tensorflow as tf

    from mlpipe.data.mnist_source import load_mnist

    clone = work / side.label
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", side.commit], cwd=clone, check=True)
    side.commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, check=True,
                                 capture_output=True, text=True).stdout.strip()
    env = clone_env()
    mlpipe = str(clone / ".venv/bin/mlpipe")
    state = clone / ".mlpipe"

    side.load.append(load_average())
    side.make_run_s, out = _sh(["make", "run", *(["ARGS=--profile quick"] if quick else [])], clone, env)
    run = parse_run_output(out)
    side.accuracy = run["accuracy"]
    side.components = {name: s for name, _, s in run["components"]}

    _sh([mlpipe, "bq", "start"], clone, env)  # `make run` stopped the emulator it started
    try:
        side.load.append(load_average())
        side.quick_run_s, _ = _sh([mlpipe, "run", "--profile", "quick", "--no-cache"], clone, env)
        side.lineage_s = statistics.median(_sh([mlpipe, "lineage"], clone, env, check=False)[0] for _ in range(3))
        side.runs_list_s = statistics.median(_sh([mlpipe, "runs", "list"], clone, env)[0] for _ in range(3))
    finally:
        _sh([mlpipe, "bq", "stop"], clone, env, check=False)

    (model_dir,) = sorted(state.glob("registry/*/versions/v1/saved_model"))
    fn = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    images = load_mnist()["test"].images

    def in_process(batch: np.ndarray) -> None:
        fn(image=tf.constant(batch, tf.float32))

    side.load.append(load_average())
    port = free_loopback_port()
    proc, side.cold_start_s = _start_server(state, port, python=str(clone / ".venv/bin/python"), cwd=clone, env=env)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        side.serving = measure(conn, in_process, images, requests, batches)
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    side.load.append(load_average())


def render(before: Side, after: Side, quick: bool, requests: int, batches: int) -> str:
    def ratio(a: float, b: float) -> str:
        return f"{b / a:.2f}" if a else "n/a"

    def row(name: str, b: float, a: float, unit: str = "s", fmt: str = "{:.0f}") -> str:
        return f"| {name} | {fmt.format(b)} {unit} | {fmt.format(a)} {unit} | {ratio(b, a)} |"

    def others(s: Side) -> float:
        return sum(s.components.get(c, 0.0) for c in OTHER_COMPONENTS)

    sb, sa = before.serving, after.serving
    profile = "quick" if quick else "full"
    lines = [
        "## Before / after: issue 17's table side by side (`bench/bench_before_after.py`)",
        "",
        f"Each commit in its own fresh clone on this machine, one after the other: before = `{before.commit}` "
        f"(the state issue 17 was measured on), after = `{after.commit}` (HEAD). `make run` on the "
        f"{profile} profile, then in the same state dir `mlpipe run --profile quick --no-cache`, "
        "`mlpipe lineage` / `mlpipe runs list` (median of 3), and that clone's `mlpipe serve` on its v1, "
        f"interleaved with the same model in process ({requests} one-instance requests, {batches} "
        "100-image requests). after/before < 1 is faster (for accuracy and throughput ratios, higher is better).",
        "",
        "| step | before | after | after/before |",
        "|---|---:|---:|---:|",
        row("`make run` end to end (setup included)", before.make_run_s, after.make_run_s),
        row("Trainer", before.components.get("Trainer", 0.0), after.components.get("Trainer", 0.0)),
        row("all other components (" + ", ".join(OTHER_COMPONENTS) + ")", others(before), others(after)),
        f"| test accuracy of the pushed model (standard 10k) | {before.accuracy} | {after.accuracy} | |",
        row("`mlpipe run --profile quick --no-cache`, process start to exit", before.quick_run_s, after.quick_run_s),
        row("serving p50, 1 instance, HTTP", sb["p50"], sa["p50"], "ms", "{:.2f}"),
        row("serving p50, 1 instance, in process (same model)", sb["p50_in"], sa["p50_in"], "ms", "{:.2f}"),
        f"| serving p50 HTTP / in process | {sb['p50'] / sb['p50_in']:.2f}× | {sa['p50'] / sa['p50_in']:.2f}× | |",
        f"| 100-image requests: HTTP / in process images/s | {sb['http_ips']:,.0f} / {sb['inproc_ips']:,.0f} = "
        f"{sb['http_ips'] / sb['inproc_ips']:.2f} | {sa['http_ips']:,.0f} / {sa['inproc_ips']:,.0f} = "
        f"{sa['http_ips'] / sa['inproc_ips']:.2f} | |",
        row("serving cold start → first prediction", before.cold_start_s, after.cold_start_s, "s", "{:.1f}"),
        row("`mlpipe lineage`", before.lineage_s, after.lineage_s, "s", "{:.1f}"),
        row("`mlpipe runs list`", before.runs_list_s, after.runs_list_s, "s", "{:.1f}"),
        "",
        "Per component (seconds, from each `make run` summary):",
        "",
        "| component | before | after |",
        "|---|---:|---:|",
        *(f"| {c} | {before.components.get(c, 0.0):.1f} | {after.components.get(c, 0.0):.1f} |"
          for c in ("LocalBigQueryExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator", "Pusher")),
        "",
        "Load average (1/5/15 min) at the start of make run / quick run / serving / end: "
        f"before {' → '.join(before.load)}; after {' → '.join(after.load)}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BEFORE, help=f"the 'before' commit (default {BEFORE})")
    parser.add_argument("--after", default="HEAD", help="the 'after' commit (default HEAD)")
    parser.add_argument("--requests", type=int, default=300, help="one-instance requests each way (default 300)")
    parser.add_argument("--batches", type=int, default=20, help="100-image requests each way (default 20)")
    parser.add_argument("--quick", action="store_true",
                        help="quick profile for `make run`, 50 requests / 5 batches; to BENCHMARKS.quick.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.batches = 50, 5
    before, after = Side("before", args.before), Side("after", args.after)
    with tempfile.TemporaryDirectory(prefix="bench-before-after-") as tmp:
        for side in (before, after):
            print(f"== {side.label}: {side.commit}", flush=True)
            measure_commit(side, Path(tmp), args.quick, args.requests, args.batches)
    md = render(before, after, args.quick, args.requests, args.batches)
    write_section("before-after", md, quick=args.quick)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
