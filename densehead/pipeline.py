"""One frame in, its faces out: detect -> crop -> regress -> reconstruct -> pose."""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import assets, crop
from .detector import Detections, FaceDetector
from .face import Face, FrameResult, StageTimes
from .image import as_bgr
from .morphable import MorphableModel, project
from .options import PipelineOptions
from .pose import decompose
from .runtime import TFLiteModel

log = logging.getLogger(__name__)

# iBUG 68-point order: the index each landmark takes when the face is mirrored left-right.
MIRROR_68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30]
    + [35, 34, 33, 32, 31] + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])


@dataclass(frozen=True)
class Models:
    """The loaded networks and face model: read-only after loading, shared by every view."""
    detector: FaceDetector
    regressor: TFLiteModel
    model: MorphableModel
    compiled_path: Path
    key: tuple[str, int]          # (regressor name, threads) they were loaded with


def load_models(options: PipelineOptions) -> Models:
    from .compile import regressor_tflite

    start = time.perf_counter()
    paths = assets.resolve_many(assets.default_names(options.regressor))
    detector = FaceDetector(paths[assets.DETECTOR_FILE], num_threads=options.num_threads)
    compiled = regressor_tflite(paths[assets.REGRESSORS[options.regressor]],
                                paths[assets.STATS_FILE], assets.cache_dir() / "compiled",
                                int8=options.regressor.endswith(assets.INT8))
    models = Models(detector=detector,
                    regressor=TFLiteModel(compiled, num_threads=options.num_threads),
                    model=MorphableModel(paths[assets.BFM_FILE], paths[assets.TRI_FILE]),
                    compiled_path=Path(compiled), key=options.model_key)
    log.info("models loaded in %.1f s: %s, %d TFLite thread(s), regressor %s",
             time.perf_counter() - start, options.regressor, options.num_threads, compiled)
    return models


class Pipeline:
    """Faces of one frame. Holds the shared models and frozen options, nothing per call, so one
    pipeline may serve several threads (each TFLite model serialises its own calls).

    `Pipeline()` loads the models with the default options; `Pipeline(options)` or
    `Pipeline(max_faces=2, ...)` with others; `pipe.with_options(...)` gives a pipeline with
    other per-call settings that shares the models already loaded.
    """

    def __init__(self, options: PipelineOptions | None = None, *, models: Models | None = None,
                 **changes: Any) -> None:
        options = options or PipelineOptions()
        self.options = options.replace(**changes) if changes else options
        if models is not None and models.key != self.options.model_key:
            raise ValueError(f"these models were loaded for {models.key}, not for "
                             f"{self.options.model_key}: create a new Pipeline instead")
        self.models = models or load_models(self.options)
        # this pipeline's own detector settings around the shared interpreter
        self.detector = copy.copy(self.models.detector)
        o = self.options
        self.detector.score_threshold, self.detector.iou_threshold = o.score_threshold, o.iou_threshold
        self.detector.min_size, self.detector.max_faces = o.min_face_size, o.max_faces

    def with_options(self, **changes: Any) -> "Pipeline":
        """A pipeline with some options changed that shares this one's loaded models (the
        regressor and the thread count are fixed by the models)."""
        return Pipeline(self.options.replace(**changes), models=self.models)

    @property
    def model(self) -> MorphableModel:
        return self.models.model

    @property
    def regressor(self) -> TFLiteModel:
        return self.models.regressor

    # -- the public calls ------------------------------------------------------------------
    def __call__(self, frame: np.ndarray, boxes: np.ndarray | None = None,
                 rois: np.ndarray | None = None, dense: bool = False,
                 scores: np.ndarray | None = None) -> FrameResult:
        """Faces in `frame` (BGR) and the time per stage. `boxes` skips detection; `rois` skips
        the box->crop mapping too (square crops fed as they are, no refine or flip pass).
        `dense` adds the 38,365 vertices."""
        times = StageTimes()
        frame = as_bgr(frame)
        from_boxes, mirrored = rois is None, False
        if rois is None:
            if boxes is None:
                start = time.perf_counter()
                (boxes, scores), mirrored = self._detect(frame)
                times.detect = _ms(start)
            boxes = _finite_boxes(boxes, "boxes")
            rois = [crop.roi_from_box(b, self.options.roi_shift, self.options.roi_scale)
                    for b in boxes]
        else:
            rois = list(_finite_boxes(rois, "rois"))
            boxes = _finite_boxes(boxes if boxes is not None else rois, "boxes")
        if scores is None:
            scores = np.ones(len(rois), dtype=np.float32)
        faces = [self._face(frame, roi, box, float(score), dense, times, from_boxes, mirrored)
                 for roi, box, score in zip(rois, boxes, scores)]
        times.faces = len(faces)
        return FrameResult(faces, times)

    def detect(self, frame: np.ndarray) -> Detections:
        """Face boxes and scores in a BGR frame, best first, with this pipeline's settings; when
        the detector finds none, the mirrored frame's faces that the landmark fit confirms."""
        return self._detect(frame)[0]

    def _detect(self, frame: np.ndarray) -> tuple[Detections, bool]:
        from .second_pass import find_faces  # it imports this module (MIRROR_68)

        return find_faces(self.detector, frame, self if self.options.second_pass else None)

    # -- one face --------------------------------------------------------------------------
    def _face(self, frame: np.ndarray, roi: np.ndarray, box: np.ndarray, score: float,
              dense: bool, times: StageTimes, from_box: bool, mirrored: bool = False) -> Face:
        """One face from its box (or roi). A face only the mirrored frame showed (`mirrored`)
        is also averaged with its mirrored fit, which the networks see better (on the AFLW
        samples, wild protocol: pose MAE 4.16 -> 3.99 degrees, mean NME 3.45 -> 3.42 %)."""
        params = self.regress(frame, roi, times)
        if self.options.refine and from_box:  # second pass on the crop the first landmarks give
            start = time.perf_counter()
            landmarks = self.landmarks(params, roi)
            times.postprocess += _ms(start)
            roi = crop.roi_from_landmarks(landmarks)
            params = self.regress(frame, roi, times)
        start = time.perf_counter()
        face = self.build_face(params, roi, box, score, dense)
        if (self.options.flip_average or mirrored) and from_box:
            times.postprocess += _ms(start)
            self._average_with_mirror(frame, face, times)
            start = time.perf_counter()
        times.postprocess += _ms(start)
        return face

    def regress(self, frame: np.ndarray, roi: np.ndarray, times: StageTimes | None = None,
                mirror: bool = False) -> np.ndarray:
        """De-normalised 62 params for one square roi of the frame."""
        start = time.perf_counter()
        x = crop.crop(frame, roi)
        if mirror:
            x = np.ascontiguousarray(x[:, :, ::-1])
        mid = time.perf_counter()
        params = self.regressor(x)[0][0].astype(np.float64)
        if times is not None:
            times.preprocess += (mid - start) * 1e3
            times.inference += _ms(mid)
        return params

    def landmarks(self, params: np.ndarray, roi: np.ndarray) -> np.ndarray:
        camera = crop.image_camera(params[:12].reshape(3, 4), roi)
        return project(camera, self.model.sparse(params[12:]))

    def build_face(self, params: np.ndarray, roi: np.ndarray, box: np.ndarray, score: float,
                   dense: bool, track_id: int = -1) -> Face:
        """Everything derived from the params and the roi they were predicted on."""
        camera = params[:12].reshape(3, 4)
        img_camera = crop.image_camera(camera, roi)
        pose = decompose(camera)
        coeffs = params[12:]
        return Face(
            box=np.asarray(box, dtype=np.float64), score=score, roi=np.asarray(roi),
            params=params, camera=camera, rotation=pose.rotation,
            translation=pose.translation, scale=pose.scale,
            yaw=pose.yaw, pitch=pose.pitch, roll=pose.roll,
            landmarks=project(img_camera, self.model.sparse(coeffs)),
            vertices=project(img_camera, self.model.dense(coeffs)) if dense else None,
            track_id=track_id)

    def _average_with_mirror(self, frame: np.ndarray, face: Face, times: StageTimes) -> None:
        """Test-time augmentation: run the mirrored crop too, mirror its landmarks back and
        average; yaw and roll change sign under the mirror."""
        params = self.regress(frame, face.roi, times, mirror=True)
        start = time.perf_counter()
        mirrored = self.landmarks(params, face.roi)
        x1, x2 = face.roi[0], face.roi[2]
        # the mirrored crop's column c is column SIZE-1-c: x -> x1 + x2 - x - k
        k = (x2 - x1) / crop.SIZE
        mirrored[:, 0] = x1 + x2 - k - mirrored[:, 0]
        face.landmarks = ((face.landmarks + mirrored[MIRROR_68]) / 2).astype(np.float32)
        m = decompose(params[:12].reshape(3, 4))
        face.yaw = (face.yaw - m.yaw) / 2
        face.pitch = (face.pitch + m.pitch) / 2
        face.roll = (face.roll - m.roll) / 2
        times.postprocess += _ms(start)


def _finite_boxes(boxes: Any, name: str) -> np.ndarray:
    """(K, 4) float64 boxes from a caller, refused unless finite with x2 > x1 and y2 > y1
    (a NaN box would give NaN landmarks that no overlay can draw)."""
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite numbers, got {arr.tolist()}")
    if np.any(arr[:, 2] <= arr[:, 0]) or np.any(arr[:, 3] <= arr[:, 1]):
        raise ValueError(f"each of {name} needs x2 > x1 and y2 > y1, got {arr.tolist()}")
    return arr


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3
