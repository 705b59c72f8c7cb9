"""One frame in, its faces out: detect -> crop -> regress -> reconstruct -> pose."""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..core.boxes import iou
from ..core.face import Face, FrameResult, StageTimes, ms_since
from ..core.frames import as_bgr
from ..core.layout import COEFFICIENTS, camera_of
from ..core.options import INT8, PipelineOptions
from ..weights import assets
from ..weights.compile import regressor_tflite
from ..weights.detector_graph import detector_tflite
from . import crop
from .detector import Detections, FaceDetector
from .face_model import MorphableModel, project
from .mirror_fallback import MirrorFit, find_faces, unmirror
from .pose import decompose
from .regressor_choice import resolve_regressor
from .thread_choice import Runner, make_runner
from .turns import (
    SAME_FACE_IOU,
    TurnedViews,
    turn_box,
    turn_for,
    unturn_box,
    unturn_face,
)

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class LoadedModels:
    """The loaded networks and face model: read-only after loading, shared by every view."""
    detector: FaceDetector
    regressor: Runner
    face_model: MorphableModel
    compiled_path: Path
    key: tuple[str, int, bool]    # (regressor name, threads, adapt_threads) they were loaded with


def load_models(options: PipelineOptions) -> LoadedModels:
    """The networks and the face model for `options` ("auto" resolved here if it was not)."""
    options = options.replace(regressor=resolve_regressor(options.regressor,
                                                          options.num_threads).name)
    start = time.perf_counter()
    paths = assets.resolve_many(assets.default_names(options.regressor))
    detector = FaceDetector(detector_tflite(paths[assets.DETECTOR_FILE], assets.compiled_dir()),
                            num_threads=options.num_threads, adapt_threads=options.adapt_threads)
    compiled = regressor_tflite(paths[assets.REGRESSORS[options.regressor]],
                                paths[assets.STATS_FILE], assets.compiled_dir(),
                                int8=options.regressor.endswith(INT8))
    models = LoadedModels(
        detector=detector,
        regressor=make_runner(compiled, options.num_threads, options.adapt_threads),
        face_model=MorphableModel(paths[assets.BFM_FILE], paths[assets.TRI_FILE]),
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

    def __init__(self, options: PipelineOptions | None = None, *,
                 loaded: LoadedModels | None = None, **changes: Any) -> None:
        if options is not None and not isinstance(options, PipelineOptions):
            raise TypeError(f"options must be a PipelineOptions, got {type(options).__name__} "
                            "(or give its fields as keywords: Pipeline(max_faces=2))")
        options = options or PipelineOptions()
        options = options.replace(**changes) if changes else options
        self.regressor_choice = resolve_regressor(options.regressor, options.num_threads)
        self.options = options.replace(regressor=self.regressor_choice.name)
        if loaded is not None and loaded.key != self.options.model_key:
            raise ValueError(f"these models were loaded for {loaded.key}, not for "
                             f"{self.options.model_key}: create a new Pipeline instead")
        self.loaded = loaded or load_models(self.options)
        # this pipeline's own detector settings around the shared interpreter
        self.detector = copy.copy(self.loaded.detector)
        o = self.options
        self.detector.score_threshold, self.detector.iou_threshold = o.score_threshold, o.iou_threshold
        self.detector.min_size, self.detector.max_faces = o.min_face_size, o.max_faces

    def __reduce__(self) -> tuple[type, tuple[PipelineOptions]]:
        # Pickled (multiprocessing, joblib) as its options: the receiving process loads the
        # models itself; TFLite interpreters cannot be copied between processes.
        return Pipeline, (self.options,)

    def with_options(self, **changes: Any) -> "Pipeline":
        """A pipeline with some options changed that shares this one's loaded models (the
        regressor and the thread count are fixed by the models)."""
        view = Pipeline(self.options.replace(**changes), loaded=self.loaded)
        view.regressor_choice = self.regressor_choice
        return view

    @property
    def face_model(self) -> MorphableModel:
        """The morphable model the landmarks and meshes are built from."""
        return self.loaded.face_model

    # -- the public calls ------------------------------------------------------------------
    def __call__(self, frame: np.ndarray, boxes: np.ndarray | None = None,
                 rois: np.ndarray | None = None, dense: bool = False,
                 scores: np.ndarray | None = None) -> FrameResult:
        """Faces in `frame` (BGR) and the time per stage. `boxes` skips detection; `rois` skips
        the box->crop mapping too (square crops fed as they are, no refine or flip pass).
        `dense` adds the 38,365 vertices."""
        times = StageTimes()
        frame = as_bgr(frame)
        from_boxes, fits = rois is None, None
        detected = rois is None and boxes is None
        if rois is None:
            if boxes is None:
                start = time.perf_counter()
                (boxes, scores), fits = self._detect(frame)
                times.detect = ms_since(start)
            boxes = _finite_boxes(boxes, "boxes", frame.shape)
            rois = [crop.roi_from_box(b, self.options.roi_shift, self.options.roi_scale)
                    for b in boxes]
        else:
            rois = list(_finite_boxes(rois, "rois", frame.shape))
            boxes = _finite_boxes(boxes if boxes is not None else rois, "boxes", frame.shape)
        if scores is None:
            scores = np.ones(len(rois), dtype=np.float32)
        elif len(scores := np.ravel(scores)) != len(rois):
            raise ValueError(f"scores must give one number per box: {len(scores)} scores for "
                             f"{len(rois)} boxes")
        views = TurnedViews(frame)
        faces = [self._face(views, roi, box, float(score), dense, times, from_boxes)
                 if fits is None else self._mirrored_face(fits[i], dense, times, frame.shape)
                 for i, (roi, box, score) in enumerate(zip(rois, boxes, scores))]
        if detected and fits is None and self.options.rotated_fallback:
            faces += self._faces_lying_beside(views, faces, dense, times)
        times.faces = len(faces)
        return FrameResult(faces, times)

    def detect(self, frame: np.ndarray, fallbacks: bool = True) -> Detections:
        """Face boxes and scores in a BGR frame, best first, with this pipeline's settings; when
        the detector finds none (and `fallbacks`), the mirrored (or turned) frame's faces that
        the landmark fit confirms."""
        return self._detect(frame, fallbacks)[0]

    def detect_turns(self, frame: np.ndarray, fallbacks: bool = True,
                     lying: Iterable[int] = ()) -> tuple[Detections, list[int]]:
        """`detect`, with the quarter turn each face was found at: 0 upright, else np.rot90's k
        of the frame in which it stands upright (a face lying sideways, densehead.engine.turns).
        The frame turned each way of `lying` (where faces were seen lying) is looked at too,
        with the rotated fallback: its faces replace the upright detector's of the same face."""
        found, fits = self._detect(frame, fallbacks)
        if fits is not None:   # the fallbacks ran: the turned frames were looked at already
            return found, [f.quarter_turns for f in fits]
        boxes, scores, turns = found.boxes, found.scores, [0] * len(found.boxes)
        for k in sorted(set(lying) - {0}) if self.options.rotated_fallback else ():
            more = self.detect_turned(frame, k)
            keep = [i for i, box in enumerate(boxes)
                    if all(iou(box, other) < SAME_FACE_IOU for other in more.boxes)]
            boxes = np.concatenate([boxes[keep], more.boxes])
            scores = np.concatenate([scores[keep], more.scores])
            turns = [turns[i] for i in keep] + [k] * len(more.boxes)
        return Detections(boxes, scores), turns

    def detect_turned(self, frame: np.ndarray | TurnedViews, k: int) -> Detections:
        """The detector's faces in np.rot90(frame, k), with their boxes in the frame's pixels."""
        views = frame if isinstance(frame, TurnedViews) else TurnedViews(frame)
        boxes, scores = self.detector(views[k])
        boxes = np.array([unturn_box(box, k, views.frame.shape) for box in boxes], np.float32)
        return Detections(boxes.reshape(-1, 4), scores)

    def _detect(self, frame: np.ndarray,
                fallbacks: bool = True) -> tuple[Detections, list[MirrorFit] | None]:
        o = self.options
        mirrored, turned = fallbacks and o.mirror_fallback, fallbacks and o.rotated_fallback
        return find_faces(self.detector, frame, self if mirrored or turned else None,
                          mirrored=mirrored, turned=turned)

    # -- one face --------------------------------------------------------------------------
    def _face(self, views: TurnedViews, roi: np.ndarray, box: np.ndarray, score: float,
              dense: bool, times: StageTimes, from_box: bool) -> Face:
        """One face from its box (or roi); a face lying sideways (tilted past
        core.options.TURN_AFTER_TILT) fitted again where it stands upright, with the rotated
        fallback."""
        face = self._fit(views.frame, roi, box, score, dense, times, from_box)
        sideways = from_box and self.options.rotated_fallback
        turns = turn_for(face.rotation) if sideways else 0
        return self._turned_face(views, box, score, dense, times, turns) if turns else face

    def _faces_lying_beside(self, views: TurnedViews, faces: list[Face], dense: bool,
                            times: StageTimes) -> list[Face]:
        """The other faces of a picture in which the detector found some lying sideways: as
        they lie it finds some, rarely all, so the frame turned the way they lie is looked at
        too. Its new faces are kept if their fit lies that way as well."""
        more: list[Face] = []
        for k in sorted({turn_for(face.rotation) for face in faces} - {0}):
            start = time.perf_counter()
            boxes, scores = self.detect_turned(views, k)
            times.detect += ms_since(start)
            for box, score in zip(boxes, scores):
                if len(faces) + len(more) >= self.options.max_faces:
                    break
                if any(iou(box, face.box) >= SAME_FACE_IOU for face in faces + more):
                    continue
                face = self._turned_face(views, box, float(score), dense, times, k)
                if turn_for(face.rotation, k) == k:
                    more.append(face)
        return more

    def _turned_face(self, views: TurnedViews, box: np.ndarray, score: float, dense: bool,
                     times: StageTimes, turns: int) -> Face:
        """The face in `box` fitted in np.rot90(frame, turns), put back on the frame: the network
        was trained on upright faces."""
        start = time.perf_counter()
        frame, view = views.frame, views[turns]
        view_box = turn_box(box, turns, frame.shape)
        times.preprocess += ms_since(start)
        roi = crop.roi_from_box(view_box, self.options.roi_shift, self.options.roi_scale)
        face = self._fit(view, roi, view_box, score, dense, times, from_box=True)
        start = time.perf_counter()
        face = unturn_face(face, turns, frame.shape)
        times.postprocess += ms_since(start)
        return face

    def _fit(self, frame: np.ndarray, roi: np.ndarray, box: np.ndarray, score: float,
             dense: bool, times: StageTimes, from_box: bool) -> Face:
        """One face fitted as it stands in `frame`."""
        params = self.regress(frame, roi, times)
        if self.options.refine and from_box:  # second pass on the crop the first landmarks give
            start = time.perf_counter()
            landmarks = self.landmarks(params, roi)
            times.postprocess += ms_since(start)
            roi = crop.roi_from_landmarks(landmarks)
            params = self.regress(frame, roi, times)
        start = time.perf_counter()
        face = self.build_face(params, roi, box, score, dense)
        times.postprocess += ms_since(start)
        if self.options.flip_average and from_box:
            mirrored_params = self.regress(frame, face.roi, times, mirror=True)
            start = time.perf_counter()
            self._average_with_mirror(face, mirrored_params)
            times.postprocess += ms_since(start)
        return face

    def _mirrored_face(self, fit: MirrorFit, dense: bool, times: StageTimes,
                       frame_shape: tuple[int, ...]) -> Face:
        """A face only the mirrored (or turned) frame showed, built from the fits that confirmed
        it and averaged with its mirrored fit, which the networks see better (lower pose error
        and NME on the AFLW samples: docs/measurements.md, Accuracy)."""
        start = time.perf_counter()
        face = self.build_face(fit.params, fit.roi, fit.box, fit.score, dense)
        self._average_with_mirror(face, fit.mirrored_params)
        if fit.quarter_turns:
            face = unturn_face(face, fit.quarter_turns, frame_shape)
        times.postprocess += ms_since(start)
        return face

    def regress(self, frame: np.ndarray, roi: np.ndarray, times: StageTimes | None = None,
                mirror: bool = False) -> np.ndarray:
        """De-normalised 62 params for one square roi of the frame."""
        start = time.perf_counter()
        x = crop.crop(frame, roi)
        if mirror:
            x = np.ascontiguousarray(x[:, :, ::-1])
        mid = time.perf_counter()
        params = self.loaded.regressor(x)[0][0].astype(np.float64)
        if times is not None:
            times.preprocess += (mid - start) * 1e3
            times.inference += ms_since(mid)
        return params

    def landmarks(self, params: np.ndarray, roi: np.ndarray) -> np.ndarray:
        camera = crop.image_camera(camera_of(params), roi)
        return project(camera, self.face_model.sparse(params[COEFFICIENTS]))

    def build_face(self, params: np.ndarray, roi: np.ndarray, box: np.ndarray, score: float,
                   dense: bool, track_id: int = -1) -> Face:
        """Everything derived from the params and the roi they were predicted on."""
        camera = camera_of(params)
        img_camera = crop.image_camera(camera, roi)
        pose = decompose(camera)
        coeffs = params[COEFFICIENTS]
        return Face(
            box=np.asarray(box, dtype=np.float64), score=score, roi=np.asarray(roi),
            params=params, camera=camera, rotation=pose.rotation,
            translation=pose.translation, scale=pose.scale,
            yaw=pose.yaw, pitch=pose.pitch, roll=pose.roll,
            landmarks=project(img_camera, self.face_model.sparse(coeffs)),
            vertices=project(img_camera, self.face_model.dense(coeffs)) if dense else None,
            track_id=track_id)

    def _average_with_mirror(self, face: Face, mirrored_params: np.ndarray) -> None:
        """Test-time augmentation: average with the fit on the mirrored crop, its landmarks put
        back on the face; yaw and roll change sign under the mirror."""
        mirrored = unmirror(self.landmarks(mirrored_params, face.roi), face.roi)
        face.landmarks = ((face.landmarks + mirrored) / 2).astype(np.float32)
        m = decompose(camera_of(mirrored_params))
        face.yaw = (face.yaw - m.yaw) / 2
        face.pitch = (face.pitch + m.pitch) / 2
        face.roll = (face.roll - m.roll) / 2


def _finite_boxes(boxes: Any, name: str, frame_shape: tuple[int, ...]) -> np.ndarray:
    """(K, 4) float64 boxes from a caller, refused unless finite with x2 > x1 and y2 > y1
    (a NaN box would give NaN landmarks that no overlay can draw) and touching the frame (a
    face fitted on padding is no face)."""
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be rows of four numbers (x1, y1, x2, y2), got "
                         f"{boxes!r}") from None
    if arr.size % 4:
        raise ValueError(f"{name} must be rows of four numbers (x1, y1, x2, y2), got "
                         f"{arr.tolist()}")
    arr = arr.reshape(-1, 4)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite numbers, got {arr.tolist()}")
    if (arr[:, 2] <= arr[:, 0]).any() or (arr[:, 3] <= arr[:, 1]).any():
        raise ValueError(f"each of {name} needs x2 > x1 and y2 > y1, got {arr.tolist()}")
    height, width = frame_shape[:2]
    outside = (arr[:, 2] <= 0) | (arr[:, 3] <= 0) | (arr[:, 0] >= width) | (arr[:, 1] >= height)
    if outside.any():
        raise ValueError(f"{name} {arr[outside].tolist()} lie outside the {width}x{height} frame")
    return arr
