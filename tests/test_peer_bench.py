"""`densehead benchmark-peers`: the peer runs the same function as our regressor, the command
prints its table with the machine, and without the bench extra it says what to install."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from helpers import aflw_items, image_path
from paths import ROOT
from test_compile import crop_3ddfa

from densehead.cli import main
from densehead.engine.runtime import TFLiteRunner
from densehead.io.image import read_image
from densehead.tools import peer_bench
from densehead.weights.compile import regressor_tflite


def test_the_onnx_graph_computes_what_our_graph_computes(assets_dir: Path, tmp_path: Path):
    """On real face crops: the ratios of the benchmark compare the same function. Both runtimes
    sum in their own order, so outputs differ by float32 rounding (about 1e-6 of the largest
    parameter); 1e-4 would still catch a wrong weight, padding or layout."""
    checkpoint = assets_dir / "mb05_120x120.pth"
    stats = assets_dir / "param_mean_std_62d_120x120.pkl"
    ours = TFLiteRunner(regressor_tflite(checkpoint, stats, tmp_path), num_threads=1)
    peer = peer_bench.onnx_session(peer_bench.onnx_regressor(checkpoint, stats), threads=1)
    for item in aflw_items()[:5]:
        crop = crop_3ddfa(read_image(image_path(item)), item["roi_box_3ddfa"])[None]
        expected = ours(crop)[0]
        floats = peer_bench.normalise_crop(crop)   # ours normalises inside its graph
        got = peer(np.ascontiguousarray(floats.transpose(0, 3, 1, 2)))
        assert got.shape == expected.shape == (1, 62)
        assert np.abs(got - expected).max() < 1e-4 * np.abs(expected).max(), item["image"]


def test_the_command_prints_medians_ratios_and_the_machine(capsys):
    assert main(["benchmark-peers", "--threads", "1", "--rounds", "2", "--calls", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: ") and "onnxruntime" in out.splitlines()[1]
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split()[:1] in (["mb05"], ["mb05-int8"], ["onnxruntime"])}
    assert set(rows) == {"mb05", "mb05-int8", "onnxruntime"}
    assert float(rows["onnxruntime"][4]) == 1.0 and float(rows["mb05"][2]) > 0
    assert sum("<- auto" in line for line in out.splitlines()) == 1   # what the pipeline runs


def test_without_the_bench_extra_one_line_says_what_to_install():
    code = ("import sys; sys.modules['onnxruntime'] = None; from densehead.cli import main; "
            "sys.exit(main(['benchmark-peers']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ['densehead: error: benchmark-peers needs onnx and onnxruntime (onnxruntime '
                     'is missing): pip install ".[bench]"'], result.stderr


def test_settle_waits_until_the_previous_runtimes_workers_are_idle(assets_dir: Path):
    """onnxruntime's workers spin for a while after its last call; the runtime timed next would
    share the two cores with them. After `settle` the process uses almost no CPU while its
    main thread sleeps. In a process of its own, as the command runs: this one holds other
    tests' threads. A quarter of one core leaves room for a busy machine's accounting; a
    spinning worker uses all of one."""
    code = f"""
import time
from pathlib import Path
import numpy as np
from densehead.tools import peer_bench
assets = Path({str(assets_dir)!r})
model = peer_bench.onnx_regressor(assets / "mb05_120x120.pth",
                                  assets / "param_mean_std_62d_120x120.pkl")
peer = peer_bench.onnx_session(model, threads=2)
crop = np.zeros((1, 3, 120, 120), np.float32)
for _ in range(30):
    peer(crop)
peer_bench.settle()
used = time.process_time()
time.sleep(0.1)
print(time.process_time() - used)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.split()[-1]) < 0.25 * 0.1
