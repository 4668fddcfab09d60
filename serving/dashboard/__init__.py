"""The dashboard: one page served by ``clickstream serve`` at ``/``, reading only the public API.

``static/`` holds the page (``index.html``, ``app.js``, ``app.css``: no framework, no build
step) and ``static/vendor/``, the chart library (uPlot) that ``make assets`` installs from the
npm registry with the committed ``package.json`` and lockfile and copies there. The wheel built
from a checkout that ran ``make assets`` carries them, so an installation needs no Node.js.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

DASHBOARD_DIR: Final = Path(__file__).resolve().parent / "static"
#: Files ``make assets`` puts in ``static/vendor`` (from node_modules/uplot/dist).
VENDOR_FILES: Final = ("uPlot.iife.min.js", "uPlot.min.css")


def missing_assets() -> list[str]:
    """The built files the page needs that are not there (empty when it can be served)."""
    return [name for name in VENDOR_FILES if not (DASHBOARD_DIR / "vendor" / name).is_file()]
