"""Screenshots of the apps' screens for docs/apps.md, taken by the browser tests that visit them.

A test marked ``screenshots`` calls ``screenshot(page, name)`` on each screen it reaches; the PNG is written only
when ``SCREENSHOTS_DIR`` is set (``make screenshots`` sets it to ``docs/apps`` and runs the tests marked
``screenshots``), so an ordinary test run leaves the docs untouched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

VIEWPORT = {"width": 1100, "height": 800}


def screenshot(page: Any, name: str, full_page: bool = True) -> Path | None:
    """Write ``<SCREENSHOTS_DIR>/<name>.png`` of the page as it is now (None when screenshots are off)."""
    folder = os.environ.get("SCREENSHOTS_DIR")
    if not folder:
        return None
    out = Path(folder) if Path(folder).is_absolute() else ROOT / folder
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
