"""Which floating-point policy the Trainer uses: bf16 only where the CPU has bf16 matrix units.

Measured (STACK.md): Keras `mixed_bfloat16` trains the CNN 1.9× faster at equal accuracy on a Xeon
with AMX; on CPUs without AMX (e.g. AMD EPYC, even with AVX512-BF16) bf16 is emulated or vector-only
and buys nothing, so the policy is float32 there — unchanged behaviour. Detected at run time from the
kernel's CPU flags; no TensorFlow here, so the decision is testable without it.

`MLPIPE_TRAIN_PRECISION` overrides the detection: `auto` (default), `float32` or `mixed_bfloat16`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

FLOAT32 = "float32"
MIXED_BF16 = "mixed_bfloat16"
POLICIES = (FLOAT32, MIXED_BF16)
ENV_VAR = "MLPIPE_TRAIN_PRECISION"
# Both: AMX tiles and their bf16 multiply (Sapphire Rapids and later). Neither `avx512_bf16` nor
# `amx_int8` alone is enough.
AMX_BF16_FLAGS = frozenset({"amx_bf16", "amx_tile"})
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The flags every processor listed in `/proc/cpuinfo` text has (x86 `flags`, ARM `Features`)."""
    per_cpu = [frozenset(line.split(":", 1)[1].split()) for line in cpuinfo.splitlines()
               if line.split(":", 1)[0].strip() in ("flags", "Features") and ":" in line]
    return frozenset.intersection(*per_cpu) if per_cpu else frozenset()


def has_amx_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU has AMX bf16 matrix units; `cpuinfo` defaults to this machine's."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            return False
    return AMX_BF16_FLAGS <= cpu_flags(cpuinfo)


def training_policy(environ: Mapping[str, str] | None = None, cpuinfo: str | None = None) -> str:
    """The Keras dtype policy to train with: `mixed_bfloat16` on AMX, else `float32`."""
    choice = (os.environ if environ is None else environ).get(ENV_VAR, "auto").strip() or "auto"
    if choice == "auto":
        return MIXED_BF16 if has_amx_bf16(cpuinfo) else FLOAT32
    if choice not in POLICIES:
        raise ValueError(f"{ENV_VAR} must be auto, {FLOAT32} or {MIXED_BF16}, not {choice!r}")
    return choice
