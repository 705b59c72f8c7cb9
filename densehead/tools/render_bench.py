"""`densehead benchmark-render`: times the C++ renderer on the real 38,365-vertex mesh.

The face is the model's mean shape posed and scaled like a real detection (about 200 px wide on
640x480, 350 px on 1280x720), so the numbers do not depend on the regressor being available.
Prints median / min / max per case and per phase (prepare, normals, shade = lighting, raster,
blend, with normals apart for the mesh mode) plus the wall time of the whole Python call.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.face import ms_since
from ..engine.face_model import MorphableModel, ncc_code
from ..weights import assets
from ..weights.registry import BFM_FILE, TRI_FILE

PHASES = ("prepare", "normals", "shade", "raster", "blend")
CASES = ((640, 480, 200.0), (1280, 720, 350.0))  # frame width, height, face width in px


@dataclass(frozen=True)
class MeanMesh:
    shape: np.ndarray      # float32 (N, 3) model space, y up
    triangles: np.ndarray  # int32 (M, 3), contiguous


def load_mean_mesh(assets_dir: Path | None = None) -> MeanMesh:
    """Mean shape and triangles of the face model: from `assets_dir` when given, else wherever
    densehead.assets finds the files (DENSEHEAD_ASSETS, the cache, a verified download)."""
    names = [BFM_FILE, TRI_FILE]
    paths = ({n: Path(assets_dir) / n for n in names} if assets_dir is not None
             else assets.resolve_many(names))
    model = MorphableModel(paths[BFM_FILE], paths[TRI_FILE])
    return MeanMesh(shape=model.mean.reshape(-1, 3), triangles=model.triangles)


def rotation(yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Model-space rotation (y up): yaw about y, pitch about x, roll about z."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def posed_face(shape: np.ndarray, center: tuple[float, float], width_px: float,
               yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Image-space vertices (x right, y down, z towards the camera) of a posed model shape,
    scaled so that the face is `width_px` wide, centred at `center`."""
    centred = shape.astype(np.float64) - shape.mean(axis=0)
    posed = centred @ rotation(yaw, pitch, roll).T
    s = width_px / (posed[:, 0].max() - posed[:, 0].min())
    out = np.empty_like(posed)
    out[:, 0] = center[0] + s * posed[:, 0]
    out[:, 1] = center[1] - s * posed[:, 1]  # model y is up, image y is down
    out[:, 2] = s * posed[:, 2]
    return np.ascontiguousarray(out, dtype=np.float32)


def _time_calls(call: Callable[[dict], None], repeats: int) -> dict[str, np.ndarray]:
    rows: dict[str, list[float]] = {name: [] for name in (*PHASES, "total")}
    for _ in range(repeats):
        phases: dict = {}
        start = time.perf_counter()
        call(phases)
        rows["total"].append(ms_since(start))
        for name in PHASES:
            rows[name].append(phases.get(name, 0.0))
    return {name: np.asarray(values) for name, values in rows.items()}


def run_benchmark(repeats: int = 200, modes: tuple[str, ...] = ("mesh", "depth", "pncc"),
                  assets_dir: Path | None = None, warmup: int = 10) -> list[dict]:
    """Times each mode on each case; returns one row per (case, mode, phase)."""
    from ..render import renderer as render

    mesh = load_mean_mesh(assets_dir)
    pncc = ncc_code(mesh.shape)
    results = []
    for width, height, face_px in CASES:
        frame0 = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        verts = posed_face(mesh.shape, (width / 2, height / 2), face_px, yaw=20, pitch=-10)
        frame = frame0.copy()
        calls = {
            "mesh": lambda t: render.render_mesh(frame, [verts], mesh.triangles, timings=t),
            "depth": lambda t: render.render_depth(frame, [verts], mesh.triangles, timings=t),
            "pncc": lambda t: render.render_pncc(frame, [verts], mesh.triangles, pncc, timings=t),
        }
        for mode in modes:
            _time_calls(calls[mode], warmup)
            stats = _time_calls(calls[mode], repeats)
            for phase, values in stats.items():
                results.append({
                    "case": f"{width}x{height} face {face_px:.0f}px", "mode": mode,
                    "phase": phase, "median": float(np.median(values)),
                    "min": float(values.min()), "max": float(values.max()),
                })
    return results


def format_table(rows: list[dict]) -> str:
    lines = [f"{'case':<24} {'mode':<6} {'phase':<8} {'median ms':>10} {'min':>8} {'max':>8}"]
    for r in rows:
        lines.append(f"{r['case']:<24} {r['mode']:<6} {r['phase']:<8} "
                     f"{r['median']:>10.3f} {r['min']:>8.3f} {r['max']:>8.3f}")
    return "\n".join(lines)
