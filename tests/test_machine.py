"""What the benchmarks and the regressor choice learn about the CPU: read from the machine itself,
checked against what Linux says here (these tests hold on any x86-64 or Arm machine)."""
from __future__ import annotations

import platform
from pathlib import Path

import pytest

from densehead.core.machine import AVX2_ONLY, EXTENSIONS, this_machine


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads Linux's /proc/cpuinfo")
def test_the_machine_is_what_linux_says():
    info = Path("/proc/cpuinfo").read_text()
    flags = set(next(line for line in info.splitlines()
                     if line.lower().startswith(("flags", "features"))).split(":", 1)[1].split())
    machine = this_machine()
    if machine.restricted:   # under densehead.tools.avx2_numerics: described as the AVX2 CPU
        flags &= set(AVX2_ONLY)
    assert machine.model and machine.model in " ".join(info.split())
    assert 1 <= machine.cores
    assert {e for e in machine.extensions if e != "neon"} == {e for e in EXTENSIONS if e in flags}
    if platform.machine() == "x86_64":   # every x86-64 CPU a wheel of ours runs on
        assert "sse4_2" in machine.extensions or "avx" not in flags
    assert machine.int8_dot_product == bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8",
                                                      "asimddp"})
    line = machine.describe()
    assert machine.model in line and f"{machine.cores} cores" in line
    numbers = {key.strip(): value.strip() for key, _, value in
               (row.partition(":") for row in info.splitlines()) if key.strip() in
               ("cpu family", "model")}
    if len(numbers) == 2:   # x86: which generation, where the model name does not say
        assert f"(family {numbers['cpu family']} model {numbers['model']})" in line
