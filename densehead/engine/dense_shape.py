"""The dense face shape, mean + coefficients @ basis (115,095 numbers from 50 coefficients).

The product reads the whole basis for every face, so its time is the time to read it: 23 MB in
float32. Where the CPU converts half precision in its vector units (x86-64 with AVX2 and F16C)
the basis is kept in half precision, 11.5 MB, and multiplied by csrc/face_basis.cpp; elsewhere
numpy multiplies the float32 basis. Half precision moves a vertex by at most about 2e-5 of the
face's extent, under a hundredth of a pixel on the sample photos (docs/measurements.md)."""
from __future__ import annotations

import numpy as np

from ._face_basis import dense_shape, has_fast_path

BLOCK = 32  # outputs per block of the half-precision layout (kBlock in csrc/face_basis.cpp)


class FloatBasis:
    """numpy's float32 product."""

    def __init__(self, mean: np.ndarray, basis: np.ndarray) -> None:
        self.mean = mean.astype(np.float32)
        # coefficients-major: `coeffs @ basis_t` is one contiguous sweep over memory
        self.basis_t = np.ascontiguousarray(basis.T, dtype=np.float32)

    def __call__(self, coeffs: np.ndarray) -> np.ndarray:
        return self.mean + coeffs.astype(np.float32) @ self.basis_t

    def rows(self, index: np.ndarray) -> FloatBasis:
        """The product for the outputs `index` only."""
        return FloatBasis(self.mean[index], self.basis_t[:, index].T)


class HalfBasis:
    """The basis in half precision, in blocks of BLOCK outputs: block g holds, coefficient by
    coefficient, the basis values of outputs BLOCK*g .. BLOCK*g + BLOCK-1 (one sequential read)."""

    def __init__(self, mean: np.ndarray, basis: np.ndarray) -> None:
        rows, k = basis.shape
        self.n_rows = rows
        padded = -(-rows // BLOCK) * BLOCK
        self.mean = np.zeros(padded, np.float32)
        self.mean[:rows] = mean
        half = np.zeros((padded, k), np.float16)
        half[:rows] = basis
        blocks = half.reshape(-1, BLOCK, k).transpose(0, 2, 1)
        self.blocks = np.ascontiguousarray(blocks).view(np.uint16)   # (blocks, K, BLOCK)

    def __call__(self, coeffs: np.ndarray, portable: bool = False) -> np.ndarray:
        out = dense_shape(self.mean, self.blocks, coeffs.astype(np.float32), portable)
        return out[:self.n_rows]

    def rows(self, index: np.ndarray) -> HalfBasis:
        """The product for the outputs `index` only, from the same half-precision values (so
        each output comes out bit for bit as in the whole product)."""
        half = self.blocks.view(np.float16).transpose(0, 2, 1).reshape(-1, self.blocks.shape[1])
        return HalfBasis(self.mean[index], half[index].astype(np.float32))


def dense_basis(mean: np.ndarray, basis: np.ndarray) -> FloatBasis | HalfBasis:
    """The faster product on this CPU, for a (3N,) mean and a (3N, K) basis."""
    return HalfBasis(mean, basis) if has_fast_path() else FloatBasis(mean, basis)
