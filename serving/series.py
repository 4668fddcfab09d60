"""Clicks per time bucket, the batch and speed parts apart: the dashboard's main graph (pure).

A series reads the documents the query planner chooses (serving/plan.py), re-tiled so that no
document is coarser than a bucket: with **day** buckets the plan's own tiles (days, quarter
days, hours, minutes: each inside one UTC day); with **hour** buckets the batch part as hour
documents; with **minute** buckets the speed part as minute documents and the batch part, which
has nothing finer, as hour documents (each counted in the minute its hour starts). Sums per
bucket are Elasticsearch's (a date histogram), so the cost is the plan's documents at that
grain: the buckets shown times the partitions at most, never the events behind them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from clickstream.times import DAY_MS, HOUR_MS, MINUTE_MS
from serving.errors import QueryError, RangeRuleError
from serving.plan import Plan, Span

BUCKETS: Final = {"minute": MINUTE_MS, "hour": HOUR_MS, "day": DAY_MS}
BUCKET_CHOICES: Final = ("auto", *BUCKETS)
#: The most buckets one series may have (30 days of hours is 720; a week of minutes is not).
MAX_POINTS: Final = 1_500
#: ``auto`` picks minutes up to this span, hours up to :data:`HOURS_UP_TO`, then days.
MINUTES_UP_TO: Final = 3 * HOUR_MS
HOURS_UP_TO: Final = 3 * DAY_MS


def bucket_of(text: str | None, from_ms: int, to_ms: int) -> str:
    """The bucket name of ``text`` (``auto`` or nothing: chosen from the range's length);
    refused when it would make more than :data:`MAX_POINTS` buckets."""
    name = (text or "auto").strip().lower()
    if name not in BUCKET_CHOICES:
        choices = ", ".join(BUCKET_CHOICES)
        raise QueryError("bucket", f"unknown bucket {text!r}", f"use one of {choices}")
    span = to_ms - from_ms
    if name == "auto":
        return "minute" if span <= MINUTES_UP_TO else "hour" if span <= HOURS_UP_TO else "day"
    points = len(bucket_starts(from_ms, to_ms, BUCKETS[name]))
    if points > MAX_POINTS:
        raise RangeRuleError(
            "bucket",
            f"{name} buckets over this range make {points} points, more than {MAX_POINTS}",
            "use a coarser bucket (or auto) or a shorter range",
        )
    return name


def bucket_starts(from_ms: int, to_ms: int, size: int) -> list[int]:
    """The UTC-aligned bucket starts that overlap ``[from_ms, to_ms)``."""
    first = from_ms - from_ms % size
    return list(range(first, to_ms, size))


def series_plan(base: Plan, bucket: str) -> Plan:
    """``base`` re-tiled so that no document spans more than one bucket of ``bucket``."""
    if bucket == "day":
        return base
    hours = _joined((*base.hours, *base.quarters, *base.days), HOUR_MS)
    if bucket == "hour":
        return dataclasses.replace(base, hours=hours, quarters=(), days=())
    minutes = _joined((*base.speed_hours, *base.sealed_hours, *base.speed_minutes), MINUTE_MS)
    return Plan(base.level, hours=hours, speed_minutes=minutes)


def _joined(spans: Iterable[Span], size: int) -> tuple[Span, ...]:
    """Spans of bucket starts, sorted, with touching ones joined (each already ``size``-aligned:
    a span of coarser starts holds exactly the finer starts between its ends)."""
    joined: list[Span] = []
    for start, end in sorted(spans):
        if joined and joined[-1][1] >= start:
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
        else:
            joined.append((start, end))
    return tuple(joined)


@dataclass(frozen=True, slots=True)
class Point:
    """One bucket: clicks and bot clicks of each layer."""

    start_ms: int
    batch_clicks: int = 0
    batch_bot_clicks: int = 0
    speed_clicks: int = 0
    speed_bot_clicks: int = 0

    @property
    def clicks(self) -> int:
        """Clicks by people in the bucket, both layers."""
        return self.batch_clicks + self.speed_clicks

    @property
    def bot_clicks(self) -> int:
        """Clicks by bots in the bucket, both layers."""
        return self.batch_bot_clicks + self.speed_bot_clicks


#: Sums of one layer: bucket start -> (clicks, bot clicks).
Sums = Mapping[int, tuple[int, int]]


def points(from_ms: int, to_ms: int, bucket: str, batch: Sums, speed: Sums) -> list[Point]:
    """Every bucket of the range, empty ones included, with each layer's sums. Documents
    coarser than the bucket (batch hours in minute buckets) count in the bucket they start in."""
    size = BUCKETS[bucket]
    found = []
    for start in bucket_starts(from_ms, to_ms, size):
        batch_clicks, batch_bots = batch.get(start, (0, 0))
        speed_clicks, speed_bots = speed.get(start, (0, 0))
        found.append(Point(start, batch_clicks, batch_bots, speed_clicks, speed_bots))
    return found
