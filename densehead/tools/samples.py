"""Where the benchmark commands find their sample photos and videos unless told: the shared/
folder beside the checkout (the tests look there too); DENSEHEAD_SHARED names another."""
from __future__ import annotations

import os
from pathlib import Path

from ..dashboard.serve import CHECKOUT

SHARED_ENV = "DENSEHEAD_SHARED"


def shared_dir() -> Path:
    return Path(os.environ.get(SHARED_ENV) or CHECKOUT.parent / "shared")


def sample(*parts: str) -> Path:
    """A file under shared/samples/, e.g. sample("videos", "obama.mp4")."""
    return shared_dir().joinpath("samples", *parts)
