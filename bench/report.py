"""Write one benchmark's section of BENCHMARKS.md, between its own markers, with machine, date and
load average.

Every figure in BENCHMARKS.md comes from a `bench/` script run by `make bench` (`scripts/bench.sh`);
nothing is typed in. `--quick` runs (`QUICK=1 make bench`) write to BENCHMARKS.quick.md instead (not
committed), so a smoke run never replaces measured figures.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
QUICK_MD = REPO / "BENCHMARKS.quick.md"
HEADER = (
    "# Benchmarks\n\nFigures written by the scripts in `bench/` (`make bench`, one script at a time); "
    "each section says when and where, and the load average (1/5/15 min) when it was written: on 2 "
    "cores, a 1-minute load above 2 means other work shared the CPU and the times are inflated.\n"
)


# CPU features that change how fast TensorFlow trains here by a large factor (oneDNN picks AVX-512 and
# bf16/AMX kernels when present): two "AMD EPYC" machines of different generations are not comparable.
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def machine() -> str:
    cpu, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown CPU":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    features = "+".join(f for f in VECTOR_FLAGS if f in flags) or "no AVX2"
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}; {features}), {mem_gb:.0f} GiB RAM, {platform.system()} {platform.release()}"


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, e.g. "0.42 / 0.61 / 0.80"."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def stamp() -> str:
    return (f"_Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}; "
            f"load average (1/5/15 min) {load_average()}._")


def output_path(quick: bool) -> Path:
    return QUICK_MD if quick else BENCHMARKS_MD


def write_section(name: str, markdown: str, path: Path = BENCHMARKS_MD, quick: bool = False) -> None:
    """Replace (or append) the block between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`.
    With `quick`, the block goes to BENCHMARKS.quick.md, never to BENCHMARKS.md."""
    if quick:
        path = QUICK_MD
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    if "_Measured " not in markdown:
        markdown = f"{markdown.rstrip()}\n\n{stamp()}"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = path.read_text() if path.exists() else HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text.rstrip()}\n\n{block}\n"
    path.write_text(text)
