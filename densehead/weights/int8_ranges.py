"""The int8 regressor's calibration: the range of every activation of the float graph over real
face crops, stored per checkpoint (by its sha256) in ``int8_ranges.json`` beside this module.

The int8 graph needs those ranges at compile time, on machines that have the checkpoint but no
face images, so they are measured once (densehead.tools.calibrate) and shipped. A checkpoint
without stored ranges cannot be compiled to int8: the error names the command that calibrates it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .assets import ModelFileError
from .hashing import file_sha256

RANGES_FILE = Path(__file__).with_name("int8_ranges.json")
CALIBRATE = "python -m densehead.tools.calibrate VIDEO [VIDEO ...]"


def stored_ranges(checkpoint: Path) -> dict[str, tuple[float, float]]:
    """The calibrated activation ranges of this checkpoint (by content hash)."""
    entry = load_table().get(file_sha256(Path(checkpoint)))
    if entry is None:
        raise ModelFileError(checkpoint, "has no int8 calibration: use the float regressor, or "
                             f"calibrate it on videos of faces with `{CALIBRATE}`")
    return {name: (float(low), float(high)) for name, (low, high) in entry["ranges"].items()}


def ranges_digest(checkpoint: Path) -> str:
    """8 hex digits naming this checkpoint's stored calibration (part of the int8 graph's
    cache key, so that a recalibration compiles it again)."""
    ranges = stored_ranges(checkpoint)
    return hashlib.sha256(json.dumps(sorted(ranges.items())).encode()).hexdigest()[:8]


def load_table() -> dict:
    """Every stored calibration, by checkpoint sha256."""
    return json.loads(RANGES_FILE.read_text()) if RANGES_FILE.is_file() else {}
