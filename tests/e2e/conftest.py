"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, a real face video as
the fake webcam, and one app server (`densehead serve`, stopped by its own pid) for the session.

The server writes its session status (densehead.dashboard.sessions) to `status_file`, which the
tests read to see what the server holds for each browser session."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from e2e_setup import CAMERA_SECONDS, CAMERA_VIDEO
from paths import ASSETS, SAMPLES

from densehead.dashboard.status import STATUS_ENV
from densehead.tools.browser import (
    NO_BACKGROUND_THROTTLING,
    AppServer,
    chromium_path,
    launch_chromium,
    new_page,
    to_y4m,
)
from densehead.weights.assets import ASSETS_ENV


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    return path


@pytest.fixture(scope="session")
def camera(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """(the .y4m file, its frames as RGB)."""
    path = tmp_path_factory.mktemp("camera") / "face.y4m"
    return path, to_y4m(CAMERA_VIDEO, path, CAMERA_SECONDS)


@pytest.fixture(scope="session")
def status_file(output_dir) -> Path:
    path = output_dir / "e2e_session_status.json"
    path.unlink(missing_ok=True)
    return path


@pytest.fixture(scope="session")
def server(output_dir, status_file) -> Iterator[AppServer]:
    env = {ASSETS_ENV: str(ASSETS), STATUS_ENV: str(status_file)}
    with AppServer(output_dir / "e2e_streamlit.log", env=env) as app:
        yield app


@pytest.fixture(scope="session")
def app_url(server) -> str:
    return server.url


@pytest.fixture(scope="session")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright, chromium, camera):
    b = launch_chromium(playwright, camera[0], chromium, NO_BACKGROUND_THROTTLING)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="session")
def obama_browser(playwright, chromium, tmp_path_factory):
    """A second Chromium whose webcam shows another person (obama.mp4, one face at 320x240)."""
    y4m = tmp_path_factory.mktemp("obama") / "obama.y4m"
    to_y4m(SAMPLES / "videos" / "obama.mp4", y4m, seconds=CAMERA_SECONDS, size=(320, 240))
    b = launch_chromium(playwright, y4m, chromium, NO_BACKGROUND_THROTTLING)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def page(browser):
    pg = new_page(browser)
    try:
        yield pg
    finally:
        pg.context.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder drives the browser: mark it e2e."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)
