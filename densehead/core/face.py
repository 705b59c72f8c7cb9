"""The result record: everything the pipeline knows about one face in one frame."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .layout import EXPRESSION, SHAPE


# eq=False: numpy fields make field-wise == ambiguous; faces compare by identity.
@dataclass(eq=False)
class Face:
    box: np.ndarray            # (4,) x1, y1, x2, y2 in frame pixels (detector box, or the tracked box)
    score: float               # detector confidence (1.0 for boxes given by the caller)
    roi: np.ndarray            # (4,) the square crop x1, y1, x2, y2 fed to the regressor
    params: np.ndarray         # (62,) de-normalised 3DMM parameters: 12 camera, 40 shape, 10 expression
    camera: np.ndarray         # (3, 4) affine camera, model space -> 120x120 crop space
    rotation: np.ndarray       # (3, 3) rows: normalised camera rows 1, 2 and their cross product
    translation: np.ndarray    # (3,) camera offset column, crop space
    scale: float               # mean norm of the first two camera rows
    yaw: float                 # degrees, see densehead.pose for the convention
    pitch: float
    roll: float
    landmarks: np.ndarray      # (68, 3) frame pixels x, y and depth (larger = nearer the camera)
    vertices: np.ndarray | None = None  # (38365, 3) like landmarks, only when dense was asked for
    track_id: int = -1         # stable id across frames when tracking, -1 for single images

    @property
    def shape_coeffs(self) -> np.ndarray:
        """The 40 identity (shape) coefficients of the morphable model."""
        return self.params[SHAPE]

    @property
    def expression_coeffs(self) -> np.ndarray:
        """The 10 expression coefficients of the morphable model."""
        return self.params[EXPRESSION]

    def to_dict(self, with_vertices: bool = False) -> dict[str, Any]:
        """Plain JSON-ready values (lists and floats)."""
        out: dict[str, Any] = {
            "track_id": int(self.track_id),
            "box": _floats(self.box),
            "score": float(self.score),
            "roi": _floats(self.roi),
            "yaw": float(self.yaw),
            "pitch": float(self.pitch),
            "roll": float(self.roll),
            "translation": _floats(self.translation),
            "scale": float(self.scale),
            "shape": _floats(self.shape_coeffs),
            "expression": _floats(self.expression_coeffs),
            "landmarks": np.round(self.landmarks.astype(float), 3).tolist(),
        }
        if with_vertices and self.vertices is not None:
            out["vertices"] = np.round(self.vertices.astype(float), 3).tolist()
        return out


def _floats(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a).ravel()]


@dataclass
class StageTimes:
    """Milliseconds spent per stage for one call (summed over faces where a stage runs per face)."""
    detect: float = 0.0
    preprocess: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0
    render: float = 0.0
    faces: int = 0

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items()}

    def add(self, other: StageTimes) -> None:
        """Count another call's stages (and faces) in these."""
        for name, value in other.__dict__.items():
            setattr(self, name, getattr(self, name) + value)


STAGES = tuple(f.name for f in fields(StageTimes) if f.name != "faces")


def ms_since(start: float) -> float:
    """Milliseconds since `start`, a time.perf_counter() reading: a stage's time."""
    return (time.perf_counter() - start) * 1e3


@dataclass(frozen=True)
class FrameResult:
    """What one call on one frame gives: its faces and the time each stage took. A value of its
    own per call, so nothing per call lives on the shared pipeline."""
    faces: list[Face] = field(default_factory=list)
    times: StageTimes = field(default_factory=StageTimes)


__all__ = ["Face", "FrameResult", "STAGES", "StageTimes", "ms_since"]
