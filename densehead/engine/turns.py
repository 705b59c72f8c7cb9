"""Quarter turns of a frame, for faces lying sideways: the detector and the network were
trained on upright faces, so such a face is found and fitted in the frame turned a quarter
(np.rot90's k = 1 anticlockwise, -1 clockwise), and what is found there is put back on the
frame. Pixel centres sit at whole numbers, as everywhere here.
"""
from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np

from ..core.face import Face
from ..core.layout import CAMERA
from ..core.options import TURN_AFTER_TILT
from . import crop
from .pose import decompose, euler_angles, rotation_from_euler

QUARTER_TURNS = (1, -1)   # np.rot90's k: a quarter turn anticlockwise, then clockwise
SAME_FACE_IOU = 0.3       # boxes found in two turns of a frame overlapping this much: one face
_CV2_ROTATION = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, -1: cv2.ROTATE_90_CLOCKWISE}


def turn_frame(frame: np.ndarray, k: int) -> np.ndarray:
    """np.rot90(frame, k) as a contiguous image (cv2.rotate: one pass, not numpy's strided copy)
    for k = 0, 1 or -1."""
    if k not in (0, *QUARTER_TURNS):
        raise ValueError(f"a quarter turn is 1 (anticlockwise), -1 (clockwise) or 0, not {k!r}")
    return frame if k == 0 else cv2.rotate(frame, _CV2_ROTATION[k])


class TurnedViews:
    """A frame and its quarter turns, each turned once, when first asked for (a large photo
    takes milliseconds to turn, and several faces may need the same turn)."""

    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame
        self._views = {0: frame}

    def __getitem__(self, k: int) -> np.ndarray:
        if k not in self._views:
            self._views[k] = turn_frame(self.frame, k)
        return self._views[k]


def tilt(rotation: np.ndarray) -> float:
    """Degrees by which a face's up direction leans from the frame's up, in the picture: where
    the rotation takes the head's up axis. Unlike the roll angle it does not grow with yaw and
    pitch, so a profile looking down is not taken for a face lying sideways."""
    up_x, up_y = float(rotation[0][1]), float(rotation[1][1])   # rotation @ (0, 1, 0)
    return math.degrees(math.atan2(up_x, up_y))


def turn_for(rotation: np.ndarray, turns: int = 0) -> int:
    """The quarter turn to fit a face in whose rotation (in the frame) is `rotation` and which
    was fitted in np.rot90(frame, turns): `turns` while its tilt is within TURN_AFTER_TILT of
    what that turn stands upright (90 x turns), else the turn that stands it nearest upright."""
    degrees = tilt(rotation)
    if abs(degrees - 90.0 * turns) <= TURN_AFTER_TILT:
        return turns
    return int(np.clip(np.round(degrees / 90.0), -1, 1))


def unturn_points(points: np.ndarray, k: int, frame_shape: tuple[int, ...]) -> np.ndarray:
    """Points (x, y, ...) in the pixels of np.rot90(frame, k), k = +-1, in the frame's pixels;
    further columns (depth) unchanged."""
    h, w = frame_shape[:2]
    out = np.array(points, dtype=np.float64)
    x, y = out[:, 0].copy(), out[:, 1].copy()
    if k == 1:     # anticlockwise: the frame's column w-1-y' became row y'
        out[:, 0], out[:, 1] = w - 1 - y, x
    elif k == -1:  # clockwise: the frame's row h-1-x' became column x'
        out[:, 0], out[:, 1] = y, h - 1 - x
    return out


def unturn_box(box: np.ndarray, k: int, frame_shape: tuple[int, ...]) -> np.ndarray:
    """A box (x1, y1, x2, y2) of np.rot90(frame, k) as a box of the frame."""
    corners = unturn_points(np.reshape(np.asarray(box, np.float64)[:4], (2, 2)), k, frame_shape)
    return np.concatenate([corners.min(axis=0), corners.max(axis=0)]).astype(np.asarray(box).dtype)


def turn_box(box: np.ndarray, k: int, frame_shape: tuple[int, ...]) -> np.ndarray:
    """A box of the frame as a box of np.rot90(frame, k): undoing the opposite turn of the
    turned frame."""
    h, w = frame_shape[:2]
    return unturn_box(box, -k, (w, h) if k else (h, w))


def unturn_face(face: Face, k: int, frame_shape: tuple[int, ...]) -> Face:
    """A face fitted in np.rot90(frame, k) put back on the frame: points, box and crop turned
    back, the camera expressed for the crop it now has, and the quarter turn added to the pose
    (as a rotation, so yaw and pitch stay right when the head is also turned or tilted)."""
    if k == 0:
        return face
    roi = unturn_box(face.roi, k, frame_shape)
    seen = crop.image_camera(face.camera, face.roi)   # model -> turned frame pixels
    image = seen.copy()                                # model -> frame pixels
    h, w = frame_shape[:2]
    if k == 1:
        image[0], image[1] = -seen[1], seen[0]
        image[0, 3] += w - 1
    elif k == -1:
        image[0], image[1] = seen[1], -seen[0]
        image[1, 3] += h - 1
    camera = crop.crop_camera(image, roi, face.camera[2, 3])
    pose = decompose(camera)
    turn = pose.rotation @ face.rotation.T
    yaw, pitch, roll = euler_angles(turn @ rotation_from_euler(face.yaw, face.pitch, face.roll))
    params = face.params.copy()
    params[CAMERA] = camera.ravel()
    landmarks = unturn_points(face.landmarks, k, frame_shape).astype(face.landmarks.dtype)
    vertices = (None if face.vertices is None
                else unturn_points(face.vertices, k, frame_shape).astype(face.vertices.dtype))
    return replace(face, box=unturn_box(face.box, k, frame_shape), roi=roi, params=params,
                   camera=camera, rotation=pose.rotation, translation=pose.translation,
                   scale=pose.scale, yaw=yaw, pitch=pitch, roll=roll, landmarks=landmarks,
                   vertices=vertices)
