"""Shared fixtures: where the real samples and model files are, and where tests leave pictures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DENSEHEAD_SHARED", ROOT.parent / "shared"))
SAMPLES = SHARED / "samples"
ASSETS = Path(os.environ.get("DENSEHEAD_ASSETS", SHARED / "assets"))
OUTPUT = ROOT / "test-output"


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
