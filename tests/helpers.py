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
    """The float mb05 whatever the CPU: "auto" takes the int8 graph on CPUs with VNNI, whose
    fits differ a little, and the tests' tolerances must hold on every machine alike (the int8
    graph's own accuracy is tested in test_compile.py, the choice in test_regressor_choice.py)."""
    from densehead import Pipeline

    return Pipeline(regressor="mb05")


def image_path(item: dict) -> Path:
    return SAMPLES / item["image"]


def run_coroutine(coroutine):
    """`asyncio.run(coroutine)` on a thread of its own: in a whole run, the browser tests'
    Playwright (a session fixture) keeps an event loop running on the main thread, where
    asyncio.run refuses to start another."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()

