"""2D overlays on a BGR frame: landmarks with contours, dense points, pose cube, and (through
the C++ renderer) the lit mesh, depth and PNCC."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..core.face import Face
from ..core.frames import as_bgr
from ..core.layout import COEFFICIENTS
from ..engine import crop
from ..engine.face_model import MorphableModel, project

MODES = ("sparse", "dense", "pose", "mesh", "depth", "pncc")
DEFAULT_MODE = "sparse"   # the 68 landmarks: the cheapest overlay, and the first offered
RENDERED = ("mesh", "depth", "pncc")

# iBUG 68-point groups: (first, last, closed loop)
CONTOURS = [(0, 16, False), (17, 21, False), (22, 26, False), (27, 30, False), (31, 35, False),
            (36, 41, True), (42, 47, True), (48, 59, True), (60, 67, True)]
GREEN, RED, WHITE, CYAN = (80, 220, 80), (60, 60, 230), (255, 255, 255), (230, 200, 40)
DENSE_STEP = 6


def needs_dense(mode: str) -> bool:
    """Whether `mode` draws from all 38,365 vertices (ask the pipeline for dense=True). The
    dense points need no more than the face's parameters: every DENSE_STEP-th vertex."""
    return mode in RENDERED


def overlay(frame: np.ndarray, faces: Sequence[Face], mode: str,
            model: MorphableModel, in_place: bool = False) -> np.ndarray:
    """A copy of `frame` with `mode` drawn for every face; `in_place=True` draws the point,
    line and pose modes on `frame` itself (a frame the caller no longer needs: a live frame
    saves a full copy). Grayscale and BGRA frames are drawn on as BGR copies, as the pipeline
    reads them; anything else (float pixels) raises ImageError."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    bgr = as_bgr(frame)
    # a converted frame is a copy already; the caller's own is drawn on only when it says so
    out = bgr if bgr is not frame or (in_place and mode not in RENDERED) else bgr.copy()
    if mode in RENDERED:
        return _rendered(out, faces, mode, model)
    for face in faces:
        if mode == "sparse":
            draw_landmarks(out, face.landmarks)
        elif mode == "dense":
            draw_points(out, dense_points(face, model))
        else:
            draw_pose(out, face, model)
    return out


def dense_points(face: Face, model: MorphableModel) -> np.ndarray:
    """Every DENSE_STEP-th vertex of the face in frame pixels: from its vertices when it has
    them, else computed for those vertices alone (a sixth of the work)."""
    if face.vertices is not None:
        return face.vertices[::DENSE_STEP]
    points = model.dense_points(face.params[COEFFICIENTS], DENSE_STEP)
    return project(crop.image_camera(face.camera, face.roi), points)


def _need_vertices(face: Face) -> np.ndarray:
    if face.vertices is None:
        raise ValueError("this mode needs dense vertices: call the pipeline with dense=True")
    return face.vertices


def _rendered(out: np.ndarray, faces: Sequence[Face], mode: str,
              model: MorphableModel) -> np.ndarray:
    from . import (
        renderer as render,  # raises a clear error when the C++ extension was not built
    )

    if not faces:
        return out
    vertices = [np.ascontiguousarray(_need_vertices(f), dtype=np.float32) for f in faces]
    if mode == "mesh":
        return render.render_mesh(out, vertices, model.triangles)
    if mode == "depth":
        return render.render_depth(out, vertices, model.triangles)
    return render.render_pncc(out, vertices, model.triangles, model.pncc_colors)


def draw_landmarks(out: np.ndarray, landmarks: np.ndarray,
                   color: tuple[int, int, int] = GREEN) -> None:
    pts = np.round(landmarks[:, :2]).astype(np.int32)
    thickness = _thickness(landmarks)
    for closed in (False, True):   # one call per kind of contour
        cv2.polylines(out, [pts[first:last + 1] for first, last, c in CONTOURS if c == closed],
                      closed, color, thickness, cv2.LINE_AA)
    radius, circle = thickness + 1, cv2.circle
    for x, y in pts.tolist():      # Python ints: cheaper than 68 numpy scalar conversions
        circle(out, (x, y), radius, RED, -1, cv2.LINE_AA)


def draw_points(out: np.ndarray, points: np.ndarray,
                color: tuple[int, int, int] = CYAN) -> None:
    """One pixel per point, set directly: thousands of cv2.circle calls would cost milliseconds."""
    xy = np.round(points[:, :2]).astype(np.int64)
    h, w = out.shape[:2]
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    out[xy[inside, 1], xy[inside, 0]] = color


def cube_corners(face: Face, model: MorphableModel) -> np.ndarray:
    """(8, 3) frame-space corners of a cube fixed to the head (front face = first four)."""
    half = 0.6 * float(np.ptp(model.mean.reshape(-1, 3)[:, 0])) / 2
    signs = np.array([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1],
                      [-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1]], dtype=np.float64)
    corners = model.centroid + half * signs
    return project(crop.image_camera(face.camera, face.roi), corners.astype(np.float32))


def draw_pose(out: np.ndarray, face: Face, model: MorphableModel) -> None:
    pts = np.round(cube_corners(face, model)[:, :2]).astype(np.int32)
    thickness = _thickness(face.landmarks)
    back, front = pts[4:], pts[:4]
    cv2.polylines(out, [back], True, WHITE, thickness, cv2.LINE_AA)
    for a, b in zip(front, back):
        cv2.line(out, tuple(map(int, a)), tuple(map(int, b)), WHITE, thickness, cv2.LINE_AA)
    cv2.polylines(out, [front], True, GREEN, thickness + 1, cv2.LINE_AA)
    text = f"yaw {face.yaw:+.0f}  pitch {face.pitch:+.0f}  roll {face.roll:+.0f}"
    x, y = int(pts[:, 0].min()), int(max(pts[:, 1].min() - 8, 14))
    scale = max(0.45, min(1.2, float(np.ptp(pts[:, 0])) / 220))
    cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2,
                cv2.LINE_AA)
    cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, GREEN, thickness, cv2.LINE_AA)


def _thickness(landmarks: np.ndarray) -> int:
    """Lines scale with the face so they stay visible on big faces and do not smother small ones."""
    width = float(np.ptp(landmarks[:, 0])) if len(landmarks) else 0.0
    return max(1, int(round(width / 150)))
