"""The one form of a frame every stage works on: BGR uint8, HxWx3, C-contiguous."""
from __future__ import annotations

import cv2
import numpy as np

from .errors import ImageError

MAX_PIXELS = 80_000_000  # larger images are refused instead of eating the machine's memory


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """Accept uint8 BGR, grayscale or BGRA; refuse anything else with a clear message."""
    if not isinstance(frame, np.ndarray):
        raise ImageError(f"expected an image array, got {type(frame).__name__}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise ImageError(f"expected HxW, HxWx3 or HxWx4 pixels, got shape {frame.shape}")
    if frame.size == 0:
        raise ImageError(f"empty frame (shape {frame.shape})")
    if frame.shape[0] * frame.shape[1] > MAX_PIXELS:
        raise ImageError(f"image too large ({frame.shape[1]}x{frame.shape[0]}); "
                         f"the limit is {MAX_PIXELS // 1_000_000} megapixels")
    if frame.dtype != np.uint8:  # guessing the range of float pixels would be a silent error
        hint = (": convert it first, e.g. (image >> 8).astype(np.uint8) for 16-bit pixels"
                if frame.dtype == np.uint16 else "")
        raise ImageError(f"expected a uint8 image, got dtype {frame.dtype}{hint}")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(frame)


def fit_within(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """(the image shrunk, by area averaging, so that its longer side is at most `max_side`, the
    scale applied); an image that fits is returned as it is, with scale 1."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image, 1.0
    s = max_side / max(h, w)
    return cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA), s
