"""Accuracy and stability metrics, pure numpy: NME, pose errors, yaw bins, landmark jitter.

Pose convention: AFLW2000-3D's, the one densehead.pose writes down and extracts; its
rotation_from_euler / euler_angles (here euler_from_rotation) convert ground truth too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.boxes import landmark_box
from ..engine.pose import euler_angles as euler_from_rotation
from ..engine.pose import rotation_from_euler

YAW_BINS: tuple[str, ...] = ("0-30", "30-60", "60-90")
POSE_RANGE_DEG = 99.0


# ---------------------------------------------------------------- landmarks

def nme_norm(gt: np.ndarray) -> float:
    """sqrt(w * h) of the ground-truth landmark box: the AFLW2000-3D normaliser."""
    x1, y1, x2, y2 = landmark_box(gt)
    return float(np.sqrt(max(x2 - x1, 0.0) * max(y2 - y1, 0.0)))


def nme(pred: np.ndarray, gt: np.ndarray, norm: float | None = None) -> float:
    """Mean 2D point-to-point distance divided by `norm` (default: sqrt(w*h) of gt's box)."""
    p = np.asarray(pred, dtype=float)[:, :2]
    g = np.asarray(gt, dtype=float)[:, :2]
    if p.shape != g.shape:
        raise ValueError(f"landmark shapes differ: {p.shape} vs {g.shape}")
    n = nme_norm(g) if norm is None else float(norm)
    return float(np.linalg.norm(p - g, axis=1).mean() / n)


def yaw_bin(yaw_deg: float) -> str:
    """The 3DDFA benchmark's bins: |yaw| <= 30, (30, 60], > 60 (beyond 90 counts as the last)."""
    a = abs(float(yaw_deg))
    return YAW_BINS[0] if a <= 30 else YAW_BINS[1] if a <= 60 else YAW_BINS[2]


# ---------------------------------------------------------------- pose

def angle_diff(a: float, b: float) -> float:
    """|a - b| in degrees, wrapped into [0, 180]."""
    d = (float(a) - float(b) + 180.0) % 360.0 - 180.0
    return abs(d)


def geodesic_deg(r1: np.ndarray, r2: np.ndarray) -> float:
    """The angle of the rotation r1^T r2, in degrees: convention-free."""
    c = (np.trace(np.asarray(r1).T @ np.asarray(r2)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def pose_in_range(yaw: float, pitch: float, roll: float, limit: float = POSE_RANGE_DEG) -> bool:
    return all(abs(v) <= limit for v in (yaw, pitch, roll))


# ---------------------------------------------------------------- summaries

@dataclass
class NMESummary:
    per_bin: dict[str, float]     # percent, NaN for an empty bin
    counts: dict[str, int]
    balanced: float               # unweighted mean of the non-empty bins, percent
    mean: float                   # plain mean over all images, percent


def summarize_nme(values: list[float], bins: list[str]) -> NMESummary:
    v = np.asarray(values, dtype=float)
    b = np.asarray(bins)
    per_bin: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name in YAW_BINS:
        sel = v[b == name] if len(v) else v
        counts[name] = int(sel.size)
        per_bin[name] = float(sel.mean() * 100) if sel.size else float("nan")
    filled = [x for x in per_bin.values() if not np.isnan(x)]
    balanced = float(np.mean(filled)) if filled else float("nan")
    mean = float(v.mean() * 100) if v.size else float("nan")
    return NMESummary(per_bin, counts, balanced, mean)


@dataclass
class PoseSummary:
    yaw: float
    pitch: float
    roll: float
    mean: float                   # mean of the three MAEs
    geodesic: float               # mean rotation angle between prediction and ground truth
    count: int


def summarize_pose(pred: np.ndarray, gt: np.ndarray, geodesic: np.ndarray) -> PoseSummary:
    """pred, gt: (N, 3) yaw, pitch, roll in degrees (already filtered to the in-range images)."""
    p, g = np.asarray(pred, float).reshape(-1, 3), np.asarray(gt, float).reshape(-1, 3)
    if len(p) == 0:
        nan = float("nan")
        return PoseSummary(nan, nan, nan, nan, nan, 0)
    err = np.abs((p - g + 180.0) % 360.0 - 180.0).mean(axis=0)
    return PoseSummary(float(err[0]), float(err[1]), float(err[2]), float(err.mean()),
                       float(np.mean(geodesic)), len(p))


# ---------------------------------------------------------------- stability

@dataclass
class Stability:
    displacement: float   # mean |x_t - x_{t-1}| / face size, percent
    accel_var: float      # variance of (x_{t+1} - 2 x_t + x_{t-1}) / face size, percent^2
    frames: int           # frames that entered the statistics
    segments: int         # runs of consecutive frames with the face present


def _segments(present: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, end) runs where present is True."""
    runs, start = [], None
    for i, ok in enumerate(list(present) + [False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            runs.append((start, i))
            start = None
    return runs


def stability(landmarks: np.ndarray, sizes: np.ndarray, present: np.ndarray | None = None) -> Stability:
    """Jitter of a landmark track: (T, N, 2+) points, (T,) face sizes in px, (T,) bool mask.
    Differences are only taken inside runs of consecutive present frames, so a lost face does
    not count as a jump."""
    pts = np.asarray(landmarks, dtype=float)[..., :2]
    size = np.asarray(sizes, dtype=float)
    ok = np.ones(len(pts), bool) if present is None else np.asarray(present, bool)
    disp, acc = [], []
    runs = _segments(ok)
    for a, b in runs:
        # normalise the differences, not the positions: dividing positions by a per-frame size
        # would turn size noise into motion of points far from the origin
        p, s = pts[a:b], size[a:b, None, None]
        if len(p) >= 2:
            disp.append((np.linalg.norm(np.diff(p, axis=0), axis=-1) / s[1:, :, 0]).ravel())
        if len(p) >= 3:
            acc.append(((p[2:] - 2 * p[1:-1] + p[:-2]) / s[1:-1]).ravel())
    d = np.concatenate(disp) if disp else np.array([np.nan])
    ac = np.concatenate(acc) if acc else np.array([np.nan])
    return Stability(float(d.mean() * 100), float(ac.var() * 1e4), int(ok.sum()), len(runs))


def lag_frames(raw: np.ndarray, smooth: np.ndarray, max_lag: float = 5.0, step: float = 0.05) -> float:
    """How many frames `smooth` trails `raw`: the shift k minimising |smooth_t - raw_{t-k}|^2,
    with raw linearly interpolated for fractional k. raw, smooth: (T, D) flattened tracks."""
    r = np.asarray(raw, dtype=float).reshape(len(raw), -1)
    s = np.asarray(smooth, dtype=float).reshape(len(smooth), -1)
    t = np.arange(len(r), dtype=float)
    best, best_err = 0.0, np.inf
    lo = int(np.ceil(max_lag)) + 1
    for k in np.arange(0.0, max_lag + 1e-9, step):
        src = t[lo:] - k
        i0 = np.floor(src).astype(int)
        w = (src - i0)[:, None]
        shifted = r[i0] * (1 - w) + r[np.minimum(i0 + 1, len(r) - 1)] * w
        err = float(np.mean((s[lo:] - shifted) ** 2))
        if err < best_err:
            best, best_err = float(k), err
    return best


__all__ = [
    "YAW_BINS", "NMESummary", "PoseSummary", "Stability", "angle_diff",
    "euler_from_rotation", "geodesic_deg", "lag_frames", "nme", "nme_norm",
    "pose_in_range", "rotation_from_euler", "stability", "summarize_nme", "summarize_pose", "yaw_bin",
]
