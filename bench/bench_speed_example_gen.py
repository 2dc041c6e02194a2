"""ExampleGen's Arrow → serialized tf.Example conversion: the old per-row Python loop beside tfx_bsl's
encoder (what the executor uses now), on real MNIST rows shaped as the Storage Read API returns them.
Rows per CPU-second (`time.process_time`, this process only) and the ratio, interleaved old/new, so the
figure holds on a loaded machine; both outputs are checked equal before timing.

    .venv/bin/python bench/bench_speed_example_gen.py [--rows N] [--repeats N] [--quick]

--quick: 2,000 rows, one repetition, prints the table and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from bench.report import write_section  # noqa: E402
from mlpipe.data.mnist_source import load_mnist  # noqa: E402
from pipeline.components.local_bigquery_example_gen import arrow_to_serialized_examples  # noqa: E402
from tests.unit.test_example_gen_encoding import reference_examples  # noqa: E402


def mnist_table(rows: int) -> pa.Table:
    """`SELECT key, label, image` of the train table, as Arrow (list child named `l`)."""
    train = load_mnist()["train"]
    images = train.images[:rows].astype(np.int64)
    offsets = np.arange(0, images.size + 1, images.shape[1], dtype=np.int32)
    image = pa.ListArray.from_arrays(pa.array(offsets), pa.array(images.ravel())).cast(
        pa.list_(pa.field("l", pa.int64())))
    return pa.table({"key": pa.array(np.arange(len(images), dtype=np.int64)),
                     "label": pa.array(train.labels[:rows]), "image": image})


def _old(table: pa.Table) -> list[bytes]:
    return [e.SerializeToString() for e in reference_examples(table)]  # as the base executor serialized


def _new(table: pa.Table) -> list[bytes]:
    return list(arrow_to_serialized_examples(table))


def _cpu_seconds(fn, table: pa.Table) -> tuple[float, float]:
    c, t = time.process_time(), time.perf_counter()
    fn(table)
    return time.process_time() - c, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000, help="MNIST train rows to convert (default all 50k)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 rows, one repetition; print, do not write")
    args = parser.parse_args(argv)
    rows, repeats = (2_000, 1) if args.quick else (args.rows, args.repeats)

    table = mnist_table(rows)
    import tensorflow as tf

    check = min(rows, 500)
    assert [tf.train.Example.FromString(b) for b in _new(table.slice(0, check))] == list(
        reference_examples(table.slice(0, check)))
    load = os.getloadavg()
    old, new = [], []
    for _ in range(repeats):
        old.append(_cpu_seconds(_old, table))
        new.append(_cpu_seconds(_new, table))
    oc, ow = (statistics.median(x) for x in zip(*old, strict=True))
    nc, nw = (statistics.median(x) for x in zip(*new, strict=True))
    text = (
        f"### ExampleGen conversion: Arrow → serialized tf.Example ({rows:,} MNIST rows)\n\n"
        "| path | CPU s | rows per CPU-second | wall s |\n|---|---:|---:|---:|\n"
        f"| old: per-row Python loop of protobuf builders | {oc:.2f} | {rows / oc:,.0f} | {ow:.2f} |\n"
        f"| now: tfx_bsl `RecordBatchToExamplesEncoder` | {nc:.2f} | {rows / nc:,.0f} | {nw:.2f} |\n\n"
        f"Speed-up (CPU): **{oc / nc:.1f}×**. Median of {repeats}, old and new interleaved in one process; "
        f"load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}."
    )
    print(text)
    if not args.quick:
        write_section("speed-example-gen", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
