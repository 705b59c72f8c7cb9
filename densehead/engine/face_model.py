"""The Basel Face Model (3DDFA_V2's no-neck variant): mean shape, 40 identity and 10 expression
directions, triangles, and the 68 keypoint rows that sparse reconstruction uses."""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from ..core.layout import N_EXPRESSION, N_SHAPE
from ..weights.assets import ModelFileError
from .dense_shape import FloatBasis, HalfBasis, dense_basis

_blas_lock = threading.Lock()
_blas_limited = False


def limit_blas_to_one_thread() -> None:
    """Once per process, when a model is loaded (before any dense product): BLAS on one thread.

    The dense product is small and memory-bound, so a second thread saves less than it costs:
    OpenBLAS's idle threads keep spinning afterwards and take the second core from TFLite's
    XNNPACK worker (docs/measurements.md, Speed of the engine). Set once, process-wide, rather
    than entered and restored around each call: from several session threads those nested
    enter/restore pairs could leave the process with the wrong setting."""
    global _blas_limited
    with _blas_lock:
        if not _blas_limited:
            threadpool_limits(limits=1, user_api="blas")
            _blas_limited = True


class MorphableModel:
    """S = u + W_shp @ shape + W_exp @ expression, one (x, y, z) per vertex, in model units."""

    def __init__(self, bfm_path: str | Path, tri_path: str | Path | None = None) -> None:
        from ..weights.checkpoint import load_pickle

        limit_blas_to_one_thread()
        data = load_pickle(bfm_path)
        mean, basis, keys = checked_bfm(data, Path(bfm_path))
        self.mean = mean                                    # (3N,) x, y, z per vertex
        self._dense = dense_basis(mean, basis)              # mean + coeffs @ basis, (3N,)
        self._every: dict[int, FloatBasis | HalfBasis] = {}  # dense_points' bases, per step
        self.keypoint_mean = mean[keys].copy()              # (204,)
        self.keypoint_vertex_indices = keys[::3] // 3       # (68,) vertex of each landmark
        self.keypoint_basis_t = np.ascontiguousarray(basis[keys].T)  # (50, 204)
        tri_source = Path(tri_path if tri_path is not None else bfm_path)
        tri = load_pickle(tri_path) if tri_path is not None else data.get("tri")
        self.triangles = _checked_triangles(tri, self.n_vertices, tri_source)  # (M, 3)
        self._pncc: np.ndarray | None = None

    @property
    def n_vertices(self) -> int:
        return self.mean.size // 3

    @property
    def centroid(self) -> np.ndarray:
        """Centre of the mean face, model units; the pose cube is built around it."""
        return self.mean.reshape(-1, 3).mean(axis=0)

    @property
    def pncc_colors(self) -> np.ndarray:
        """(N, 3) float32 in [0, 1]: the mean shape min-max normalised per axis (NCC code)."""
        if self._pncc is None:
            self._pncc = ncc_code(self.mean)
        return self._pncc

    def sparse(self, coeffs: np.ndarray) -> np.ndarray:
        """(68, 3) model-space keypoints for the 50 shape+expression coefficients."""
        return (self.keypoint_mean + coeffs.astype(np.float32) @ self.keypoint_basis_t).reshape(-1, 3)

    def dense(self, coeffs: np.ndarray) -> np.ndarray:
        """(N, 3) model-space vertices for the 50 shape+expression coefficients."""
        return self._dense(coeffs).reshape(-1, 3)

    def dense_points(self, coeffs: np.ndarray, step: int) -> np.ndarray:
        """dense(coeffs)[::step], from the basis rows of those vertices only: a point overlay
        reads a step-th of the basis."""
        basis = self._every.get(step)
        if basis is None:   # built once per step; a race builds it twice, harmlessly
            rows = np.arange(0, self.n_vertices, step)[:, None] * 3 + np.arange(3)
            basis = self._every[step] = self._dense.rows(rows.ravel())
        return basis(coeffs).reshape(-1, 3)


def checked_bfm(data: object, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (3N,) float32, the basis (3N, 50) float32 (40 shape directions, then 10 of
    expression: the order of the regressor's coefficients) and the 204 keypoint rows, after
    checking that the file holds them; ModelFileError naming the file if not."""
    needed = ("u", "w_shp", "w_exp", "keypoints")
    if not isinstance(data, dict) or not all(k in data for k in needed):
        got = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise ModelFileError(path, f"expected a dict with {', '.join(needed)}; got {got}")
    arrays = [data[k] for k in needed]
    if not all(isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.number) for a in arrays):
        raise ModelFileError(path, "u, w_shp, w_exp and keypoints must be numeric arrays")
    u, w_shp, w_exp, keys = arrays
    rows = u.size
    if (rows == 0 or rows % 3 or w_shp.shape != (rows, N_SHAPE)
            or w_exp.shape != (rows, N_EXPRESSION)):
        raise ModelFileError(path, f"inconsistent shapes: u {u.shape}, w_shp {w_shp.shape}, "
                             f"w_exp {w_exp.shape} (expected 3N, (3N, {N_SHAPE}), "
                             f"(3N, {N_EXPRESSION}))")
    if not all(np.isfinite(a).all() for a in (u, w_shp, w_exp)):
        raise ModelFileError(path, "the mean shape or a basis holds NaN or infinite values")
    keys = keys.reshape(-1)
    if (keys.size != 204 or not np.issubdtype(keys.dtype, np.integer)
            or keys.min() < 0 or keys.max() >= rows):
        raise ModelFileError(path, f"keypoints must be 204 integer row indices below {rows}")
    basis = np.concatenate([w_shp, w_exp], axis=1).astype(np.float32)
    return np.asarray(u, dtype=np.float32).reshape(-1), basis, keys.astype(np.int64)


def _checked_triangles(tri: object, n_vertices: int, path: Path) -> np.ndarray:
    """(M, 3) int32 from the (3, M) integer array of the file, every index a vertex."""
    if not (isinstance(tri, np.ndarray) and tri.ndim == 2 and tri.shape[0] == 3
            and tri.shape[1] > 0 and np.issubdtype(tri.dtype, np.integer)):
        got = f"shape {tri.shape}, {tri.dtype}" if isinstance(tri, np.ndarray) else \
            type(tri).__name__
        raise ModelFileError(path, f"triangles must be a (3, M) integer array; got {got}")
    if tri.min() < 0 or tri.max() >= n_vertices:
        raise ModelFileError(path, f"triangle indices must lie in [0, {n_vertices})")
    return np.ascontiguousarray(tri.astype(np.int32).T)


def ncc_code(mean_shape: np.ndarray) -> np.ndarray:
    """PNCC colours of a mean shape (flat x, y, z per vertex, or (N, 3)): min-max normalised
    per axis to [0, 1], float32 (N, 3) (3DDFA_V2's ncc_code)."""
    xyz = np.asarray(mean_shape, dtype=np.float64).reshape(-1, 3)
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.ascontiguousarray((xyz - lo) / span, dtype=np.float32)


def project(camera: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (3, 4) affine camera to (K, 3) points: float32 (K, 3). OpenCV's transform does it
    in one vectorised pass over the points, where numpy's matmul with an inner size of 3 runs a
    plain loop (much slower on the 38,365 dense vertices)."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    if len(points) == 0:
        return points.reshape(0, 3)
    out = cv2.transform(points.reshape(-1, 1, 3), camera.astype(np.float32))
    return out.reshape(-1, 3)
