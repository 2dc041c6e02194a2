"""`make run` end to end from a fresh clone: wall time, per-component times, test accuracy.

    .venv/bin/python bench/bench_make_run.py            # clone HEAD into a temp dir, run `make run` there
    .venv/bin/python bench/bench_make_run.py --quick    # the same with `--profile quick`, to BENCHMARKS.quick.md

The clone gets its own `.venv`, `.venv-bq` and `.mlpipe` (uv's package cache stays warm), so this is
"make run on a machine that has PyPI's wheels cached", not a cold download. Its BigQuery emulator
listens on free ports (MLPIPE_BQ_PORT / MLPIPE_BQ_GRPC_PORT), so a running one is never disturbed.
Every figure is measured by this run; there is no way to record a run made elsewhere.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import load_average, write_section  # noqa: E402
from mlpipe.procutil import free_loopback_port  # noqa: E402


def parse_run_output(text: str) -> dict:
    """The summary `mlpipe run` prints, and the serving check's tally."""
    text = text.replace("\r", "\n")
    components = re.findall(r"^(\w+)\s+(complete|cached|failed)\s+([\d.]+)$", text, re.M)
    accuracy = re.search(r"^test accuracy \(new model\) : (.+)$", text, re.M)
    blessed = re.search(r"^blessed\s+: (\w+)", text, re.M)
    served = re.search(r"^(\d+)/(\d+) correct over HTTP$", text, re.M)
    after_setup = re.search(r"^make run: done in (\d+) s", text, re.M)
    return {
        "components": [(name, state, float(s)) for name, state, s in components],
        "accuracy": accuracy.group(1) if accuracy else "n/a",
        "blessed": blessed.group(1) if blessed else "n/a",
        "served": f"{served.group(1)}/{served.group(2)}" if served else "n/a",
        "after_setup_s": int(after_setup.group(1)) if after_setup else None,
    }


def clone_env() -> dict[str, str]:
    """This environment without MLPIPE_* settings, and an emulator on free ports for the clone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPE_")}
    return env | {"MLPIPE_BQ_PORT": str(free_loopback_port()), "MLPIPE_BQ_GRPC_PORT": str(free_loopback_port())}


def run_fresh_clone(make_args: list[str]) -> tuple[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-make-run-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = clone_env()
        started = time.perf_counter()
        proc = subprocess.run(["make", "run", *make_args], cwd=clone, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        subprocess.run([str(clone / ".venv/bin/mlpipe"), "bq", "stop", "--state-dir", str(clone / ".mlpipe")],
                       env=env, capture_output=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise SystemExit(proc.returncode)
        return proc.stdout + proc.stderr, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="`make run ARGS='--profile quick'`, written to BENCHMARKS.quick.md")
    args = parser.parse_args(argv)
    load_before = load_average()
    text, seconds = run_fresh_clone(["ARGS=--profile quick"] if args.quick else [])
    run = parse_run_output(text)
    profile = "quick" if args.quick else "full"
    rows = [f"| {name} | {state} | {s:.1f} |" for name, state, s in run["components"]]
    md = "\n".join([
        "## `make run` from a fresh clone (`bench/bench_make_run.py`)",
        "",
        f"Wall time of `make run` (setup with a warm uv cache, emulator start, load of all 70,000 rows, "
        f"{profile}-profile pipeline, registry push, serving check over HTTP): **{seconds / 60:.1f} min** "
        f"({seconds:.0f} s; {run['after_setup_s']} s after setup). "
        f"Test accuracy ({'a 1,000-row slice of' if args.quick else 'the 10,000-image standard'} MNIST test "
        f"table): **{run['accuracy']}** (blessed: {run['blessed']}); serving check: {run['served']} test "
        f"images right over HTTP. Load average (1/5/15 min) before the run: {load_before}.",
        "",
        "| component | state | seconds |",
        "|---|---|---|",
        *rows,
    ])  # fmt: skip
    write_section("make-run", md, quick=args.quick)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
