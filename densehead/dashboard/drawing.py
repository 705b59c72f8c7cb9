"""Overlays for the pages, with a visible fallback when the C++ renderer is missing."""
from __future__ import annotations

import cv2
import numpy as np

from ..core.face import Face
from ..core.frames import fit_within
from ..engine.face_model import MorphableModel
from ..render import draw

FALLBACK_MODE = "dense"


def draw_with_fallback(frame: np.ndarray, faces: list[Face], mode: str,
                       model: MorphableModel, in_place: bool = False) -> tuple[np.ndarray, str]:
    """(picture, note): `mode` drawn; when the renderer is missing the dense points instead,
    with the reason written on the frame itself, so the fallback is visible, never silent.
    `in_place`: as in `draw.overlay`."""
    try:
        return draw.overlay(frame, faces, mode, model, in_place=in_place), ""
    except ImportError as exc:
        if mode not in draw.RENDERED:
            raise
        note = f"{mode} needs the C++ renderer: showing {FALLBACK_MODE} points"
        out = draw.overlay(frame, faces, FALLBACK_MODE, model)
        cv2.putText(out, note, (8, out.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 255), 1, cv2.LINE_AA)
        return out, f"{note} ({exc})"


SELECTED_BOX, OTHER_BOX = (48, 48, 255), (48, 255, 48)   # BGR: the face shown in 3D is red


def detections_picture(image_bgr: np.ndarray, faces: list[Face], selected: int | None = None,
                       max_side: int = 900) -> np.ndarray:
    """The photo (downscaled for display) with a labelled box per face, drawn into its pixels:
    shown as an image it keeps its own shape at any width, where a chart kept a fixed height."""
    small, scale = fit_within(image_bgr, max_side)
    out = small.copy()
    line = max(2, round(max(out.shape[:2]) / 300))
    for i, face in enumerate(faces):
        x1, y1, x2, y2 = (round(v * scale) for v in face.box[:4])
        color = SELECTED_BOX if i == selected else OTHER_BOX
        cv2.rectangle(out, (x1, y1), (x2, y2), color, line, cv2.LINE_AA)
        _label(out, f"face {i}", (x1, y1), color, line)
    return out


def _label(out: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int],
           line: int) -> None:
    """`text` in white on a `color` tab sitting on top of a box's corner (inside the picture)."""
    font, size, weight = cv2.FONT_HERSHEY_SIMPLEX, 0.35 * line, max(1, line // 2)
    (w, h), base = cv2.getTextSize(text, font, size, weight)
    pad = line
    x = min(max(corner[0], 0), max(out.shape[1] - w - 2 * pad, 0))
    y = max(corner[1], h + base + 2 * pad)   # a box at the top edge gets its tab inside
    cv2.rectangle(out, (x, y - h - base - 2 * pad), (x + w + 2 * pad, y), color, cv2.FILLED)
    cv2.putText(out, text, (x + pad, y - base - pad), font, size, (255, 255, 255), weight,
                cv2.LINE_AA)
