"""Dense face renderings (the 3DDFA_V2 visualisations) drawn by the C++ extension `_render`.

Three modes, all drawn in place onto a BGR uint8 frame and all sharing one z-buffer across the
faces of a frame, so that the nearer face wins where two overlap:

- `render_mesh`: the face mesh lit by ambient + diffuse + specular light;
- `render_depth`: each face's depth normalised to [0, 1] over its own range, as grey (near = white);
- `render_pncc`: the projected normalised coordinate code, i.e. the mean shape's normalised
  x, y, z painted as R, G, B.

Vertices are float32 (N, 3) in image pixels: x right, y down (pixel centres at integers), and z
growing towards the camera. Triangles are int32 (M, 3), any winding: normals are oriented to face
the camera per face. Inputs are checked, never silently converted (the frame must be the very
array you want drawn on).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

try:
    from . import _render
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "densehead's C++ renderer (densehead._render) is not built. Build it with "
        "`pip install -e .` in the repository root (or `pip install -r requirements.txt`); "
        "it needs a C++17 compiler."
    ) from exc

__all__ = [
    "Light",
    "depth_map",
    "render_depth",
    "render_mesh",
    "render_pncc",
]

Timings = dict  # phase name -> milliseconds, filled in by the render functions on request


@dataclass(frozen=True)
class Light:
    """Light for `render_mesh`, evaluated per vertex.

    `direction` points from the face towards the light in image space (x right, y down, z towards
    the camera); the default light is above, right of and in front of the face. `color` is BGR in
    0..1. The specular term is Blinn-Phong with the viewer straight in front.
    """

    ambient: float = 0.35
    diffuse: float = 0.6
    specular: float = 0.15
    shininess: float = 12.0
    direction: tuple[float, float, float] = (0.3, -0.4, 1.0)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)


DEFAULT_MESH_COLOR = (0.78, 0.82, 0.88)  # BGR, a light warm grey


def _faces(vertices_list: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    # One (N, 3) array is accepted as a single face; anything else goes to C++ to be checked.
    if isinstance(vertices_list, np.ndarray) and vertices_list.ndim == 2:
        return [vertices_list]
    if isinstance(vertices_list, np.ndarray):
        raise ValueError(
            f"vertices_list must be a (N, 3) array or a list of them, got shape {vertices_list.shape}"
        )
    if not isinstance(vertices_list, (list, tuple)):
        raise TypeError("vertices_list must be a list of float32 (N, 3) arrays, one per face, got "
                        f"{type(vertices_list).__name__}")
    return list(vertices_list)


def _vec3(value: Sequence[float], name: str) -> tuple[float, float, float]:
    # Fast path for the usual tuple of three floats (the defaults): no numpy round trip, which
    # dominated the wrapper's per-call cost (docs/measurements.md).
    if type(value) is tuple and len(value) == 3 and all(type(x) is float for x in value):
        return value
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape != (3,):
        raise ValueError(f"{name} must have 3 components, got {arr.size}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def _keep(timings: Timings | None, measured: dict) -> None:
    if timings is not None:
        timings.update(measured)


def render_mesh(
    frame: np.ndarray,
    vertices_list: np.ndarray | Sequence[np.ndarray],
    triangles: np.ndarray,
    light: Light = Light(),
    color: Sequence[float] = DEFAULT_MESH_COLOR,
    alpha: float = 0.8,
    timings: Timings | None = None,
) -> np.ndarray:
    """Paints the lit, z-buffered meshes onto `frame` (uint8 HxWx3, in place) and returns it."""
    measured = _render.render_mesh(
        frame,
        _faces(vertices_list),
        triangles,
        color=_vec3(color, "color"),
        ambient=light.ambient,
        diffuse=light.diffuse,
        specular=light.specular,
        shininess=light.shininess,
        direction=_vec3(light.direction, "light.direction"),
        light_color=_vec3(light.color, "light.color"),
        alpha=alpha,
    )
    _keep(timings, measured)
    return frame


def render_depth(
    frame: np.ndarray,
    vertices_list: np.ndarray | Sequence[np.ndarray],
    triangles: np.ndarray,
    alpha: float = 1.0,
    black_background: bool = False,
    timings: Timings | None = None,
) -> np.ndarray:
    """Paints each face's normalised depth as grey (near = white) onto `frame` in place."""
    measured = _render.render_depth(
        frame, _faces(vertices_list), triangles, alpha=alpha, black_background=black_background
    )
    _keep(timings, measured)
    return frame


def render_pncc(
    frame: np.ndarray,
    vertices_list: np.ndarray | Sequence[np.ndarray],
    triangles: np.ndarray,
    pncc_colors: np.ndarray,
    alpha: float = 1.0,
    black_background: bool = False,
    timings: Timings | None = None,
) -> np.ndarray:
    """Paints the PNCC (`pncc_colors`: float32 (N, 3) normalised x, y, z) onto `frame` in place."""
    measured = _render.render_pncc(
        frame,
        _faces(vertices_list),
        triangles,
        pncc_colors,
        alpha=alpha,
        black_background=black_background,
    )
    _keep(timings, measured)
    return frame


def depth_map(
    height: int,
    width: int,
    vertices_list: np.ndarray | Sequence[np.ndarray],
    triangles: np.ndarray,
    timings: Timings | None = None,
) -> np.ndarray:
    """float32 (height, width): the z-buffer, i.e. z of the nearest surface in the vertices' own
    units (larger = nearer), NaN where no face is drawn. For exporting depth rather than
    painting it."""
    out, measured = _render.depth_map(int(height), int(width), _faces(vertices_list), triangles)
    _keep(timings, measured)
    return out


