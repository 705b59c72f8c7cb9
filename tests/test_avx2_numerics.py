"""`python -m densehead.tools.avx2_numerics`: a command run through it computes with the kernels
of an AVX2-only CPU, in XNNPACK, numpy and OpenCV, so that the suite's tolerances can be checked
from a machine with AVX-512."""
from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys

import numpy as np
import pytest
from paths import ROOT

from densehead.tools.avx2_numerics import (
    AVX2_FLAGS,
    LITERT_VERSION,
    XNNPACK_UARCH,
    build_cpuid_mask,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 kernels"),
    pytest.mark.skipif(importlib.metadata.version("ai-edge-litert") != LITERT_VERSION,
                       reason=f"the tool knows ai-edge-litert {LITERT_VERSION}'s XNNPACK only"),
]

# what one process computes and which kernels its libraries chose
PROBE = """
import json, sys
import cv2
from numpy._core._multiarray_umath import __cpu_features__
import densehead as dh
from densehead.io.image import read_image
from densehead.tools.avx2_numerics import cpuid_masked, xnnpack_flags
from densehead.core.machine import this_machine
uarch, flags = xnnpack_flags()
face = dh.Pipeline(regressor="mb05", num_threads=1)(read_image(sys.argv[1])).faces[0]
machine = this_machine()
print(json.dumps({"uarch": uarch, "flags": flags, "opencv": cv2.getCPUFeaturesLine(),
                  "numpy_avx512": __cpu_features__.get("X86_V4", False),
                  "cpuid_masked": cpuid_masked(),
                  "machine": machine.describe(), "dot_product": machine.int8_dot_product,
                  "auto": dh.Pipeline().regressor_choice.name,
                  "params": face.params.tolist(), "landmarks": face.landmarks.tolist()}))
"""


def probe(samples, *through: str) -> dict:
    photo = samples / "photos" / "JianzhuGuo.jpg"
    out = subprocess.run([*through, sys.executable, "-c", PROBE, str(photo)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_command_runs_with_the_kernels_of_a_zen_1(samples, tmp_path):
    native = probe(samples)
    zen1 = probe(samples, sys.executable, "-m", "densehead.tools.avx2_numerics",
                 "--kernels", "zen1")
    assert zen1["flags"] == list(AVX2_FLAGS) and zen1["uarch"] == XNNPACK_UARCH["zen1"]
    assert not zen1["numpy_avx512"]
    if build_cpuid_mask(tmp_path)[0] is not None:
        # CPUID itself answers without AVX-512 (what restricts onnxruntime); numpy is then told
        # nothing else, and found no AVX-512 above from CPUID alone
        assert zen1["cpuid_masked"]
    # and it says so: its machine line names no AVX-512 and "auto" runs the float graph, as on
    # a CPU without int8 dot products
    assert "avx512" not in zen1["machine"] and "avx2_numerics" in zen1["machine"]
    assert not zen1["dot_product"] and zen1["auto"] == "mb05"
    if "AVX512-SKX" in native["opencv"]:
        assert "AVX512-SKX?" in zen1["opencv"]   # OpenCV's mark of a feature turned off
    if "avx512f" in native["flags"]:
        # Zen's GEMM kernels sum in another order than the AVX-512 ones: the same fit, other
        # last bits (on an AVX2 CPU, Zen or not, XNNPACK may already pick them: not asserted)
        assert native["params"] != zen1["params"]
    # a few hundredths of a pixel apart (0.012 px here): the 3DMM parameters span five orders
    # of magnitude and the order of summation moves the largest by parts in 1e4
    distance = np.abs(np.array(zen1["landmarks"]) - native["landmarks"]).max()
    assert distance < 0.1, distance


def test_a_real_crash_under_the_cpuid_mask_still_crashes_with_its_traceback(tmp_path):
    """The mask takes SIGSEGV for CPUID; a real segfault must still reach Python's faulthandler
    (a traceback) and end the process by the signal, as it would without the tool."""
    if build_cpuid_mask(tmp_path)[0] is None:
        pytest.skip("no CPUID faulting or no C compiler here: the mask is not used")
    crash = "import ctypes; ctypes.string_at(0)"
    out = subprocess.run([sys.executable, "-m", "densehead.tools.avx2_numerics", sys.executable,
                          "-X", "faulthandler", "-c", crash], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 128 + 11, out.returncode   # SIGSEGV, as a shell reports it
    assert "Segmentation fault" in out.stderr and "<string>" in out.stderr, out.stderr[-500:]
