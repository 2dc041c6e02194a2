"""bf16 training only on CPUs with AMX bf16 units, detected from /proc/cpuinfo; float32 elsewhere."""

from __future__ import annotations

import pytest

from models import precision

COMMON = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr sse sse2 avx avx2 fma avx512f avx512bw avx512_vnni"
AMD_EPYC = f"{COMMON} avx512_bf16 sha_ni"  # Zen 4: AVX512-BF16, no AMX — this kind of machine
XEON_SPR = f"{COMMON} avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8"  # Sapphire Rapids


def cpuinfo(*flag_lines: str, key: str = "flags") -> str:
    blocks = [f"processor\t: {i}\nvendor_id\t: X\nmodel name\t: CPU\n{key}\t\t: {flags}\n"
              for i, flags in enumerate(flag_lines)]
    return "\n".join(blocks)


@pytest.mark.parametrize("text,expected", [
    (cpuinfo(XEON_SPR, XEON_SPR), True),
    (cpuinfo(AMD_EPYC, AMD_EPYC), False),
    (cpuinfo(f"{COMMON} amx_tile amx_int8"), False),  # tiles without the bf16 multiply
    (cpuinfo(f"{COMMON} amx_bf16"), False),  # (never seen alone; both are required)
    (cpuinfo(XEON_SPR, AMD_EPYC), False),  # every processor must have it
    (cpuinfo("fp asimd bf16 i8mm", key="Features"), False),  # ARM: bf16 but no AMX
    ("", False),
])
def test_amx_bf16_detection(text, expected):
    assert precision.has_amx_bf16(text) is expected


def test_policy_follows_the_cpu_unless_overridden():
    assert precision.training_policy({}, cpuinfo(XEON_SPR)) == precision.MIXED_BF16
    assert precision.training_policy({}, cpuinfo(AMD_EPYC)) == precision.FLOAT32
    assert precision.training_policy({precision.ENV_VAR: "auto"}, cpuinfo(AMD_EPYC)) == precision.FLOAT32
    assert precision.training_policy({precision.ENV_VAR: "float32"}, cpuinfo(XEON_SPR)) == precision.FLOAT32
    assert precision.training_policy({precision.ENV_VAR: "mixed_bfloat16"}, cpuinfo(AMD_EPYC)) == precision.MIXED_BF16
    with pytest.raises(ValueError, match="MLPIPE_TRAIN_PRECISION"):
        precision.training_policy({precision.ENV_VAR: "fp16"}, cpuinfo(XEON_SPR))


def test_this_machine_gets_the_policy_its_flags_call_for():
    """On this repository's AMD machines (AVX512-BF16, no AMX) that is float32."""
    text = precision.CPUINFO.read_text()
    flags = precision.cpu_flags(text)
    assert flags, "no CPU flags read from /proc/cpuinfo"
    expected = precision.MIXED_BF16 if {"amx_bf16", "amx_tile"} <= flags else precision.FLOAT32
    assert precision.training_policy({}) == expected
