"""Browser fixtures: Debian's chromium driven by Playwright, and a real hub to point it at.

No browser is ever downloaded: Playwright launches ``shutil.which("chromium")``. Without
one the browser tests skip, except on CI (``CI=true``), where they fail: CI installs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.conftest import make_settings, server

__all__ = ["browser", "chromium_path", "make_settings", "server"]

CHROMIUM = shutil.which("chromium")


@pytest.fixture
def chromium_path() -> str:
    """The system chromium, or skip (fail on CI, which installs it)."""
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("no chromium on PATH")
    try:
        import playwright  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("playwright is not installed (the test extra)")
        pytest.skip("playwright is not installed")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Any]:
    """A headless chromium (Playwright's async API, in the test's event loop)."""
    from playwright.async_api import async_playwright

    pw = await async_playwright().start()
    chromium = await pw.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
    try:
        yield chromium
    finally:
        await chromium.close()
        await pw.stop()
