"""Where the tests find the checkout, the real samples and model files, and where they leave
pictures for a person to look at."""
from __future__ import annotations

import os
from pathlib import Path

from densehead.tools.samples import shared_dir

ROOT = Path(__file__).resolve().parent.parent
SHARED = shared_dir()
SAMPLES = SHARED / "samples"
ASSETS = Path(os.environ.get("DENSEHEAD_ASSETS", SHARED / "assets"))
OUTPUT = ROOT / "test-output"
