"""A real Chromium driven by Playwright. Missing browser: skipped locally, a failure in CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = "Chromium not found at /usr/bin/chromium; install it with: apt-get install -y chromium"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run the browser test, not skip it)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def browser_context(tmp_path) -> Iterator:
    """A fresh Chromium profile per test, so no cookie or cache carries over."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # headless=False: the mode comes from --headless=new in our own arguments.
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=False,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
