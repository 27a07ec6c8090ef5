"""A real headless Chromium for the browser tests: Playwright for Python driving Debian's
`chromium` package (`make deps` installs it; Playwright downloads no browser of its own).

A missing binary fails the test that asks for it: a browser test never skips.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path(os.environ.get("MARKETLOG_CHROMIUM", "/usr/bin/chromium"))
# the pictures in docs/ are refreshed on request (MARKETLOG_SCREENSHOTS=1), so that a test run
# leaves the working tree as it found it
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("MARKETLOG_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "marketlog-screenshots"
)


# module scope: the sync API runs an event loop in this thread while it is open, so every
# asyncio.run() after it (most other tests) would fail until it stops
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} missing: `make deps` installs Debian's chromium")
    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root, where Chromium refuses its sandbox
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()
