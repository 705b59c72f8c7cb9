"""Overlays for the pages, with a visible fallback when the C++ renderer is missing."""
from __future__ import annotations

import cv2
import numpy as np

from ..core.face import Face
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
