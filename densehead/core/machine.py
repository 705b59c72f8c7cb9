"""What CPU this is: its model, core count and the vector extensions the runtimes use.

The speed of every stage depends on them (XNNPACK picks its kernels by them: int8 convolutions
are fast with VNNI, barely faster than float without), so the regressor choice reads them and
every benchmark prints them beside its figures.
"""
from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

# the extensions that matter here, in the order they are printed (names as Linux spells them)
EXTENSIONS = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
              "amx_int8", "neon", "asimddp")
CPUINFO = Path("/proc/cpuinfo")
# Set in the commands densehead.tools.avx2_numerics runs, to the XNNPACK kernels they use: the
# libraries compute as an AVX2-only CPU does, and this machine is described as one, with a note
AVX2_NUMERICS_ENV = "DENSEHEAD_AVX2_NUMERICS"
AVX2_ONLY = ("sse4_2", "avx", "fma", "avx2")


@dataclass(frozen=True)
class Machine:
    model: str                     # e.g. "AMD EPYC 7R13 Processor"
    cores: int                     # logical CPUs this process may use
    extensions: tuple[str, ...]    # those of EXTENSIONS the CPU has (or the libraries may use)
    restricted: str = ""           # the avx2_numerics kernels this process computes with, if any
    generation: str = ""           # x86 "family 25 model 1": a virtual machine's model name is
                                   # often only "AMD EPYC", which says nothing of Zen 1 or Zen 4

    @property
    def int8_dot_product(self) -> bool:
        """Whether the CPU has int8 dot-product instructions (VNNI, AMX, Arm's dot product):
        what makes an int8 convolution markedly faster than a float one."""
        return bool({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"} & set(self.extensions))

    def describe(self) -> str:
        """One line: model, cores and vector extensions."""
        extensions = " ".join(self.extensions) or "no vector extensions known"
        note = (f" (computing as an AVX2-only CPU, {self.restricted} kernels: "
                "densehead.tools.avx2_numerics)" if self.restricted else "")
        generation = f" ({self.generation})" if self.generation else ""
        return f"{self.model}{generation}, {self.cores} cores, {extensions}{note}"


@functools.cache
def this_machine() -> Machine:
    """The CPU this process runs on (read once)."""
    model, flags, generation = _from_cpuinfo() if CPUINFO.is_file() else (None, set(), "")
    if not flags and platform.machine().lower() in ("arm64", "aarch64"):
        flags = {"neon"}   # every 64-bit Arm CPU has it; /proc/cpuinfo calls it asimd
    restricted = os.environ.get(AVX2_NUMERICS_ENV, "")
    if restricted:
        flags &= set(AVX2_ONLY)
    return Machine(model=model or platform.processor() or platform.machine() or "unknown CPU",
                   cores=_cores(), extensions=tuple(e for e in EXTENSIONS if e in flags),
                   restricted=restricted, generation=generation)


def cpu_flags() -> set[str]:
    """The CPU's flags as Linux lists them in /proc/cpuinfo (empty where there is none)."""
    return _from_cpuinfo()[1] if CPUINFO.is_file() else set()


def _from_cpuinfo() -> tuple[str | None, set[str], str]:
    """The first CPU's model name, flags and x86 family and model numbers."""
    model, flags, numbers = None, set(), {}
    for line in CPUINFO.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and model is None:
            model = " ".join(value.split())
        elif key in ("cpu family", "model") and key not in numbers:
            numbers[key] = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
            if "asimd" in flags:
                flags.add("neon")
    generation = (f"family {numbers['cpu family']} model {numbers['model']}"
                  if len(numbers) == 2 else "")
    return model, flags, generation


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1
