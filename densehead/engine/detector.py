"""Face detection with UltraFace RFB-320 (TFLite, from 1996scarlet/Dense-Head-Pose-Estimation).

What the graph expects and returns was established by inspecting the .tflite and by experiment on
the real samples (AFLW2000-3D crops with ground-truth boxes, the photos and the videos):

- input float32 (1, 240, 320, 3), RGB, (x - 127) / 128. The graph has no normalisation op (its
  first op is a PAD on `input_1`); [0, 1] or raw pixels lose many small faces. The network is
  nearly colour-order blind, but RGB scores small faces higher than BGR in a paired comparison
  on AFLW faces (docs/measurements.md, Accuracy), as in the original UltraFace training code.
  The pipeline runs the graph densehead rewrites from it (densehead.weights.detector_graph),
  which takes the uint8 BGR letterbox as it is and normalises it itself; this class runs either.
- outputs: 'Identity' (1, 4420, 4) raw SSD regressions against the UltraFace priors (the graph
  ends in RESHAPE + CONCATENATION of the conv heads, no decoding), 'Identity_1' (1, 4420, 2)
  softmax of [background, face].
- the frame is letterboxed (aspect kept, padded with the value that normalises to ~0): on the
  square AFLW images this gives the same mean IoU as a plain stretch but a steadier box scale
  (docs/measurements.md, Accuracy), which the roi mapping downstream relies on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..core.frames import as_bgr
from ..core.options import PipelineOptions
from ..weights.assets import ModelFileError
from ..weights.detector_graph import PIXEL_MEAN, PIXEL_SCALE
from .thread_choice import make_runner

INPUT_W, INPUT_H = 320, 240
STRIDES = (8, 16, 32, 64)
MIN_SIZES = ((10, 16, 24), (32, 48), (64, 96), (128, 192, 256))
CENTER_VARIANCE, SIZE_VARIANCE = 0.1, 0.2
PAD_VALUE = PIXEL_MEAN  # normalises to 0, the network's "nothing here"
_DEFAULTS = PipelineOptions()


class Detections(NamedTuple):
    """Boxes x1, y1, x2, y2 in frame pixels (K, 4) and face scores (K,), best first.
    A NamedTuple so that `boxes, scores = det(frame)` works."""

    boxes: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class Letterbox:
    """Where the frame sits inside the network input: input = frame * (sx, sy) + (dx, dy).
    sx and sy differ from each other by the rounding of the resized size."""

    sx: float
    sy: float
    dx: int
    dy: int


def ultraface_priors(width: int = INPUT_W, height: int = INPUT_H) -> np.ndarray:
    """Anchor boxes (N, 4) as cx, cy, w, h in [0, 1], in the order the heads are flattened:
    scale by scale, then row, column, anchor size (NHWC reshape of each head)."""
    rows = []
    for stride, sizes in zip(STRIDES, MIN_SIZES):
        fw, fh = int(np.ceil(width / stride)), int(np.ceil(height / stride))
        ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        cx = (xs.ravel() + 0.5) * stride / width
        cy = (ys.ravel() + 0.5) * stride / height
        per_cell = np.array([[s / width, s / height] for s in sizes], dtype=np.float64)
        # anchor size varies fastest within a cell
        centers = np.repeat(np.stack([cx, cy], 1), len(sizes), axis=0)
        wh = np.tile(per_cell, (fw * fh, 1))
        rows.append(np.concatenate([centers, wh], 1))
    return np.clip(np.concatenate(rows), 0.0, 1.0).astype(np.float32)


def decode_boxes(loc: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """SSD decoding of regressions (N, 4) into corner boxes x1, y1, x2, y2 in [0, 1] units."""
    centers = priors[:, :2] + loc[:, :2] * CENTER_VARIANCE * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(loc[:, 2:] * SIZE_VARIANCE)
    return np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1)


def letterbox(frame_bgr: np.ndarray) -> tuple[np.ndarray, Letterbox]:
    """The letterboxed frame as uint8 BGR (1, 240, 320, 3), the rewritten graph's input, and
    where the frame went."""
    h, w = frame_bgr.shape[:2]
    scale = min(INPUT_W / w, INPUT_H / h)
    nw = min(INPUT_W, max(1, round(w * scale)))
    nh = min(INPUT_H, max(1, round(h * scale)))
    resized, (used_w, used_h) = _shrink(frame_bgr, nw, nh)
    dx, dy = (INPUT_W - nw) // 2, (INPUT_H - nh) // 2
    canvas = cv2.copyMakeBorder(resized, dy, INPUT_H - nh - dy, dx, INPUT_W - nw - dx,
                                cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return canvas[None], Letterbox(sx=nw / used_w, sy=nh / used_h, dx=dx, dy=dy)


def _shrink(frame_bgr: np.ndarray, nw: int, nh: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The frame resized to (nw, nh) (area averaging down, bilinear up), and the width and
    height of the part of it that was used.

    OpenCV's area resize is fast only for a whole-number factor, several times slower otherwise
    (docs/measurements.md, Detection). A large frame is therefore first averaged down by the
    largest whole factor k (its last w % k columns and h % k rows, fewer than k pixels, are left
    out), and the area resize does the rest, less than 2x, on the small picture. Frames halved
    (640x480) and under twice the input come out as before."""
    h, w = frame_bgr.shape[:2]
    k = min(w // nw, h // nh)
    if k >= 2:
        w, h = w // k * k, h // k * k
        frame_bgr = _average_blocks(frame_bgr[:h, :w], k)
    if frame_bgr.shape[:2] != (nh, nw):
        interp = cv2.INTER_AREA if nw < frame_bgr.shape[1] else cv2.INTER_LINEAR
        frame_bgr = cv2.resize(frame_bgr, (nw, nh), interpolation=interp)
    return frame_bgr, (w, h)


def _average_blocks(frame_bgr: np.ndarray, k: int) -> np.ndarray:
    """The mean of each k x k block (the frame's sides are multiples of k): halved while k is
    even, OpenCV's halving being vectorised where its other whole factors are not
    (docs/measurements.md, HD frames), then the odd rest in one step. Each step rounds to whole
    grey levels: the result is within half a level per step of the exact mean."""
    while k % 2 == 0:
        h, w = frame_bgr.shape[:2]
        frame_bgr = cv2.resize(frame_bgr, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        k //= 2
    if k > 1:
        h, w = frame_bgr.shape[:2]
        frame_bgr = cv2.resize(frame_bgr, (w // k, h // k), interpolation=cv2.INTER_AREA)
    return frame_bgr


def normalise(canvas_bgr: np.ndarray) -> np.ndarray:
    """The source graph's input: the letterbox as float32 RGB, (x - 127) / 128."""
    rgb = cv2.cvtColor(canvas_bgr[0], cv2.COLOR_BGR2RGB)
    x = np.subtract(rgb, np.float32(PIXEL_MEAN), dtype=np.float32)
    x *= np.float32(PIXEL_SCALE)
    return x[None]


class FaceDetector:
    """UltraFace RFB-320. `det(frame_bgr)` returns Detections(boxes, scores), best first.
    Thread-safe: the only shared state is the network, whose runner serialises its calls."""

    def __init__(self, model_path: str | Path, num_threads: int = _DEFAULTS.num_threads,
                 score_threshold: float = _DEFAULTS.score_threshold,
                 iou_threshold: float = _DEFAULTS.iou_threshold,
                 min_size: float = _DEFAULTS.min_face_size,
                 max_faces: int = _DEFAULTS.max_faces,
                 adapt_threads: bool = _DEFAULTS.adapt_threads) -> None:
        self.network = make_runner(model_path, num_threads, adapt_threads)
        # the rewritten graph takes the uint8 letterbox; the source graph normalised floats
        self.takes_pixels = self.network.input_dtype == np.uint8
        if self.network.input_shape[1:] != (INPUT_H, INPUT_W, 3):
            raise ModelFileError(model_path, f"not the RFB-320 detector: expected an input of "
                                 f"(1, {INPUT_H}, {INPUT_W}, 3), got {self.network.input_shape}")
        self.priors = ultraface_priors()
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.min_size = min_size
        self.max_faces = max_faces

    def _raw(self, frame: np.ndarray, min_score: float | None = None) -> Detections:
        """Every prior's box (frame pixels, unclipped) and face score, or only those of the
        priors scoring ``min_score`` or more: a frame has a handful of the 4420."""
        canvas, lb = letterbox(frame)
        loc, conf = self.network(canvas if self.takes_pixels else normalise(canvas))
        loc, scores, priors = loc.reshape(-1, 4), conf.reshape(-1, 2)[:, 1], self.priors
        if min_score is not None:
            keep = scores >= min_score
            loc, scores, priors = loc[keep], scores[keep], priors[keep]
        boxes = decode_boxes(loc, priors)
        boxes *= np.array([INPUT_W, INPUT_H, INPUT_W, INPUT_H], dtype=np.float32)
        boxes -= np.array([lb.dx, lb.dy, lb.dx, lb.dy], dtype=np.float32)
        boxes /= np.array([lb.sx, lb.sy, lb.sx, lb.sy], dtype=np.float32)
        return Detections(boxes.astype(np.float32), scores.astype(np.float32))

    def __call__(self, frame_bgr: np.ndarray) -> Detections:
        frame = as_bgr(frame_bgr)
        h, w = frame.shape[:2]
        boxes, scores = self._raw(frame, self.score_threshold)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        sizes = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        keep = sizes >= self.min_size
        return self._nms(boxes[keep], scores[keep])

    detect = __call__

    def _nms(self, boxes: np.ndarray, scores: np.ndarray) -> Detections:
        if len(boxes) == 0:
            return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        # no top_k: OpenCV applies it to the boxes *before* suppression, so the best face's
        # own overlapping boxes used up the quota and hid the other faces (4 of 7 found)
        idx = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.score_threshold,
                               self.iou_threshold)
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        idx = idx[np.argsort(-scores[idx], kind="stable")][: self.max_faces]
        return Detections(boxes[idx].astype(np.float32), scores[idx].astype(np.float32))
