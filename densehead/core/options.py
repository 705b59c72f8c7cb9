"""The settings of a pipeline and of a tracker: frozen, validated once, shared freely.

Like MediaPipe's task options, one value object is what the pipeline, the tracker, the command
line and the dashboard pages all pass around. A change of setting is a new object (see
`Pipeline.with_options`), so a thread that took one at the start of a frame keeps a consistent
set for the whole frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from .errors import OptionsError

# The regressors: 3DDFA_V2's MobileNetV1 at widen factor 0.5 and 1.0; "-int8" is the same
# checkpoint compiled with int8 convolutions. "auto" is the faster mb05 graph on this machine
# (densehead.engine.regressor_choice); DENSEHEAD_REGRESSOR forces a name wherever "auto" is used.
INT8 = "-int8"
AUTO = "auto"
# The float regressor wherever none is named: "auto"'s float graph, the model files `fetch`
# gets by default, the int8 calibration's.
DEFAULT_FLOAT_REGRESSOR = "mb05"
REGRESSOR_NAMES = (DEFAULT_FLOAT_REGRESSOR, DEFAULT_FLOAT_REGRESSOR + INT8, "mb1")
REGRESSOR_ENV = "DENSEHEAD_REGRESSOR"
# Box -> crop for RFB-320 boxes, measured with `densehead evaluate` on the AFLW2000-3D samples
# (docs/measurements.md, Accuracy). 3DDFA_V2's rule for its FaceBoxes boxes was 0.14 / 1.58;
# RFB-320's boxes include the forehead, so its crop sits higher and tighter.
ROI_SHIFT = 0.06
ROI_SCALE = 1.40
# Faces lying sideways (densehead.engine.turns): degrees of tilt away from upright in the turn a
# face was fitted in, past which it is fitted again in the turn that stands it nearest upright.
# Between what upright faces tilt and what faces lying sideways do (docs/measurements.md), with
# a margin past 45 so that a face tilted about that far does not switch to and fro on video.
TURN_AFTER_TILT = 55.0


# PipelineOptions' fields that change how fast the answers come, never the answers
SPEED_ONLY = ("num_threads", "adapt_threads")


@dataclass(frozen=True)
class PipelineOptions:
    regressor: str = AUTO            # "auto", "mb05", "mb05-int8" or "mb1" (which network)
    num_threads: int = 2             # TFLite threads per model (at most, with adapt_threads)
    # with num_threads > 1, each call on 1 thread or num_threads, whichever has been faster
    # lately (engine.thread_choice): a busy machine makes the threads wait for each other
    adapt_threads: bool = True
    score_threshold: float = 0.7     # detector confidence a face needs
    iou_threshold: float = 0.3       # non-maximum suppression overlap
    max_faces: int = 8               # at most this many faces per frame, best scores first
    min_face_size: float = 20.0      # detector boxes smaller than this (px) are dropped
    roi_shift: float = ROI_SHIFT     # box -> crop: centre moved down, in box sizes
    roi_scale: float = ROI_SCALE     # box -> crop: side, in box sizes
    refine: bool = True              # second pass on the crop the first landmarks give
    flip_average: bool = False       # also run the mirrored crop and average (test-time trick)
    mirror_fallback: bool = True     # no face found: look at the mirrored frame (engine.mirror_fallback)
    # faces lying sideways (engine.turns): nothing found there either, the frame turned by
    # +-90 degrees; a face tilted past TURN_AFTER_TILT fitted in the turn that stands it upright
    rotated_fallback: bool = True

    def __post_init__(self) -> None:
        if self.regressor not in (AUTO, *REGRESSOR_NAMES):
            raise OptionsError("regressor", f"{self.regressor!r} is not known; choose one of "
                               f"{', '.join((AUTO, *REGRESSOR_NAMES))}")
        _check_int(self, "num_threads", 1)
        _check_int(self, "max_faces", 1)
        _check_fraction(self, "score_threshold")
        _check_fraction(self, "iou_threshold")
        _check_positive(self, "roi_scale")
        _check_finite(self, "roi_shift")
        _check_finite(self, "min_face_size")

    @property
    def model_key(self) -> tuple[str, int, bool]:
        """What the loaded models depend on; every other option applies per call."""
        return self.regressor, self.num_threads, self.adapt_threads

    def replace(self, **changes: Any) -> "PipelineOptions":
        return replace(self, **changes)


@dataclass(frozen=True)
class TrackerOptions:
    redetect_every: int = 10         # run the detector every N frames (and when a track is lost)
    smoothing: bool = True           # One Euro on the frame-space camera and the coefficients
    min_cutoff: float = 2.0          # One Euro cut-off when still, Hz (lower: smoother, more lag)
    beta: float = 2.0                # how fast the cut-off rises with speed
    d_cutoff: float = 1.0            # cut-off of the speed estimate, Hz
    max_misses: int = 2              # detection rounds a track may miss before it ends
    match_iou: float = 0.3           # overlap that pairs a detection with a track

    def __post_init__(self) -> None:
        _check_int(self, "redetect_every", 1)
        _check_int(self, "max_misses", 0)
        _check_positive(self, "min_cutoff")
        _check_positive(self, "d_cutoff")
        if _check_finite(self, "beta") < 0:   # the cut-off would fall as the face moves faster
            raise OptionsError("beta", f"must be >= 0, got {self.beta!r}")
        _check_fraction(self, "match_iou")

    def replace(self, **changes: Any) -> "TrackerOptions":
        return replace(self, **changes)


def _check_int(options: object, name: str, minimum: int) -> None:
    value = getattr(options, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise OptionsError(name, f"must be a whole number >= {minimum}, got {value!r}")


def _check_finite(options: object, name: str) -> float:
    value = getattr(options, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionsError(name, f"must be a finite number, got {value!r}")
    return float(value)


def _check_positive(options: object, name: str) -> None:
    if _check_finite(options, name) <= 0:
        raise OptionsError(name, f"must be > 0, got {getattr(options, name)!r}")


def _check_fraction(options: object, name: str) -> None:
    value = _check_finite(options, name)
    if not 0.0 < value <= 1.0:
        raise OptionsError(name, f"must be in (0, 1], got {value!r}")
