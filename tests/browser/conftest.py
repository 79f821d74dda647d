"""A real Chromium driven by Playwright. Missing browser: skipped locally, a failure in CI.

Every page opened in `browser_context` is watched for Content-Security-Policy violations (Chromium
logs "Refused to …" for each blocked script, style, handler or connection); a test that caused one
fails at teardown, so a template or script the policy blocks can't slip in unnoticed."""

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
CSP_MARKERS = ("Content Security Policy", "Refused to")
# Belt and braces next to the console: the DOM event fires for every violation, reported or not.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error("Content Security Policy violation: " + event.violatedDirective + " blocked "
    + (event.blockedURI || "inline") + " at " + event.sourceFile + ":" + event.lineNumber);
});
"""


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
        violations: list[str] = []

        def on_console(message) -> None:
            if any(marker in message.text for marker in CSP_MARKERS):
                violations.append(f"{message.type}: {message.text}")

        context.on("console", on_console)
        context.add_init_script(REPORT_VIOLATIONS)
        try:
            yield context
        finally:
            context.close()
        if violations:
            pytest.fail("Content-Security-Policy violations in the browser:\n" + "\n".join(violations), pytrace=False)


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
