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


# BGR: the face shown in 3D in red, the others in green, each with the text colour that reads on it
SELECTED_BOX, OTHER_BOX = (48, 48, 255), (48, 255, 48)
TEXT_ON = {SELECTED_BOX: (255, 255, 255), OTHER_BOX: (0, 0, 0)}
OUTLINE = (0, 0, 0)   # around boxes and tabs: they show on a background of their own colour
# The picture is shown about a column wide (300-450 px) whatever its size: lines and labels are
# a share of its width, so that they read there
LINE_SHARE, TEXT_SHARE = 1 / 200, 1 / 24
HERSHEY_HEIGHT = 22   # px: FONT_HERSHEY_SIMPLEX's capitals at scale 1


def detections_picture(image_bgr: np.ndarray, faces: list[Face], selected: int | None = None,
                       max_side: int = 900) -> np.ndarray:
    """The photo (downscaled for display) with a labelled box per face, drawn into its pixels:
    shown as an image it keeps its own shape at any width, where a chart kept a fixed height."""
    small, scale = fit_within(image_bgr, max_side)
    out = small.copy()
    width = out.shape[1]
    line = max(2, round(width * LINE_SHARE))
    for i, face in enumerate(faces):
        x1, y1, x2, y2 = (round(v * scale) for v in face.box[:4])
        color = SELECTED_BOX if i == selected else OTHER_BOX
        cv2.rectangle(out, (x1, y1), (x2, y2), OUTLINE, line + 2, cv2.LINE_AA)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, line, cv2.LINE_AA)
        _label(out, f"face {i}", (x1, y1), color, width * TEXT_SHARE / HERSHEY_HEIGHT)
    return out


def _label(out: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int],
           size: float) -> None:
    """`text` on a `color` tab sitting on top of a box's corner (inside the picture)."""
    font, weight = cv2.FONT_HERSHEY_SIMPLEX, max(1, round(size * 1.5))
    (w, h), base = cv2.getTextSize(text, font, size, weight)
    pad = max(2, h // 4)
    x = min(max(corner[0], 0), max(out.shape[1] - w - 2 * pad, 0))
    y = max(corner[1], h + base + 2 * pad)   # a box at the top edge gets its tab inside
    top_left, bottom_right = (x, y - h - base - 2 * pad), (x + w + 2 * pad, y)
    cv2.rectangle(out, top_left, bottom_right, color, cv2.FILLED)
    cv2.rectangle(out, top_left, bottom_right, OUTLINE, 1)
    cv2.putText(out, text, (x + pad, y - base - pad), font, size, TEXT_ON[color], weight,
                cv2.LINE_AA)
