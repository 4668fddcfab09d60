"""Where the tests find the checkout's files and the shared test data (``../shared`` beside the
checkout, as CI lays it out)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
GEO_DIR: Final = ROOT.parent / "shared" / "testdata" / "geoip"
GEO_DB: Final = GEO_DIR / "GeoIP2-City-Test.mmdb"
