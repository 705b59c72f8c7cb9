"""Getting a frame into the one form the pipeline works on: BGR uint8, HxWx3, C-contiguous."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

MAX_PIXELS = 80_000_000  # larger images are refused instead of eating the machine's memory


class ImageError(ValueError):
    """An input that is not a usable image, with a message meant for the user."""


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """Accept uint8 BGR, grayscale or BGRA; refuse anything else with a clear message."""
    if not isinstance(frame, np.ndarray):
        raise ImageError(f"expected an image array, got {type(frame).__name__}")
    if frame.size == 0 or frame.ndim < 2 or min(frame.shape[:2]) == 0:
        raise ImageError(f"empty frame (shape {frame.shape})")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise ImageError(f"expected HxW, HxWx3 or HxWx4 pixels, got shape {frame.shape}")
    if frame.shape[0] * frame.shape[1] > MAX_PIXELS:
        raise ImageError(f"image too large ({frame.shape[1]}x{frame.shape[0]}); "
                         f"the limit is {MAX_PIXELS // 1_000_000} megapixels")
    if frame.dtype != np.uint8:  # guessing the range of float pixels would be a silent error
        raise ImageError(f"expected a uint8 image, got dtype {frame.dtype}")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(frame)


def decode_image(data: bytes, name: str = "upload") -> np.ndarray:
    """Decode image file bytes (JPEG, PNG, ...) to BGR, or raise ImageError saying why not."""
    if not data:
        raise ImageError(f"{name} is empty")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageError(f"{name} is not an image that can be read (JPEG, PNG, BMP, WebP, TIFF)")
    if image.dtype == np.uint16:  # 16-bit PNG/TIFF
        image = (image >> 8).astype(np.uint8)
    return as_bgr(image)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as BGR uint8, or raise ImageError with a message for the user."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"no such file: {path}")
    return decode_image(path.read_bytes(), path.name)
