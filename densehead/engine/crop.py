"""From a face box or earlier landmarks to the 120x120 network input, and back.

A roi is a square (x1, y1, x2, y2) in frame pixels. The crop is one affine warp that samples the
roi exactly as `cv2.resize` of the cut-out would (pixel centres), padding with black outside the
frame, so that the network sees what 3DDFA_V2 trained on. The camera the network predicts lives
in crop space (1-based x, y up); `image_camera` turns it into one that maps model space straight
to frame pixels (x right, y down, depth towards the viewer).
"""
from __future__ import annotations

import cv2
import numpy as np

from ..core.layout import INPUT_SIZE as SIZE
from ..core.options import ROI_SCALE, ROI_SHIFT


def roi_from_box(box: np.ndarray, shift: float = ROI_SHIFT, scale: float = ROI_SCALE) -> np.ndarray:
    """Square crop for a face box: centre moved down by `shift` of the box size, side `scale`x."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    size = (x2 - x1 + y2 - y1) / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + size * shift
    half = size * scale / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], dtype=np.float64)


def roi_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Square crop around 68 landmarks: side is the diagonal of their bounding square
    (3DDFA_V2's tracking crop)."""
    lo, hi = landmarks[:, :2].min(axis=0), landmarks[:, :2].max(axis=0)
    centre = (lo + hi) / 2
    half = float(np.max(hi - lo)) / 2 * np.sqrt(2)
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half],
                    dtype=np.float64)


def crop_matrix(roi: np.ndarray) -> np.ndarray:
    """2x3 affine frame -> crop that matches cv2.resize of the roi cut-out (pixel centres)."""
    k = SIZE / (roi[2] - roi[0])
    offset_x = -roi[0] * k + 0.5 * k - 0.5
    offset_y = -roi[1] * k + 0.5 * k - 0.5
    return np.array([[k, 0.0, offset_x], [0.0, k, offset_y]], dtype=np.float64)


def crop(frame: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """The network input for one roi: uint8 (1, 120, 120, 3), BGR, as the warp samples it (the
    compiled regressor normalises it itself: densehead.weights.compile)."""
    patch = cv2.warpAffine(frame, crop_matrix(roi), (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return patch[None]


def image_camera(camera: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """(3, 4) camera: model space -> frame pixels x, y and depth.

    Crop space is 1-based with y up (3DDFA_V2 trained on MATLAB data): x_img = k (x - 1) + x1,
    y_img = k (SIZE - y) + y1, depth = k z about the head's origin.
    """
    k = (roi[2] - roi[0]) / SIZE
    out = np.empty((3, 4), dtype=np.float64)
    out[0] = k * camera[0]
    out[0, 3] += roi[0] - k
    out[1] = -k * camera[1]
    out[1, 3] += roi[1] + k * SIZE
    out[2, :3] = k * camera[2, :3]
    out[2, 3] = 0.0
    return out


def crop_camera(img_camera: np.ndarray, roi: np.ndarray, depth_offset: float) -> np.ndarray:
    """Inverse of `image_camera` (depth_offset is the crop camera's own z offset, which the
    image camera drops)."""
    k = (roi[2] - roi[0]) / SIZE
    out = np.empty((3, 4), dtype=np.float64)
    out[0] = img_camera[0] / k
    out[0, 3] = (img_camera[0, 3] - roi[0] + k) / k
    out[1] = -img_camera[1] / k
    out[1, 3] = (img_camera[1, 3] - roi[1] - k * SIZE) / -k
    out[2, :3] = img_camera[2, :3] / k
    out[2, 3] = depth_offset
    return out
