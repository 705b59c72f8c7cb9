"""Where the browser tests find the samples and model files, and which video is the webcam."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("DENSEHEAD_SHARED", ROOT.parent / "shared"))
SAMPLES = SHARED / "samples"
ASSETS = Path(os.environ.get("DENSEHEAD_ASSETS", SHARED / "assets"))

CAMERA_VIDEO = SAMPLES / "videos" / "orlando_bloom.avi"  # 320x240, 25 fps, clear head turns
CAMERA_SECONDS = 5.0
