"""Console benchmark: server time per page with 50 registry versions and 100 pipeline runs in the store.

Builds a sample state (mlpipe.console.sample_store: a real ML Metadata SQLite store with N runs of the
project's DAG, a real registry with M versions), starts a real BigQuery emulator on free ports with a
slice of MNIST and a logged prediction history, and times each page through the console's WSGI app
in process (Flask's test client: the server's work only, no network or browser). The first request of a
page (cold: imports, caches empty) is reported apart from the p50/p95 of the repeats.

    .venv/bin/python bench/bench_console.py [--runs 100] [--versions 50] [--repeats 30] [--quick] [--no-write]

`--quick` (10 runs, 5 versions, 5 repeats) only shows that the script works and never writes
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from mlpipe.config import load_settings  # noqa: E402
from mlpipe.procutil import free_loopback_port  # noqa: E402

PREDICTION_REQUESTS = 400


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def log_predictions(settings, versions: tuple[str, ...]) -> None:
    """A prediction history through the serving app's own logger (batched inserts into BigQuery)."""
    import random

    from mlpipe.serving.prediction_log import PredictionLogger

    rng = random.Random(0)
    logger = PredictionLogger(settings)
    for i in range(PREDICTION_REQUESTS):
        version = versions[-1] if rng.random() < 0.8 else versions[0]
        n = rng.randint(1, 4)
        logger.log(settings.model_name, version, [rng.randrange(10) for _ in range(n)],
                   [rng.uniform(0.3, 1.0) for _ in range(n)], rng.uniform(2, 30), f"bench-{i}")
    logger.close(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=30, help="timed requests per page after the first")
    parser.add_argument("--quick", action="store_true", help="10 runs, 5 versions, 5 repeats; never writes")
    parser.add_argument("--no-write", action="store_true", help="print, do not rewrite BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.versions, args.repeats, args.no_write = 10, 5, 5, True

    from mlpipe.bigquery import service
    from mlpipe.bigquery.load import load_mnist_tables
    from mlpipe.console.app import create_app
    from mlpipe.console.sample_store import build_sample_state

    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        settings = load_settings(environ={}, state_dir=Path(tmp) / "state", bq_port=free_loopback_port(),
                                 bq_grpc_port=free_loopback_port())
        t0 = time.perf_counter()
        sample = build_sample_state(settings, runs=args.runs, versions=args.versions)
        build_s = time.perf_counter() - t0
        service.start(settings)
        try:
            load_mnist_tables(settings, limit=1000)
            log_predictions(settings, sample.versions)
            client = create_app(settings).test_client()
            run, other = sample.run_ids[-1], sample.run_ids[-2]
            last = sample.versions[-1]
            pages = ["/", "/runs", f"/runs/{run}", f"/runs/compare?a={run}&b={other}", "/models",
                     f"/models/{last}", f"/lineage/{last}", "/data", "/data/tables/train", f"/data/runs/{run}",
                     "/serving", "/try"]
            rows = []
            for page in pages:
                started = time.perf_counter()
                response = client.get(page)
                cold = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{page} answered {response.status_code}")
                times = []
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    client.get(page)
                    times.append((time.perf_counter() - started) * 1000)
                rows.append((page, cold, statistics.median(times), percentile(times, 95)))
                print(f"{page:<60} first {cold:8.1f} ms  p50 {rows[-1][2]:7.1f} ms  p95 {rows[-1][3]:7.1f} ms",
                      flush=True)
        finally:
            service.stop(settings)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    table = "\n".join(f"| `{p.replace(sample.run_ids[-1], 'RUN').replace(sample.run_ids[-2], 'RUN2')}` "
                      f"| {c:.0f} ms | {m:.1f} ms | {q:.1f} ms |" for p, c, m, q in rows)
    md = f"""## Console: server time per page

`bench/bench_console.py`: {args.runs} pipeline runs and {args.versions} registry versions in the store (the
console's sample state, built in {build_s:.0f} s), a real BigQuery emulator with 1,000 rows per table and
{PREDICTION_REQUESTS} logged prediction requests; each page through the console's WSGI app in process
(server time only), first request apart, then {args.repeats} repeats.

| page | first request | p50 | p95 |
|---|---:|---:|---:|
{table}

Load average at the end: {load} (other work on the machine inflates these figures). Finished runs are
read from ML Metadata once and kept; pages that query BigQuery pay for the emulator's round trips.
"""
    print(md)
    if not args.no_write:
        write_section("console", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
