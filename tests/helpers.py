"""Small shared pieces for the tests: ground truth of the AFLW2000-3D samples, pipeline cache."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from paths import SAMPLES


@lru_cache(maxsize=None)
def aflw_ground_truth() -> dict:
    return json.loads((SAMPLES / "aflw2000" / "ground_truth.json").read_text())


def aflw_items() -> list[dict]:
    """The 61 annotated images; `image` is a path relative to the samples directory."""
    return aflw_ground_truth()["images"]


@lru_cache(maxsize=None)
def shared_pipeline():
    from densehead import Pipeline

    return Pipeline()


def image_path(item: dict) -> Path:
    return SAMPLES / item["image"]
