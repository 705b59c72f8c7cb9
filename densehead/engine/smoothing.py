"""One Euro filter (Casiez et al., CHI 2012): an exponential smoother whose cut-off frequency
rises with speed, so a still face stops jittering and a moving one does not lag."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroSettings:
    """The filter's settings; their defaults are TrackerOptions' (densehead.core.options)."""
    min_cutoff: float   # Hz: smoothing when still (lower = smoother, more lag)
    beta: float         # how fast the cut-off rises with speed (per face size per second)
    d_cutoff: float     # Hz: smoothing of the speed estimate itself


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """Filters a vector state with one adaptive alpha per step.

    The speed that drives the cut-off is supplied by the caller (for a face: how fast its
    landmarks move, in face sizes per second), so one scalar alpha smooths the camera and the
    coefficients alike and everything rebuilt from them stays consistent."""

    def __init__(self, settings: OneEuroSettings) -> None:
        self.settings = settings
        self.value: np.ndarray | None = None
        self.speed = 0.0
        self.time: float | None = None

    def __call__(self, value: np.ndarray, speed: float, time: float) -> np.ndarray:
        if self.value is None or self.time is None or time <= self.time:
            self.value, self.time, self.speed = value.copy(), time, 0.0
            return self.value
        dt = time - self.time
        s = self.settings
        self.speed += _alpha(s.d_cutoff, dt) * (speed - self.speed)
        a = _alpha(s.min_cutoff + s.beta * self.speed, dt)
        self.value = self.value + a * (value - self.value)
        self.time = time
        return self.value
