"""Serving's request decode + validate (`mlpipe.serving.instances.parse_body`), side by side in one
process: the standard road (`json`, then instance by instance) vs the fast road (orjson, one numpy
conversion), on bodies of real MNIST test images — 1 and 100 instances of `{"image": [784 ints]}`.
CPU microseconds per request (`time.process_time`), which load on the machine does not inflate much.

    .venv/bin/python bench/bench_speed_serving_parse.py [--seconds S] [--quick]

--quick: a fifth of the time; prints the table and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from mlpipe.data.mnist_source import load_mnist  # noqa: E402
from mlpipe.serving import instances  # noqa: E402
from tests.serving.test_fast_instances import outcome, standard_parse_body  # noqa: E402


def cpu_us_per_call(fn, body: bytes, seconds: float) -> float:
    calls, start = 0, time.process_time()
    while True:
        fn(body)
        calls += 1
        spent = time.process_time() - start
        if spent >= seconds:
            return spent / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per measurement")
    parser.add_argument("--quick", action="store_true", help="0.4 s per measurement; print, do not write")
    args = parser.parse_args(argv)
    seconds = 0.4 if args.quick else args.seconds
    images = load_mnist()["test"].images
    load = os.getloadavg()
    rows = ["| instances per request | standard: CPU µs | fast: CPU µs | speed-up |", "|---:|---:|---:|---:|"]
    for n in (1, 100):
        body = json.dumps({"instances": [{"image": img.tolist()} for img in images[:n]]}).encode()
        assert outcome(instances.parse_body, body) == outcome(standard_parse_body, body)
        old, new = [], []
        for _ in range(3):  # interleaved
            old.append(cpu_us_per_call(standard_parse_body, body, seconds / 3))
            new.append(cpu_us_per_call(instances.parse_body, body, seconds / 3))
        o, f = sorted(old)[1], sorted(new)[1]
        rows.append(f"| {n} | {o:,.0f} | {f:,.0f} | {o / f:.1f}× |")
    text = ("### Serving: request decode + validate (parse_body)\n\n" + "\n".join(rows)
            + f"\n\nMedian of 3 interleaved rounds; orjson {'present' if instances.orjson else 'ABSENT'}; "
            f"load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}.")
    print(text)
    if not args.quick:
        write_section("speed-serving-parse", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
