"""Head pose from the affine camera.

The network's camera maps model space to the 120x120 crop (y up). `decompose` splits it into a
scale, a rotation whose rows are the normalised first two camera rows and their cross product,
and a translation.

Euler angles follow 3DDFA_V2 and AFLW2000-3D: R = Rx(pitch) @ Ry(yaw) @ Rz(roll) with the
dataset's sign convention (README of the samples), so that in the image
  yaw > 0   : the face turns towards the image left (the person's right),
  pitch > 0 : the face looks up,
  roll > 0  : the face rotates clockwise in the image.
tests/test_pose.py checks signs and sizes against the AFLW2000-3D ground truth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Pose:
    rotation: np.ndarray     # (3, 3)
    translation: np.ndarray  # (3,)
    scale: float
    yaw: float               # degrees
    pitch: float
    roll: float


def decompose(camera: np.ndarray) -> Pose:
    """Scale, rotation, translation and Euler angles of a (3, 4) crop-space camera."""
    r1, r2 = camera[0, :3].astype(np.float64), camera[1, :3].astype(np.float64)
    n1, n2 = math.sqrt(r1 @ r1), math.sqrt(r2 @ r2)   # np.linalg.norm's own sum, cheaper
    r1, r2 = r1 / n1, r2 / n2
    r3 = (r1[1] * r2[2] - r1[2] * r2[1], r1[2] * r2[0] - r1[0] * r2[2], r1[0] * r2[1] - r1[1] * r2[0])
    rotation = np.array([r1, r2, r3])   # r1 x r2 written out: far cheaper than np.stack + np.cross
    yaw, pitch, roll = euler_angles(rotation)
    return Pose(rotation=rotation, translation=camera[:, 3].astype(np.float64).copy(),
                scale=float((n1 + n2) / 2), yaw=yaw, pitch=pitch, roll=roll)


def euler_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of R = Rx(pitch) Ry(yaw) Rz(roll), the dataset's matrices."""
    # nine scalars: Python's math costs far less per call than numpy's
    r = np.asarray(rotation, dtype=np.float64).tolist()
    sin_yaw = min(max(-r[0][2], -1.0), 1.0)
    yaw = math.asin(sin_yaw)
    if abs(sin_yaw) < 0.9999:
        pitch = math.atan2(r[1][2], r[2][2])
        roll = math.atan2(r[0][1], r[0][0])
    else:  # gimbal lock: only pitch - roll (or + roll) is observable; report it all as pitch
        roll = 0.0
        pitch = math.atan2(r[2][1], r[1][1])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Inverse of `euler_angles` (degrees in), used by tests and the pose overlay."""
    y, p, r = np.radians([yaw, pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, -np.sin(y)], [0, 1, 0], [np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), np.sin(r), 0], [-np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rx @ ry @ rz
