"""The regressor's contract and the 68-point facts: what every stage agrees on.

The regressor takes a 120x120 BGR crop and gives 62 parameters: a 3x4 affine camera (12), then
40 identity (shape) and 10 expression coefficients of the morphable model, in that order.
"""
from __future__ import annotations

import numpy as np

INPUT_SIZE = 120          # side of the square crop the regressor takes, in pixels
N_CAMERA = 12             # the 3x4 camera, row-major
N_SHAPE = 40
N_EXPRESSION = 10
N_PARAMS = N_CAMERA + N_SHAPE + N_EXPRESSION
CAMERA = slice(0, N_CAMERA)
SHAPE = slice(N_CAMERA, N_CAMERA + N_SHAPE)
EXPRESSION = slice(N_CAMERA + N_SHAPE, N_PARAMS)
COEFFICIENTS = slice(N_CAMERA, N_PARAMS)   # shape then expression: what the face model takes

N_LANDMARKS = 68
# iBUG 68-point order: the index each landmark takes when the face is mirrored left-right.
MIRROR_68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30]
    + [35, 34, 33, 32, 31] + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])


def camera_of(params: np.ndarray) -> np.ndarray:
    """The (3, 4) camera of a parameter vector."""
    return params[CAMERA].reshape(3, 4)
