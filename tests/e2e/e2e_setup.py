"""Which video is the browser tests' webcam."""
from __future__ import annotations

from paths import SAMPLES

CAMERA_VIDEO = SAMPLES / "videos" / "orlando_bloom.avi"  # 320x240, 25 fps, clear head turns
CAMERA_SECONDS = 5.0
