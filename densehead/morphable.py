"""The Basel Face Model (3DDFA_V2's no-neck variant): mean shape, 40 identity and 10 expression
directions, triangles, and the 68 keypoint rows that sparse reconstruction uses."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

N_SHAPE = 40
N_EXPRESSION = 10
_blas_lock = threading.Lock()
_blas_limited = False


def limit_blas_to_one_thread() -> None:
    """Once per process, when a model is loaded (before any dense product): BLAS on one thread.

    The dense product is memory-bound (0.2 ms on two threads, 0.4 ms on one), but OpenBLAS's
    idle threads keep spinning afterwards and take the second core from TFLite's XNNPACK worker,
    which cost about 1 ms per frame in the benchmark. Set once, process-wide, rather than entered
    and restored around each call: from several session threads those nested enter/restore
    pairs could leave the process with the wrong setting."""
    global _blas_limited
    with _blas_lock:
        if not _blas_limited:
            threadpool_limits(limits=1, user_api="blas")
            _blas_limited = True


class MorphableModel:
    """S = u + W_shp @ shape + W_exp @ expression, one (x, y, z) per vertex, in model units."""

    def __init__(self, bfm_path: str | Path, tri_path: str | Path | None = None) -> None:
        from .checkpoint import load_pickle

        limit_blas_to_one_thread()
        data = load_pickle(bfm_path)
        mean = np.asarray(data["u"], dtype=np.float32).reshape(-1)
        basis = np.concatenate([data["w_shp"], data["w_exp"]], axis=1).astype(np.float32)
        # Coefficients-major layout makes `coeffs @ basis` one contiguous sweep over memory.
        self.mean = mean                                    # (3N,) x, y, z per vertex
        self.basis_t = np.ascontiguousarray(basis.T)        # (50, 3N)
        keys = np.asarray(data["keypoints"], dtype=np.int64)
        self.keypoint_mean = mean[keys].copy()              # (204,)
        self.keypoint_vertex_indices = keys[::3] // 3       # (68,) vertex of each landmark
        self.keypoint_basis_t = np.ascontiguousarray(basis[keys].T)  # (50, 204)
        tri = load_pickle(tri_path) if tri_path is not None else data["tri"]
        self.triangles = np.ascontiguousarray(np.asarray(tri, dtype=np.int32).T)  # (M, 3)
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
        return (self.mean + coeffs.astype(np.float32) @ self.basis_t).reshape(-1, 3)


def ncc_code(mean_shape: np.ndarray) -> np.ndarray:
    """PNCC colours of a mean shape (flat x, y, z per vertex, or (N, 3)): min-max normalised
    per axis to [0, 1], float32 (N, 3) (3DDFA_V2's ncc_code)."""
    xyz = np.asarray(mean_shape, dtype=np.float64).reshape(-1, 3)
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.ascontiguousarray((xyz - lo) / span, dtype=np.float32)


def project(camera: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (3, 4) affine camera to (K, 3) float32 points; stays in float32 (an upcast to
    float64 would double the cost on the 38,365 dense vertices)."""
    cam = camera.astype(np.float32)
    out = points @ cam[:, :3].T
    out += cam[:, 3]
    return out
