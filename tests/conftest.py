"""Shared fixtures. `browser`: a headless Chromium for tests that look at pages the way a reader would."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from probegen_nb.viz.browser import chromium_path, launch


def _unavailable(reason: str) -> None:
    """CI sets PROBEGEN_REQUIRE_BROWSER=1 so a missing browser fails there instead of silently skipping."""
    if os.environ.get("PROBEGEN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (PROBEGEN_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A launched playwright (sync API) Browser on the system Chromium, closed with everything it started."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        _unavailable(f"playwright is not installed ({e})")
    if chromium_path() is None:
        _unavailable("no Chromium found (install Debian `chromium` or set PROBEGEN_CHROMIUM)")
    playwright = sync_playwright().start()
    try:
        chromium = launch(playwright)
    except Exception as e:  # noqa: BLE001 (reported as the skip/fail reason)
        playwright.stop()
        _unavailable(f"Chromium at {chromium_path()} did not start: {e}")
    try:
        yield chromium
    finally:
        chromium.close()
        playwright.stop()
