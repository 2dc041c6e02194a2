"""`mlpipe runs list` / `runs show` / `lineage`, start to exit, on a store with one evaluated run:
now (TFMA's files read without TFMA) beside the old path (the same command after importing TFMA, which
is what reading the evaluation with `tfma.load_metrics` cost). CPU seconds of the child are reported
beside wall time: they do not grow when other processes share the machine.

    .venv/bin/python bench/bench_speed_cli.py [--repeats N] [--quick]

--quick: one repetition, prints the table and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.unit.test_tfma_files import write_evaluation, write_store  # noqa: E402

COMMANDS = (["runs", "list"], ["runs", "show", "latest"], ["lineage"])
OLD_PRELUDE = "import tensorflow_model_analysis\n"  # what the old payload readers imported


def _run(argv: list[str], state_dir: Path, prelude: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one command in a fresh interpreter."""
    code = f"{prelude}from mlpipe.cli import main\nmain({argv + ['--state-dir', str(state_dir)]!r})"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repetition; print, do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats

    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        settings = make_settings(Path(tmp) / "state")
        evaluation = Path(tmp) / "evaluation"
        write_evaluation(evaluation)
        write_store(settings, evaluation)
        load = os.getloadavg()
        rows = ["| command | old: wall s (CPU s) | now: wall s (CPU s) | CPU ratio old/now |", "|---|---:|---:|---:|"]
        for cmd in COMMANDS:
            old, new = [], []
            for _ in range(repeats):  # interleaved, so both see the same load
                old.append(_run(cmd, settings.state_dir, OLD_PRELUDE))
                new.append(_run(cmd, settings.state_dir, ""))
            ow, oc = (statistics.median(x) for x in zip(*old, strict=True))
            nw, nc = (statistics.median(x) for x in zip(*new, strict=True))
            rows.append(f"| `mlpipe {' '.join(cmd)}` | {ow:.1f} ({oc:.1f}) | {nw:.1f} ({nc:.1f}) | {oc / nc:.1f}× |")
    text = ("### Report commands: start to exit (store with one evaluated run)\n\n" + "\n".join(rows)
            + f"\n\nMedian of {repeats}, old and new interleaved; load average at start "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}. `lineage` here exits with 'no default version' "
            "after opening the store and registry.")
    print(text)
    if not args.quick:
        write_section("speed-cli", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
