"""Calibrating the int8 regressor: the range of every activation of the float graph over the
faces of real videos, stored in densehead/weights/int8_ranges.json (read by
densehead.weights.int8_ranges when the int8 graph is compiled):

    python -m densehead.tools.calibrate ../shared/samples/videos/obama.mp4 ../shared/samples/videos/orlando_bloom.avi
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..core.options import DEFAULT_FLOAT_REGRESSOR
from ..weights.hashing import file_sha256
from ..weights.int8_ranges import RANGES_FILE, load_table


def activation_ranges(float_tflite: Path, crops: Iterable[np.ndarray]) -> dict[str, tuple[float, float]]:
    """(lowest, highest) value of the input, every ReLU output and the pooled features of the
    float graph over ``crops`` (regressor inputs, [1, 120, 120, 3] uint8)."""
    from ..engine.runtime import Interpreter

    with warnings.catch_warnings():  # "for debugging only": reading every tensor is the point here
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        interpreter = Interpreter(model_path=str(float_tflite), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    watched = {d["name"]: d["index"] for d in interpreter.get_tensor_details()
               if d["name"] in ("input", "pool/mean") or d["name"].endswith("/relu")}
    ranges: dict[str, tuple[float, float]] = {}
    for x in crops:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        for name, index in watched.items():
            values = interpreter.get_tensor(index)
            low, high = ranges.get(name, (np.inf, -np.inf))
            ranges[name] = (min(low, float(values.min())), max(high, float(values.max())))
    if not ranges:
        raise ValueError("no face crops to calibrate on")
    return ranges


def video_crops(videos: Iterable[Path], every: int = 3, max_frames: int = 150) -> Iterator[np.ndarray]:
    """The regressor inputs of the faces the float pipeline finds in every `every`-th frame of
    the first `max_frames` frames of each video."""
    from ..engine import crop
    from ..engine.pipeline import Pipeline
    from ..io.video import iter_frames

    pipe = Pipeline(regressor=DEFAULT_FLOAT_REGRESSOR, num_threads=1)
    for video in videos:
        for index, frame in enumerate(iter_frames(Path(video), max_frames)):
            if index % every == 0:
                for face in pipe(frame).faces:
                    yield crop.crop(frame, face.roi)


def calibrate(checkpoint: Path, param_stats: Path, videos: list[Path]) -> dict:
    """Measure the ranges of `checkpoint` on `videos` and store them in RANGES_FILE."""
    from ..weights.compile import regressor_tflite_bytes

    with tempfile.TemporaryDirectory() as folder:
        float_path = Path(folder) / "float.tflite"
        float_path.write_bytes(regressor_tflite_bytes(checkpoint, param_stats))
        crops = list(video_crops(videos))
        ranges = activation_ranges(float_path, crops)
    table = load_table()
    table[file_sha256(Path(checkpoint))] = {
        "checkpoint": Path(checkpoint).name, "crops": len(crops),
        "videos": [Path(v).name for v in videos],
        "ranges": {name: [round(low, 6), round(high, 6)] for name, (low, high) in sorted(ranges.items())}}
    RANGES_FILE.write_text(json.dumps(table, indent=1) + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    from ..weights import assets

    p = argparse.ArgumentParser(prog="python -m densehead.tools.calibrate", description=
                                "Calibrate the int8 regressor of a checkpoint on videos of faces.")
    p.add_argument("videos", nargs="+", type=Path)
    p.add_argument("--regressor", default=DEFAULT_FLOAT_REGRESSOR,
                   choices=sorted(assets.FLOAT_REGRESSORS))
    args = p.parse_args(argv)
    paths = assets.resolve_many(assets.default_names(args.regressor))
    table = calibrate(paths[assets.REGRESSORS[args.regressor]], paths[assets.STATS_FILE], args.videos)
    print(f"{RANGES_FILE}: {len(table)} checkpoint(s) calibrated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
