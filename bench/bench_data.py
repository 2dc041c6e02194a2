"""Data benchmarks: load all 70k MNIST rows into BigQuery, read the train table back, warm setup.

Runs its own emulator (temporary state dir, free ports) so it never touches the user's data.
    .venv/bin/python bench/bench_data.py [--repeats N] [--quick]
--quick: one repetition on a 5,000-row slice per table, written to BENCHMARKS.quick.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from mlpipe.bigquery import service  # noqa: E402
from mlpipe.bigquery.load import load_mnist_tables  # noqa: E402
from mlpipe.bigquery.read import read_table_numpy  # noqa: E402
from mlpipe.config import load_settings  # noqa: E402
from mlpipe.data.mnist_source import load_mnist  # noqa: E402
from mlpipe.procutil import free_loopback_port  # noqa: E402

QUICK_ROWS = 5_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each measurement")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repetition, 5,000 rows per table, written to BENCHMARKS.quick.md")
    args = parser.parse_args(argv)
    limit = QUICK_ROWS if args.quick else None
    repeats = 1 if args.quick else args.repeats

    load_mnist()  # decode the pickle once, outside the timings
    setup_s = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(["bash", str(ROOT / "scripts/setup.sh")], check=True, capture_output=True)
        setup_s.append(time.perf_counter() - t)

    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        settings = load_settings(environ={}, state_dir=Path(tmp),
            bq_port=free_loopback_port(), bq_grpc_port=free_loopback_port()
        )
        t = time.perf_counter()
        service.start(settings)
        start_s = time.perf_counter() - t
        try:
            load_s, read_s = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                results = load_mnist_tables(settings, limit=limit)
                load_s.append(time.perf_counter() - t)
                loaded = sum(r.rows for r in results)
                assert loaded == (70_000 if limit is None else 3 * limit), loaded
                t = time.perf_counter()
                _, labels, images = read_table_numpy(settings, "train")
                read_s.append(time.perf_counter() - t)
                assert images.shape == (50_000 if limit is None else limit, 784)
                train_rows = images.shape[0]
        finally:
            service.stop(settings)

    def fmt(xs: list[float]) -> str:
        return f"{statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"

    md = "\n".join([
        "## Data: BigQuery load and read (`bench/bench_data.py`)",
        "",
        "| measurement | median |",
        "|---|---|",
        f"| load {loaded:,} rows (3 Parquet load jobs, WRITE_TRUNCATE, counts verified) | {fmt(load_s)} |",
        f"| read `mnist.train` ({train_rows:,} rows) back to numpy via the Storage Read API | {fmt(read_s)} |",
        f"| `make setup` on a ready machine (warm) | {fmt(setup_s)} |",
        f"| emulator start → healthy | {start_s:.2f} s |",
    ])  # fmt: skip
    write_section("data", md, quick=args.quick)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
