"""A second look when the detector finds no face: the mirrored frame, confirmed by the landmark fit.

Measured on the 61 AFLW2000-3D samples (issue 12): RFB-320 misses three faces, all turned
72-105 deg. The detector is not mirror-symmetric: those faces score 0.56-0.63 in the frame
but 0.95-1.00 in the mirrored frame, which finds them at the detector's own threshold.
A zoomed-in centre crop does not find them; a zoomed-out frame does but loses others (one
face drops from 0.96 to 0.10): these faces are large, not small.

The mirrored pass could bring its own false positives, so each of its faces must pass a check
from the regressor: the fit on the crop and the fit on the mirrored crop (mirrored back) agree
on a face, not on background. Their mean landmark distance, in face sizes, is at most 0.05 on
the AFLW and photo faces (median 0.015) and 0.097-0.44 on the background boxes the mirrored
frame scores above the threshold; 0.07 sits between. Faces of 20-30 px (the background of
orlando_bloom.avi) fit worse (0.05-0.12), so some of those are turned away.

The fits the check makes are the ones the face is then built from (`MirrorFit`), so a face
found here costs three regressor runs, not six. The first pass is unchanged and costs nothing
more: the fallback runs only when it finds nothing.

When the mirrored frame shows nothing either, or only faces lying sideways (their fit tilted
far, densehead.engine.turns), the frame turned a quarter each way (np.rot90) is looked at: the
detector and the network were trained on upright faces, and a picture with one face lying
sideways usually has its other faces lying so too. Its candidates pass the same fit check; where both turns show the same face (upright in
one, upside down in the other), the fit that agrees best with its mirror is kept. The face is
fitted where it stands upright and put back on the frame: points, box and crop turned back, the
camera expressed for that crop, the quarter turn added to the pose.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import cv2
import numpy as np

from ..core.boxes import iou
from ..core.frames import as_bgr
from ..core.layout import INPUT_SIZE, MIRROR_68, camera_of
from ..core.options import PipelineOptions
from . import crop
from .detector import Detections, FaceDetector
from .pose import decompose
from .turns import (
    QUARTER_TURNS,
    SAME_FACE_IOU,
    turn_for,
    turn_frame,
    unturn_box,
)

MAX_MIRROR_DISAGREEMENT = 0.07  # mean landmark distance / face size, fit vs mirrored fit


class LandmarkFit(Protocol):
    """What the check needs from the pipeline: the box -> crop rule (in its options) and the
    regressor."""

    options: PipelineOptions

    def regress(self, frame: np.ndarray, roi: np.ndarray, times: object = None,
                mirror: bool = False) -> np.ndarray: ...

    def landmarks(self, params: np.ndarray, roi: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class MirrorFit:
    """One candidate face of the mirrored frame and the fits that judged it."""
    box: np.ndarray              # (4,) in frame pixels
    score: float                 # the detector's score in the mirrored frame
    roi: np.ndarray              # the refined crop (box -> crop -> landmarks -> crop)
    params: np.ndarray           # (62,) the fit on that crop
    mirrored_params: np.ndarray  # (62,) the fit on the mirrored crop
    disagreement: float          # mean landmark distance between the two, in face sizes
    quarter_turns: int = 0       # the frame was turned by np.rot90(frame, k) for it (0: not)

    @property
    def lying_sideways(self) -> bool:
        """Whether the fit shows the face tilted far enough to be fitted in a turned frame."""
        return turn_for(decompose(camera_of(self.params)).rotation) != 0

    def frame_box(self, frame_shape: tuple[int, ...]) -> np.ndarray:
        """The box in the frame's pixels."""
        return unturn_box(self.box, self.quarter_turns, frame_shape)


def find_faces(detector: FaceDetector, frame: np.ndarray, fit: LandmarkFit | None = None,
               mirrored: bool = True, turned: bool = False
               ) -> tuple[Detections, list[MirrorFit] | None]:
    """(faces, fits): the detector's faces and None; when it finds none and `fit` is given, the
    confirmed faces of the mirrored frame (`mirrored`), or when that shows none either, of the
    frame turned a quarter either way (`turned`), and their fits."""
    frame = as_bgr(frame)
    found = detector(frame)
    if len(found.boxes) or fit is None:
        return found, None
    confirmed = mirrored_pass(detector, frame, fit) if mirrored else []
    if turned:   # a face lying sideways is the turned pass's to find, with the others lying so
        confirmed = [f for f in confirmed if not f.lying_sideways]
    if not confirmed and turned:
        confirmed = turned_pass(detector, frame, fit)
    boxes = np.array([f.frame_box(frame.shape) for f in confirmed], np.float32).reshape(-1, 4)
    scores = np.array([f.score for f in confirmed], dtype=np.float32)
    return Detections(boxes, scores), confirmed


def mirrored_pass(detector: FaceDetector, frame: np.ndarray, fit: LandmarkFit) -> list[MirrorFit]:
    """Faces the detector finds in the mirrored frame (boxes in frame pixels) that the fit
    confirms, best first."""
    boxes, scores = detector(cv2.flip(frame, 1))   # one pass, not numpy's strided copy
    boxes = boxes.copy()
    boxes[:, [0, 2]] = frame.shape[1] - boxes[:, [2, 0]]
    fits = [fit_both_ways(fit, frame, box, float(score)) for box, score in zip(boxes, scores)]
    return [f for f in fits if f.disagreement <= MAX_MIRROR_DISAGREEMENT]


def turned_pass(detector: FaceDetector, frame: np.ndarray, fit: LandmarkFit) -> list[MirrorFit]:
    """Faces the detector finds in the frame turned a quarter either way that the fit confirms,
    one per face (the best agreeing turn), best first; their boxes and fits are in the turned
    frame's pixels (MirrorFit.quarter_turns says which)."""
    fits = []
    for k in QUARTER_TURNS:
        turned = turn_frame(frame, k)
        boxes, scores = detector(turned)
        fits += [replace(fit_both_ways(fit, turned, box, float(score)), quarter_turns=k)
                 for box, score in zip(boxes, scores)]
    kept: list[MirrorFit] = []
    for f in sorted(fits, key=lambda f: f.disagreement):
        box = f.frame_box(frame.shape)
        if f.disagreement <= MAX_MIRROR_DISAGREEMENT and all(
                iou(box, k.frame_box(frame.shape)) < SAME_FACE_IOU for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: -f.score)


def fit_both_ways(fit: LandmarkFit, frame: np.ndarray, box: np.ndarray,
                  score: float = 1.0) -> MirrorFit:
    """The fit on the face's refined crop (the one the pipeline would use) and on the mirrored
    crop, and how far their landmarks lie apart: mean distance over sqrt(w * h) of the landmark
    box."""
    roi = crop.roi_from_box(box, fit.options.roi_shift, fit.options.roi_scale)
    roi = crop.roi_from_landmarks(fit.landmarks(fit.regress(frame, roi), roi))
    params = fit.regress(frame, roi)
    mirrored_params = fit.regress(frame, roi, mirror=True)
    points = fit.landmarks(params, roi)[:, :2]
    mirrored = unmirror(fit.landmarks(mirrored_params, roi), roi)[:, :2]
    size = float(np.sqrt(np.prod(np.maximum(np.ptp(points, axis=0), 1e-6))))
    disagreement = float(np.linalg.norm(points - mirrored, axis=1).mean() / size)
    return MirrorFit(np.asarray(box, dtype=np.float32), score, roi, params, mirrored_params,
                     disagreement)


def unmirror(points: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """Landmarks fitted on the mirrored crop of `roi`, put back on the unmirrored face: x flips
    about the crop (its column c is column INPUT_SIZE-1-c) and the 68 points swap sides."""
    out = np.array(points, dtype=np.float64)
    x1, x2 = roi[0], roi[2]
    out[:, 0] = x1 + x2 - (x2 - x1) / INPUT_SIZE - out[:, 0]
    return out[MIRROR_68]
