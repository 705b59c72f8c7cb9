"""Run a command computing as an AVX2-only CPU would (no AVX-512, no VNNI: Haswell to Skylake
client, Zen 1 to 3) on a CPU that has more, to check from an AVX-512 machine that tests and
their tolerances hold on the CPUs people have. For development; the product never imports it.

Each library picks its kernels once, from what the CPU offers:
- CPUID itself answers as an AVX2-only CPU in every Python process, where Linux offers CPUID
  faulting (`cpuid_fault` in /proc/cpuinfo) and a C compiler is at hand: cpuid_mask.c, compiled
  here and preloaded. This is what restricts onnxruntime, whose library has no switch and no
  symbols; without it onnxruntime keeps its own kernels, and the command says so.
- XNNPACK, inside ai-edge-litert: its hardware config is cleared of every instruction set past
  AVX2 before any interpreter exists (and for `zen1` its micro-architecture set to Zen, whose
  kernels XNNPACK picks apart). The config's layout and flag order were read off one build's
  machine code, so only that ai-edge-litert version is accepted.
- where CPUID cannot be masked: numpy (NPY_DISABLE_CPU_FEATURES), OpenCV (OPENCV_CPU_DISABLE),
  OpenBLAS (OPENBLAS_CORETYPE), told through their environment variables.
Times measured under this are those kernels on this core, not an AVX2 CPU's: the cache sizes and
FMA widths stay this CPU's.

usage: python -m densehead.tools.avx2_numerics [--kernels avx2|zen1] COMMAND [ARG ...]
Every Python process the command starts computes so too (a sitecustomize on PYTHONPATH), and
describes its machine as an AVX2-only CPU (densehead.core.machine): benchmarks say so beside
their figures, and the regressor choice takes the float graph as it would there.
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

LITERT_VERSION = "2.3.0"
# this build's enum xnn_arch_flags, bit 0 first
XNNPACK_FLAGS = ("sse2", "sse3", "ssse3", "sse4_1", "avx", "f16c", "fma3", "avx2", "avx512skx",
                 "avx512f", "avx256skx", "avx512vbmi", "avx512fp16", "avx512bf16", "avxvnni",
                 "avxvnniint8", "avx512vnni", "avx512vnnigfni", "avx256vnni", "avx256vnnigfni",
                 "avx512amx")
AVX2_FLAGS = XNNPACK_FLAGS[:XNNPACK_FLAGS.index("avx2") + 1]
XNNPACK_UARCH = {"avx2": None, "zen1": 2}   # None: left as detected; 2 is xnn_uarch_zen
LIBRARY_ENV = {
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENCV_CPU_DISABLE": "AVX512-SKX,AVX512-CLX,AVX_VNNI",
    "OPENBLAS_CORETYPE": "Haswell",
}
_LIBRARY = "libpywrap_litert_common.so"
CPUID_MASK_SOURCE = Path(__file__).with_name("cpuid_mask.c")


def elf_symbol(path: Path, name: str) -> int:
    """The value (offset from the load base) of a symbol in an ELF64 file's static symbol
    table, which the dynamic one does not list for XNNPACK's functions."""
    data = path.read_bytes()
    if data[:5] != b"\x7fELF\x02":
        raise ValueError(f"{path} is not a 64-bit ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    wanted = name.encode()
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != 2:   # SHT_SYMTAB
            continue
        strings = sections[link][4]
        for at in range(offset, offset + size, entsize):
            name_at, _, _, _, value, _ = struct.unpack_from("<IBBHQQ", data, at)
            end = data.index(b"\0", strings + name_at)
            if data[strings + name_at:end] == wanted:
                return value
    raise KeyError(f"{name} is not in {path}'s symbol table")


def mapped_library(file_name: str) -> tuple[Path, int]:
    """The shared library named `file_name` as this process has it mapped, and its load base
    (where its first segment, file offset 0, sits)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[5].endswith(file_name) and int(parts[2], 16) == 0:
            return Path(parts[5]), int(parts[0].split("-")[0], 16)
    raise RuntimeError(f"{file_name} is not mapped in this process")


def xnnpack_flags() -> tuple[int, list[str]]:
    """XNNPACK's micro-architecture code and the instruction sets it will pick kernels for."""
    config = _hardware_config()
    bits = ctypes.c_uint64.from_address(config + 8).value
    return (ctypes.c_uint32.from_address(config).value,
            [n for i, n in enumerate(XNNPACK_FLAGS) if bits >> i & 1])


def restrict_xnnpack(profile: str) -> None:
    """Make XNNPACK pick the kernels of an AVX2-only CPU (`avx2`) or of a Zen 1 (`zen1`). Must
    run before the first interpreter of the process is made."""
    config = _hardware_config()
    flags = ctypes.c_uint64.from_address(config + 8)
    flags.value &= sum(1 << XNNPACK_FLAGS.index(n) for n in AVX2_FLAGS)
    if XNNPACK_UARCH[profile] is not None:
        ctypes.c_uint32.from_address(config).value = XNNPACK_UARCH[profile]


def _hardware_config() -> int:
    """The address of XNNPACK's hardware config {uint32 uarch; uint64 arch flags at offset 8;
    cache sizes}, initialised (its init function returns it)."""
    version = importlib.metadata.version("ai-edge-litert")
    if version != LITERT_VERSION:
        raise RuntimeError(f"ai-edge-litert {version}: only {LITERT_VERSION}'s XNNPACK layout "
                           "is known to this tool")
    import ai_edge_litert.interpreter  # noqa: F401  (maps the library)

    path, base = mapped_library(_LIBRARY)
    init = ctypes.CFUNCTYPE(ctypes.c_void_p)(base + elf_symbol(path, "xnn_init_hardware_config"))
    return int(init())


def build_cpuid_mask(into: Path) -> tuple[Path | None, str]:
    """cpuid_mask.c compiled into `into`, or None and why it cannot work here."""
    from ..core.machine import cpu_flags  # here: see environment()

    if platform.machine() != "x86_64" or not sys.platform.startswith("linux"):
        return None, "CPUID masking needs Linux on x86-64"
    if "cpuid_fault" not in cpu_flags():
        return None, "this CPU (or its hypervisor) offers no CPUID faulting"
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None, "no C compiler to build the CPUID mask"
    library = into / "libdensehead_cpuid_mask.so"
    built = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library),
                            str(CPUID_MASK_SOURCE), "-ldl"], capture_output=True, text=True)
    if built.returncode != 0:
        return None, f"the CPUID mask did not compile: {built.stderr.strip()[:300]}"
    return library, ""


def cpuid_masked() -> bool:
    """Whether CPUID answers masked in this process (cpuid_mask.c is preloaded and active)."""
    try:
        return ctypes.c_int.in_dll(ctypes.CDLL(None), "densehead_cpuid_masked").value == 1
    except ValueError:   # the symbol is not there: not preloaded
        return False


def environment(profile: str, site_dir: Path) -> dict[str, str]:
    """The environment for a command computing as `profile`, with a sitecustomize in `site_dir`
    that restricts XNNPACK in every Python process started with it, and the CPUID mask built
    there and preloaded where it can be (else a line on stderr says why onnxruntime is not
    restricted)."""
    # imported here: the sitecustomize loads this file on its own, outside its package, so that
    # every process does not import densehead first
    from ..core.machine import AVX2_NUMERICS_ENV

    (site_dir / "sitecustomize.py").write_text(
        "import importlib.util, os\n"
        f"spec = importlib.util.spec_from_file_location('avx2_numerics', {str(__file__)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        f"module.restrict_xnnpack(os.environ[{AVX2_NUMERICS_ENV!r}])\n")
    path = os.pathsep.join(p for p in (str(site_dir), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path, **{AVX2_NUMERICS_ENV: profile})
    mask, why_not = build_cpuid_mask(site_dir)
    if mask is None:   # each library told on its own (OpenCV warns when told of a hidden feature)
        print(f"avx2_numerics: {why_not}; onnxruntime keeps its own kernels", file=sys.stderr)
        return dict(env, **LIBRARY_ENV)
    return dict(env, LD_PRELOAD=" ".join(p for p in (str(mask), os.environ.get("LD_PRELOAD")) if p))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m densehead.tools.avx2_numerics",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", choices=sorted(XNNPACK_UARCH), default="avx2",
                        help="XNNPACK's choice for any AVX2 CPU, or its Zen 1 choice")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if not args.command:
        parser.error("give the command to run")
    with tempfile.TemporaryDirectory(prefix="avx2-numerics-") as site_dir:
        env = environment(args.kernels, Path(site_dir))
        code = subprocess.call(args.command, env=env)
    return 128 - code if code < 0 else code   # killed by a signal: as a shell says it


if __name__ == "__main__":
    sys.exit(main())
