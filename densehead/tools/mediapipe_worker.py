"""MediaPipe Face Mesh's half of densehead.tools.mediapipe_bench, run by the Python of a
virtualenv that has mediapipe (it needs numpy < 2, so it cannot share densehead's): a script
importing nothing of the densehead package (which imports its `answer_rounds`, the protocol).

    python mediapipe_worker.py FRAMES.npy [--kernels native|avx2|cpuid]

`avx2` rewrites the hardware config of MediaPipe's XNNPACK (0.10.21 only); `cpuid` says that the
process runs under the CPUID mask of densehead.tools.avx2_numerics (preloaded), which every
XNNPACK follows: the ready line names the way.

Answers lines "static N" and "tracked N" on stdin with one JSON line: the milliseconds of each
of the next N frames (BGR to RGB conversion and `process`) and on how many a face was found.
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import IO, Any, Callable, Sequence

# MediaPipe 0.10.21 bundles an XNNPACK whose hardware config is a struct of bools, one per
# instruction set; these offsets (avx512f to avx256vnnigfni) were read off that build and
# checked by the kernels it then runs (perf shows fma3 ones in place of avx512f ones)
KNOWN_VERSION = "0.10.21"
PAST_AVX2 = range(14, 26)


def restrict_to_avx2() -> None:
    """Make MediaPipe's XNNPACK pick AVX2 kernels; before the first graph is made."""
    import mediapipe
    from mediapipe.python import _framework_bindings

    if mediapipe.__version__ != KNOWN_VERSION:
        sys.exit(f"mediapipe {mediapipe.__version__}: only {KNOWN_VERSION}'s XNNPACK layout is "
                 "known, run with --kernels native")
    elf = _avx2_numerics()
    path, base = elf.mapped_library(Path(_framework_bindings.__file__).name)
    symbol = elf.elf_symbol(path, "xnn_init_hardware_config")
    config = ctypes.CFUNCTYPE(ctypes.c_void_p)(base + symbol)()
    flags = (ctypes.c_ubyte * PAST_AVX2.stop).from_address(config)
    for offset in PAST_AVX2:
        flags[offset] = 0


def _avx2_numerics():
    """densehead.tools.avx2_numerics (its ELF and /proc readers), loaded from the file beside
    this one without importing the densehead package, which this interpreter does not have."""
    spec = importlib.util.spec_from_file_location(
        "avx2_numerics", Path(__file__).with_name("avx2_numerics.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("frames", type=Path)
    parser.add_argument("--kernels", choices=("native", "avx2", "cpuid"), default="native")
    args = parser.parse_args()
    try:
        import cv2
        import mediapipe
        import numpy as np
    except ImportError as e:
        sys.exit(f"this Python cannot run MediaPipe ({e}): give the Python of a virtualenv with "
                 f"`pip install mediapipe=={KNOWN_VERSION}`")
    if args.kernels == "avx2":
        restrict_to_avx2()
    mesh = mediapipe.solutions.face_mesh
    meshes = {"static": mesh.FaceMesh(static_image_mode=True, max_num_faces=1),
              "tracked": mesh.FaceMesh(static_image_mode=False, max_num_faces=1)}

    def finder(face_mesh: Any) -> Callable[[Any], bool]:   # MediaPipe takes RGB
        return lambda frame: face_mesh.process(
            cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)).multi_face_landmarks is not None

    restricted = {"native": "", "avx2": " (its XNNPACK config rewritten)",
                  "cpuid": " (CPUID masked)"}[args.kernels]
    if args.kernels == "cpuid" and not _avx2_numerics().cpuid_masked():
        sys.exit("--kernels cpuid: the CPUID mask is not active in this process")
    answer_rounds(np.load(args.frames), {kind: finder(m) for kind, m in meshes.items()},
                  f"mediapipe {mediapipe.__version__}{restricted}", sys.stdin, sys.stdout)
    return 0


def answer_rounds(frames: Sequence[Any], calls: dict[str, Callable[[Any], bool]], ready: str,
                  stdin: IO[str], stdout: IO[str]) -> None:
    """The protocol both sides speak: a line {"ready": ready}, then for each line "KIND N" the
    milliseconds of each of the next N frames through calls[KIND] (which says whether it found
    a face), and on how many it found one, as one JSON line."""
    next_frame = dict.fromkeys(calls, 0)
    # each frame is first written into one buffer, untimed, as a decoder or camera hands over a
    # frame it has just written: read straight from the decoded array, every frame would come
    # from main memory, which no video or stream makes a program do
    frame = frames[0].copy()
    print(json.dumps({"ready": ready}), file=stdout, flush=True)
    for line in stdin:
        kind, count = line.split()
        times, found = [], 0
        for _ in range(int(count)):
            frame[...] = frames[next_frame[kind] % len(frames)]
            next_frame[kind] += 1
            start = time.perf_counter()
            found += calls[kind](frame)
            times.append((time.perf_counter() - start) * 1e3)
        print(json.dumps({"ms": times, "found": found}), file=stdout, flush=True)


if __name__ == "__main__":
    sys.exit(main())
