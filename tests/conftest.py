"""Shared fixtures: where the real samples and model files are, and where tests leave pictures."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import shared_pipeline
from paths import ASSETS, OUTPUT, SAMPLES


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    return ASSETS


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="module")
def pipe():
    """The tests' shared float mb05 pipeline (helpers.shared_pipeline)."""
    return shared_pipeline()
