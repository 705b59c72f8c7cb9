"""`python -m densehead.texture_bench [PHOTO ...]`: how long unwrapping one face's texture takes.

For each photo, the first face found with the dense mesh is unwrapped `--repeats` times per
texture size; prints median / min / max in ms per step (geometry: texel positions and normals;
zbuffer: the C++ depth map, part of visibility; visibility: facing, occlusion and outline
distance; sample: the bilinear photo lookup; fill: mirror + push-pull) and the whole call, then
the time to encode the three files (obj + mtl + png) once. The one-off atlas build is shown apart.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from . import export, texture
from .image import read_image

STEPS = ("geometry", "zbuffer", "visibility", "sample", "fill", "total")


def time_unwrap(image: np.ndarray, vertices: np.ndarray, atlas: texture.UVAtlas,
                repeats: int) -> dict[str, list[float]]:
    """ms per step of each of `repeats` unwraps."""
    runs: dict[str, list[float]] = {k: [] for k in STEPS}
    for _ in range(repeats):
        start = time.perf_counter()
        tex = texture.unwrap(image, vertices, atlas)
        total = (time.perf_counter() - start) * 1e3
        for k in STEPS:
            runs[k].append(total if k == "total" else tex.times.get(k, 0.0))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m densehead.texture_bench",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("photos", nargs="*", type=Path,
                        default=[Path("../shared/samples/photos/JianzhuGuo.jpg")])
    parser.add_argument("--size", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)

    from .pipeline import Pipeline

    pipe = Pipeline()
    for photo in args.photos:
        try:
            image = read_image(photo)
        except (OSError, ValueError) as e:
            print(f"{photo}: {e}", file=sys.stderr)
            return 1
        faces = pipe(image, dense=True)
        if not faces:
            print(f"{photo}: no face found", file=sys.stderr)
            return 1
        face = faces[0]
        width = float(np.ptp(face.vertices[:, 0]))
        print(f"{photo.name}: {image.shape[1]}x{image.shape[0]}, face {width:.0f} px wide, "
              f"yaw {face.yaw:.0f} deg, {args.repeats} runs")
        for size in args.size:
            start = time.perf_counter()
            atlas = texture.atlas_for(pipe.model, size)
            built = (time.perf_counter() - start) * 1e3
            runs = time_unwrap(image, face.vertices, atlas, args.repeats)
            print(f"  {size}x{size} (atlas built once in {built:.0f} ms)")
            print(f"    {'step':12s} {'median':>8s} {'min':>8s} {'max':>8s}  ms")
            for k in STEPS:
                v = np.asarray(runs[k])
                print(f"    {k:12s} {np.median(v):8.2f} {v.min():8.2f} {v.max():8.2f}")
            textured = export.textured_face(face, image, pipe.model, size=size)
            start = time.perf_counter()
            files = textured.files()
            encode = (time.perf_counter() - start) * 1e3
            kb = {name: len(data) // 1024 for name, data in files.items()}
            print(f"    files (obj + mtl + png) encoded in {encode:.0f} ms: {kb} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
