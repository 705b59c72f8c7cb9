"""`densehead benchmark-texture [PHOTO ...]`: how long unwrapping one face's texture takes.

For each photo, the first face found with the dense mesh is unwrapped `--repeats` times per
texture size; prints median / min / max in ms per step (geometry: texel positions and normals;
zbuffer: the C++ depth map, part of visibility; visibility: facing, occlusion and outline
distance; sample: the bilinear photo lookup; fill: mirror + push-pull) and the whole call, then
the time to encode the three files (obj + mtl + png) once. The one-off atlas build is shown apart.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..core.face import ms_since
from ..core.machine import this_machine
from ..io import export, texture
from ..io.image import read_image

STEPS = ("geometry", "zbuffer", "visibility", "sample", "fill", "total")


def time_unwrap(image: np.ndarray, vertices: np.ndarray, atlas: texture.UVAtlas,
                repeats: int) -> dict[str, list[float]]:
    """ms per step of each of `repeats` unwraps."""
    runs: dict[str, list[float]] = {k: [] for k in STEPS}
    for _ in range(repeats):
        start = time.perf_counter()
        tex = texture.unwrap(image, vertices, atlas)
        total = ms_since(start)
        for k in STEPS:
            runs[k].append(total if k == "total" else tex.times.get(k, 0.0))
    return runs


def run(photos: list[Path], sizes: list[int], repeats: int) -> int:
    """Print the table for each photo's first face; 1 when a photo cannot be used."""
    from ..engine.pipeline import Pipeline

    pipe = Pipeline()
    print(f"machine: {this_machine().describe()}")
    for photo in photos:
        image = read_image(photo)
        faces = pipe(image, dense=True).faces
        if not faces:
            raise ValueError(f"{photo}: no face found")
        face = faces[0]
        width = float(np.ptp(face.vertices[:, 0]))
        print(f"{photo.name}: {image.shape[1]}x{image.shape[0]}, face {width:.0f} px wide, "
              f"yaw {face.yaw:.0f} deg, {repeats} runs")
        for size in sizes:
            start = time.perf_counter()
            atlas = texture.atlas_for(pipe.face_model, size)
            built = ms_since(start)
            runs = time_unwrap(image, face.vertices, atlas, repeats)
            print(f"  {size}x{size} (atlas built once in {built:.0f} ms)")
            print(f"    {'step':12s} {'median':>8s} {'min':>8s} {'max':>8s}  ms")
            for k in STEPS:
                v = np.asarray(runs[k])
                print(f"    {k:12s} {np.median(v):8.2f} {v.min():8.2f} {v.max():8.2f}")
            textured = export.textured_face(face, image, pipe.face_model, size=size)
            start = time.perf_counter()
            files = textured.files()
            encode = ms_since(start)
            kb = {name: len(data) // 1024 for name, data in files.items()}
            print(f"    files (obj + mtl + png) encoded in {encode:.0f} ms: {kb} KiB")
    return 0
