"""Video: tracking by alignment, re-detection, stable ids, smoothing.

Each tracked face is re-aligned on the crop its previous landmarks give (3DDFA_V2's trick:
cheaper and steadier than detecting every frame). The detector runs every `redetect_every`
frames and whenever a track is lost, to pick up new faces and retire vanished ones. A fit that
slides off its face (its landmarks shrink far below their span at the last detection) suspends
its track: no face is shown until a detection finds the face where it was last seen. A face the
detector found lying sideways (densehead.engine.turns) is tracked in the frame turned the way
it stands upright, so that the network, trained on upright faces, fits it on every frame and
not only at re-detections.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from itertools import count

import numpy as np

from ..core.boxes import iou, landmark_box
from ..core.face import Face, FrameResult, StageTimes, ms_since
from ..core.frames import as_bgr
from ..core.layout import COEFFICIENTS, camera_of
from ..core.options import TrackerOptions
from . import crop
from .pipeline import Pipeline
from .smoothing import OneEuro, OneEuroSettings
from .turns import turn_box, turn_for, turn_frame, unturn_face

log = logging.getLogger(__name__)

# A fit whose landmarks span less than this share of what they spanned when a detection last
# confirmed the track has slid off the face, onto the background or a collar: on
# orlando_bloom.avi the background faces' tracks shrank to a third before the detector's rounds
# ended them (docs/measurements.md, Tracking)
SHRUNK = 0.6


def _finite_number(value: object, name: str) -> float:
    """`value` as a float, refused unless it is a finite real number (a NaN would reach the
    smoothing filters, a string would stay in the tracker's state and fail every later frame)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


@dataclass
class _Track:
    id: int
    box: np.ndarray            # last detector box, then the landmark box, in frame pixels
    score: float
    roi: np.ndarray            # the crop to align on in the next frame, in the turned frame
    turns: int = 0             # the face stands upright in np.rot90(frame, turns)
    face: Face | None = None   # None until the first alignment
    misses: int = 0
    matched_box: np.ndarray | None = None   # the detection it last matched, frame pixels
    matched_size: float = 0.0  # its landmarks' span then (0 until its first fit after a match)
    suspended: bool = False    # its fit slid off the face: no face until a detection finds it
    filter: OneEuro | None = None
    previous: np.ndarray | None = field(default=None, repr=False)  # raw landmarks, last frame
    previous_time: float = 0.0


class FaceTracker:
    """Stateful per video or stream; call it on consecutive frames.

    `pipeline` and `options` may be replaced between frames from another thread (the dashboard's
    settings): each call reads both once, so one frame is processed with one consistent set.

    Smoothing defaults (One Euro 2.0 Hz, beta 2.0) come from `densehead evaluate-video` on the
    sample videos: most of the landmark jitter gone for under a frame of lag (1.0/0.5 smooths
    more but lags much longer; docs/measurements.md, Accuracy)."""

    def __init__(self, pipeline: Pipeline, options: TrackerOptions | None = None,
                 fps: float = 30.0, **changes: object) -> None:
        if not isinstance(pipeline, Pipeline):
            raise TypeError("FaceTracker needs a densehead.Pipeline, got "
                            f"{type(pipeline).__name__}")
        if options is not None and not isinstance(options, TrackerOptions):
            raise TypeError(f"options must be a TrackerOptions, got {type(options).__name__} "
                            "(PipelineOptions belong to the Pipeline)")
        options = options or TrackerOptions()
        self.pipeline = pipeline
        self.options = options.replace(**changes) if changes else options
        self.fps = _finite_number(fps, "fps")
        if self.fps <= 0:
            raise ValueError(f"fps must be more than 0, got {fps}")
        self.reset()

    def reset(self) -> None:
        """A new video or stream: no tracks, ids from 0, the next frame detects afresh."""
        self._ids = count()
        self._frame_index = 0
        self._size: tuple[int, int] | None = None
        self._drop_tracks()

    def _drop_tracks(self) -> None:
        self._tracks: list[_Track] = []
        self._since_detect = 0
        self._since_fallbacks: int | None = None   # frames since a round with the fallbacks
        self._lost = True

    def __call__(self, frame: np.ndarray, dense: bool = False,
                 timestamp: float | None = None) -> FrameResult:
        pipeline, options = self.pipeline, self.options   # one snapshot for the whole frame
        frame = as_bgr(frame)
        size = (frame.shape[1], frame.shape[0])
        if self._size is not None and size != self._size:
            # a camera switching resolution: the tracks' coordinates are stale, their ids retired
            log.info("frame size changed from %dx%d to %dx%d: tracks dropped", *self._size, *size)
            self._drop_tracks()
        self._size = size
        self._keep_best(pipeline.options.max_faces)
        now = self._frame_index / self.fps if timestamp is None else _finite_number(timestamp,
                                                                                    "timestamp")
        self._frame_index += 1
        detect_ms = 0.0
        if self._lost or not self._tracks or self._since_detect >= options.redetect_every - 1:
            start = time.perf_counter()
            lying = {t.turns for t in self._tracks}   # others may lie the same way
            (boxes, scores), turns = pipeline.detect_turns(
                frame, fallbacks=self._fallbacks_due(options), lying=lying)
            detect_ms = ms_since(start)
            self._match(boxes, scores, turns, frame.shape, pipeline, options)
            self._since_detect = 0
        else:
            self._since_detect += 1
        result = self._align(frame, dense, now, pipeline, options)
        result.times.detect = detect_ms
        return result

    def _keep_best(self, most: int) -> None:
        """At most `most` tracks, the best-scoring ones: the pipeline (and so its max_faces)
        may have been replaced since the tracks began, and new tracks are only capped when
        they start."""
        if len(self._tracks) > most:
            best = {t.id for t in sorted(self._tracks, key=lambda t: (-t.score, t.id))[:most]}
            self._tracks = [t for t in self._tracks if t.id in best]

    # -- detection rounds ------------------------------------------------------------------
    def _fallbacks_due(self, options: TrackerOptions) -> bool:
        """Whether this detection round may look at the mirrored and turned frame too. With
        tracks, always (a scheduled round must find a tracked profile again). While nobody is in
        view the detector runs on every frame, and those looks cost several detections each on
        a frame without a face: then they come every `redetect_every` frames (a profile or a
        face lying down is found within that many frames)."""
        if self._tracks:
            return True
        due = self._since_fallbacks is None or self._since_fallbacks >= options.redetect_every - 1
        self._since_fallbacks = 0 if due else self._since_fallbacks + 1
        return due

    def _match(self, boxes: np.ndarray, scores: np.ndarray, turns: list[int],
               frame_shape: tuple[int, ...], pipeline: Pipeline, options: TrackerOptions) -> None:
        """Pair detections with tracks by IoU; new detections start tracks, tracks missed by
        `max_misses` detection rounds in a row end. A new track stands the way its detection
        was found (upright or turned); after that its own fits decide (`_turn_to_fit`). A
        suspended track is looked for where a detection last saw it, and starts again from
        the detection that finds it, with its id."""
        def roi_of(i: int) -> np.ndarray:
            box = turn_box(boxes[i], turns[i], frame_shape)
            return crop.roi_from_box(box, pipeline.options.roi_shift, pipeline.options.roi_scale)

        unmatched = list(range(len(boxes)))
        for track in sorted(self._tracks, key=lambda t: t.id):
            seen = track.matched_box if track.suspended else track.box
            best = max(unmatched, key=lambda i: iou(seen, boxes[i]), default=None)
            if best is not None and iou(seen, boxes[best]) >= options.match_iou:
                unmatched.remove(best)
                track.misses = 0
                track.score = float(scores[best])
                track.matched_box = boxes[best].astype(np.float64)
                if track.suspended:
                    _resume(track, roi_of(best), turns[best])
                else:
                    track.matched_size = _span(track.box)
            else:
                track.misses += 1
        self._tracks = [t for t in self._tracks if t.misses <= options.max_misses]
        self._give_way(len(unmatched), pipeline.options.max_faces)
        room = pipeline.options.max_faces - len(self._tracks)
        for i in unmatched[:max(0, room)]:
            box = boxes[i].astype(np.float64)
            self._tracks.append(_Track(id=next(self._ids), box=box, score=float(scores[i]),
                                       roi=roi_of(i), turns=turns[i], matched_box=box))
        self._lost = False

    def _give_way(self, new_faces: int, most: int) -> None:
        """A face the detector sees takes the place of a suspended track, or of one it missed
        two rounds in a row, when `most` faces leave no room: with one face allowed, a fit left
        behind on the wall kept the person who had moved away out for three rounds. (One missed
        round is not enough: a face turned to profile, which the fit follows, would lose its
        place to a face in the background.)"""
        short = len(self._tracks) + new_faces - most
        missed = sorted((t for t in self._tracks if t.suspended or t.misses >= 2),
                        key=lambda t: (-t.misses, t.score))
        gone = {t.id for t in missed[:max(0, short)]}
        self._tracks = [t for t in self._tracks if t.id not in gone]

    # -- every frame -----------------------------------------------------------------------
    def _align(self, frame: np.ndarray, dense: bool, now: float, pipeline: Pipeline,
               options: TrackerOptions) -> FrameResult:
        times = StageTimes()
        kept, again = self._align_all(frame, self._tracks, dense, now, pipeline, options, times)
        # a new track whose first fit shows its face lying sideways (the upright detector found
        # it as it lies) is aligned again at once in the turn that stands it upright
        if again:
            kept += self._align_all(frame, again, dense, now, pipeline, options, times)[0]
        self._tracks = _drop_duplicates(kept)
        faces = [t.face for t in self._tracks if t.face is not None]
        times.faces = len(faces)
        return FrameResult(faces, times)

    def _align_all(self, frame: np.ndarray, tracks: list[_Track], dense: bool, now: float,
                   pipeline: Pipeline, options: TrackerOptions,
                   times: StageTimes) -> tuple[list[_Track], list[_Track]]:
        kept: list[_Track] = []
        again: list[_Track] = []
        for turns in sorted({t.turns for t in tracks}):
            group = [t for t in tracks if t.turns == turns]
            k, a = self._align_turned(frame, turns, group, dense, now, pipeline, options, times)
            kept += k
            again += a
        return kept, again

    def _align_turned(self, frame: np.ndarray, turns: int, tracks: list[_Track], dense: bool,
                      now: float, pipeline: Pipeline, options: TrackerOptions,
                      times: StageTimes) -> tuple[list[_Track], list[_Track]]:
        """Align the tracks that stand upright in np.rot90(frame, turns) there, their faces put
        back on the frame: (the tracks kept, the new ones whose first fit turned them, to align
        again in their turn)."""
        view = turn_frame(frame, turns)
        kept: list[_Track] = []
        again: list[_Track] = []
        for track in tracks:
            if track.suspended:
                kept.append(track)
                continue
            params = pipeline.regress(view, track.roi, times)
            start = time.perf_counter()
            face = self._track_face(track, params, view.shape, dense, now, pipeline, options)
            if face is None:   # the track ends, or waits for a detection if suspended
                if track.suspended:
                    kept.append(track)
                self._lost = True  # look again on the next frame
                times.postprocess += ms_since(start)
                continue
            track.roi = crop.roi_from_landmarks(face.landmarks)  # tracking by alignment
            first_fit = track.face is None
            track.face = unturn_face(face, turns, frame.shape)
            track.box = track.face.box
            track.matched_size = track.matched_size or _span(track.box)
            times.postprocess += ms_since(start)
            turned = _turn_to_fit(track, frame.shape)
            (again if turned and first_fit else kept).append(track)
        return kept, again

    def _track_face(self, track: _Track, params: np.ndarray, view_shape: tuple[int, ...],
                    dense: bool, now: float, pipeline: Pipeline,
                    options: TrackerOptions) -> Face | None:
        """The track's face from the network's `params`, built once: from the smoothed
        parameters when smoothing is on (the raw fit gives only the landmarks that drive the
        filter), else from the raw ones. None when the raw landmarks are not plausible, or
        when they shrank by far since a detection confirmed the track (it is then suspended)."""
        if options.smoothing:
            raw, face = pipeline.landmarks(params, track.roi), None
        else:
            face = pipeline.build_face(params, track.roi, track.roi, track.score, dense, track.id)
            raw = face.landmarks
        box = landmark_box(raw)
        if not _plausible(box, view_shape[1], view_shape[0]):
            return None
        if _span(box) < SHRUNK * track.matched_size:   # slid off the face
            track.suspended, track.face = True, None
            return None
        if face is None:
            smoothed = self._smooth(track, params, raw, box, now, options)
            face = pipeline.build_face(smoothed, track.roi, box, track.score, dense, track.id)
        else:
            track.filter = None  # smoothing later starts afresh
        face.box = box
        return face

    def _smooth(self, track: _Track, params: np.ndarray, raw: np.ndarray, box: np.ndarray,
                now: float, options: TrackerOptions) -> np.ndarray:
        """One Euro on the frame-space camera and the 50 coefficients, driven by how fast the
        raw landmarks move (face sizes per second): the smoothed parameters for `track.roi`."""
        size = _span(box)   # a plausible box: 8 px a side at least
        speed = 0.0
        if track.previous is not None and now > track.previous_time:
            step = np.linalg.norm(raw[:, :2] - track.previous[:, :2], axis=1).mean()
            speed = float(step / size / (now - track.previous_time))
        track.previous, track.previous_time = raw, now
        settings = OneEuroSettings(options.min_cutoff, options.beta, options.d_cutoff)
        if track.filter is None or track.filter.settings != settings:
            track.filter = OneEuro(settings)
        camera = camera_of(params)
        state = np.concatenate([crop.image_camera(camera, track.roi).ravel(),
                                params[COEFFICIENTS]])
        smooth = track.filter(state, speed, now)
        camera = crop.crop_camera(camera_of(smooth), track.roi, camera[2, 3])
        return np.concatenate([camera.ravel(), smooth[COEFFICIENTS]])


def _turn_to_fit(track: _Track, frame_shape: tuple[int, ...]) -> bool:
    """From the next frame on, align the track in the quarter turn its face's tilt asks for
    (turns.turn_for): a person lying down or sitting up, or a face the upright detector
    found lying sideways. Whether the turn changed."""
    assert track.face is not None
    turns = turn_for(track.face.rotation, track.turns)
    if turns == track.turns:
        return False
    roi = crop.roi_from_landmarks(track.face.landmarks)  # a square: turns as it is
    track.turns, track.roi = turns, turn_box(roi, turns, frame_shape)
    track.filter, track.previous = None, None   # their state was in the other turn
    return True


def _resume(track: _Track, roi: np.ndarray, turns: int) -> None:
    """A suspended track starts again from the crop of the detection that found its face."""
    track.suspended, track.roi, track.turns = False, roi, turns
    track.box, track.matched_size = track.matched_box, 0.0
    track.filter, track.previous = None, None   # the smoothing must not pull it back


def _span(box: np.ndarray) -> float:
    """A box's size: the square root of its area."""
    return float(np.sqrt(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)))


def _plausible(box: np.ndarray, width: int, height: int) -> bool:
    """A track is lost when its landmarks (their `box`) collapse or leave the frame."""
    x1, y1, x2, y2 = box.tolist()
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or min(x2 - x1, y2 - y1) < 8:
        return False
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return 0 <= cx < width and 0 <= cy < height


def _drop_duplicates(tracks: list[_Track]) -> list[_Track]:
    """Two tracks that converged on one face: keep the older id (a suspended track has no face
    to compare)."""
    kept: list[_Track] = []
    for track in sorted(tracks, key=lambda t: t.id):
        if track.suspended or all(iou(track.box, k.box) < 0.5 for k in kept if not k.suspended):
            kept.append(track)
    return kept
