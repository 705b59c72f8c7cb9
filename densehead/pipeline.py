"""One frame in, a list of Face records out: detect -> crop -> regress -> reconstruct -> pose."""
from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

from . import assets, crop
from .face import Face, StageTimes
from .image import as_bgr
from .morphable import MorphableModel, project
from .pose import decompose

REGRESSORS = {"mb05": "mb05_120x120.pth", "mb1": "mb1_120x120.pth"}
DETECTOR_FILE = "RFB-320.tflite"
BFM_FILE = "bfm_noneck_v3.pkl"
STATS_FILE = "param_mean_std_62d_120x120.pkl"
TRI_FILE = "tri.pkl"

# iBUG 68-point order: the index each landmark takes when the face is mirrored left-right.
MIRROR_68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30]
    + [35, 34, 33, 32, 31] + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])


def required_files(regressor: str = "mb05") -> list[str]:
    if regressor not in REGRESSORS:
        raise ValueError(f"unknown regressor {regressor!r}; choose one of {sorted(REGRESSORS)}")
    return [DETECTOR_FILE, REGRESSORS[regressor], STATS_FILE, BFM_FILE, TRI_FILE]


class Pipeline:
    """Stateless per call (tracking lives in densehead.tracking); safe to share between threads
    because each TFLite model serialises its own calls."""

    def __init__(self, regressor: str = "mb05", num_threads: int = 2,
                 score_threshold: float = 0.7, iou_threshold: float = 0.3, max_faces: int = 8,
                 min_face_size: int = 20, roi_shift: float = 0.06, roi_scale: float = 1.40,
                 refine: bool = True, flip_average: bool = False) -> None:
        # roi 0.06/1.40 and refine: measured with `densehead evaluate` on AFLW2000-3D samples
        # (README, Accuracy). refine and flip_average apply to detector/given boxes only: the
        # tracker's landmark crops are already what a refine pass would produce.
        from .compile import regressor_tflite
        from .detector import FaceDetector
        from .runtime import TFLiteModel

        paths = assets.resolve_many(required_files(regressor))
        self.regressor_name = regressor
        self.num_threads = num_threads
        self.roi_shift, self.roi_scale = roi_shift, roi_scale
        self.refine, self.flip_average = refine, flip_average
        self.max_faces = max_faces
        self.detector = FaceDetector(paths[DETECTOR_FILE], num_threads=num_threads,
                                     score_threshold=score_threshold, iou_threshold=iou_threshold,
                                     min_size=min_face_size, max_faces=max_faces)
        compiled = regressor_tflite(paths[REGRESSORS[regressor]], paths[STATS_FILE],
                                    assets.cache_dir() / "compiled")
        self.regressor = TFLiteModel(compiled, num_threads=num_threads)
        self.model = MorphableModel(paths[BFM_FILE], paths[TRI_FILE])
        self.compiled_path = Path(compiled)
        self.last_times = StageTimes()

    def view(self, score_threshold: float | None = None,
             max_faces: int | None = None) -> "Pipeline":
        """A pipeline that shares this one's models but has its own detection settings and
        stage timings: one per user session or stream, without loading anything again."""
        out = copy.copy(self)
        out.detector = copy.copy(self.detector)
        out.last_times = StageTimes()
        out.set_detection(score_threshold, max_faces)
        return out

    def set_detection(self, score_threshold: float | None = None,
                      max_faces: int | None = None) -> None:
        if score_threshold is not None:
            self.detector.score_threshold = float(score_threshold)
        if max_faces is not None:
            self.max_faces = self.detector.max_faces = int(max_faces)

    # -- the public call -------------------------------------------------------------------
    def __call__(self, frame: np.ndarray, boxes: np.ndarray | None = None,
                 rois: np.ndarray | None = None, dense: bool = False,
                 scores: np.ndarray | None = None) -> list[Face]:
        """Faces in `frame` (BGR). `boxes` skips detection; `rois` skips the box->crop mapping
        too (square crops fed as they are, no refine or flip pass). `dense` adds the 38,365
        vertices."""
        times = StageTimes()
        frame = as_bgr(frame)
        from_boxes = rois is None
        if rois is None:
            if boxes is None:
                start = time.perf_counter()
                boxes, scores = self.detector(frame)
                times.detect = _ms(start)
            boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
            rois = [crop.roi_from_box(b, self.roi_shift, self.roi_scale) for b in boxes]
        else:
            rois = [np.asarray(r, dtype=np.float64) for r in np.asarray(rois).reshape(-1, 4)]
            boxes = np.asarray(boxes if boxes is not None else rois, dtype=np.float64).reshape(-1, 4)
        if scores is None:
            scores = np.ones(len(rois), dtype=np.float32)
        faces = [self._face(frame, roi, box, float(score), dense, times, from_boxes)
                 for roi, box, score in zip(rois, boxes, scores)]
        times.faces = len(faces)
        self.last_times = times
        return faces

    # -- one face --------------------------------------------------------------------------
    def _face(self, frame: np.ndarray, roi: np.ndarray, box: np.ndarray, score: float,
              dense: bool, times: StageTimes, from_box: bool) -> Face:
        params = self.regress(frame, roi, times)
        if self.refine and from_box:  # second pass on the crop that the first pass's landmarks give
            start = time.perf_counter()
            landmarks = self.landmarks(params, roi)
            times.postprocess += _ms(start)
            roi = crop.roi_from_landmarks(landmarks)
            params = self.regress(frame, roi, times)
        start = time.perf_counter()
        face = self.build_face(params, roi, box, score, dense)
        if self.flip_average and from_box:
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


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3
