"""Axis-aligned boxes (x1, y1, x2, y2) in frame pixels: the box of some points, and overlap."""
from __future__ import annotations

import numpy as np


def landmark_box(points: np.ndarray) -> np.ndarray:
    """(4,) float64 x1, y1, x2, y2 around the 2D part of `points`."""
    p = np.asarray(points)[:, :2]   # min and max before the cast to float64: the same values
    return np.concatenate([p.min(axis=0), p.max(axis=0)]).astype(np.float64)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
