"""Where a benchmark's figures are kept (bench/results/<kind>-<UTC time>.json, git-ignored), and
the percentile they are reported at."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def save(kind: str, report: dict[str, object]) -> Path:
    """Write ``report`` as indented JSON, say where, and return the path."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"saved {out}")
    return out


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
