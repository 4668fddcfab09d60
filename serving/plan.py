"""Which documents answer a query: the planner (pure: no I/O).

Both layers keep rollups at four levels, (url, country), (url, all), (all, country) and
(all, all), so a query reads the coarsest level and the coarsest buckets that answer it:

* the **level** keeps only the keys the query needs: the url if it groups by url or filters by a
  url prefix, the country if it groups by country or filters by one. No url and no country is
  the level (all, all): one document per bucket (and per partition in the speed layer),
  whatever the traffic behind it;
* **behind the boundary** (the batch layer) whole UTC days read the cube's day rollups, whole
  quarter days (6 hours from midnight) at their edges its quarter-day rollups, and the hours
  left at the edges hour documents (the (url, country, hour) views at that level, the cube's
  hour rollups at the others): at most 5 hours and 3 quarter days on each side of the days.
  As before, an hour counts when it starts in the range;
* **at or after the boundary** (the speed layer, whose documents are per Kafka partition) whole
  hours read the speed layer's hour rollups (a sealed hour: its seal, one document per group
  for all partitions) and the minutes at the edges its minute rollups; a minute counts when it
  starts in the range. A range that reaches past the newest speed data
  (``speed_until``: the everyday "up to now") reads its last, unfinished hour from the hour
  rollups too: they hold exactly the minutes folded so far. That keeps the minutes, the
  documents that multiply by partitions, to the realtime queries that start inside an hour.

So a query reads about (groups + 1) x (days + edge quarter days + edge hours + speed hours x
partitions + edge minutes x partitions) documents: nothing in it grows with the event rate or the
range length beyond its count of days.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from clickstream.times import DAY_MS, HOUR_MS, MINUTE_MS
from indexing.views import (
    CUBE_GRAINS,
    GRAIN_QUARTER_DAY,
    LEVEL_ALL,
    LEVEL_COUNTRY,
    LEVEL_URL,
    LEVEL_URL_COUNTRY,
)
from serving.params import MetricsQuery

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Plan:
    """The documents of one query at ``level``: batch hours and days, speed hours and minutes.
    Each field holds ``[start, end)`` ranges of bucket starts."""

    level: str
    #: Hour documents of the batch layer (each hour whose start is inside).
    hours: tuple[Span, ...] = ()
    #: Whole quarter days of the batch layer, read as the cube's quarter-day rollups.
    quarters: tuple[Span, ...] = ()
    #: Whole UTC days of the batch layer, read as the cube's day rollups.
    days: tuple[Span, ...] = ()
    #: Whole hours of the speed layer, read as its hour rollups (one per partition).
    speed_hours: tuple[Span, ...] = ()
    #: Whole hours of the speed layer whose seal holds, read as its sealed hours (one document
    #: per group, all partitions merged: speed/seal.py).
    sealed_hours: tuple[Span, ...] = ()
    #: Minutes of the speed layer at the edges of its part (each minute whose start is inside).
    speed_minutes: tuple[Span, ...] = ()
    #: Whether the last speed hour is read whole because no speed data reaches past the range
    #: (``speed_until``): to be checked again after reading.
    open_end: bool = False


def level_of(query: MetricsQuery) -> str:
    """The coarsest level whose documents still carry every key the query filters or groups
    by."""
    url = query.url_prefix is not None or "url" in query.group_by
    country = query.country is not None or "country" in query.group_by
    if url and country:
        return LEVEL_URL_COUNTRY
    if url:
        return LEVEL_URL
    if country:
        return LEVEL_COUNTRY
    return LEVEL_ALL


def plan(
    query: MetricsQuery,
    boundary_ms: int | None,
    speed_until_ms: int | None = None,
    sealed: Collection[int] = (),
) -> Plan:
    """Tile the query's range: batch hours and days before the boundary, speed hours and
    minutes at or after it (everything is speed before the first batch run). With
    ``speed_until_ms`` (the end of the newest speed minute), a range reaching past it reads its
    last hour whole. Whole speed hours among ``sealed`` (hour starts) read their seals."""
    level = level_of(query)
    if boundary_ms is None:
        speed_from: int | None = query.from_ms
        hours: tuple[Span, ...] = ()
        quarters: tuple[Span, ...] = ()
        days: tuple[Span, ...] = ()
    else:
        speed_from = max(query.from_ms, boundary_ms) if query.to_ms > boundary_ms else None
        hours, quarters, days = _batch_tiles(query.from_ms, min(query.to_ms, boundary_ms))
    speed_hours: tuple[Span, ...] = ()
    speed_minutes: tuple[Span, ...] = ()
    open_end = False
    if speed_from is not None:
        speed_hours, speed_minutes = _speed_tiles(speed_from, query.to_ms)
        speed_hours, speed_minutes, open_end = _close_end(
            speed_hours, speed_minutes, speed_until_ms
        )
    speed_hours, sealed_hours = _split_sealed(speed_hours, frozenset(sealed))
    return Plan(level, hours, quarters, days, speed_hours, sealed_hours, speed_minutes, open_end)


def _split_sealed(
    hours: tuple[Span, ...], sealed: frozenset[int]
) -> tuple[tuple[Span, ...], tuple[Span, ...]]:
    """``hours`` as (the runs of hours without a seal, the runs of sealed ones)."""
    if not sealed:
        return hours, ()
    runs: dict[bool, list[Span]] = {False: [], True: []}
    for start, end in hours:
        for hour in range(start, end, HOUR_MS):
            kind = runs[hour in sealed]
            if kind and kind[-1][1] == hour:
                kind[-1] = (kind[-1][0], hour + HOUR_MS)
            else:
                kind.append((hour, hour + HOUR_MS))
    return tuple(runs[False]), tuple(runs[True])


def _batch_tiles(
    start: int, end: int
) -> tuple[tuple[Span, ...], tuple[Span, ...], tuple[Span, ...]]:
    """The whole UTC days of ``[start, end)``, the whole quarter days at their edges, and the
    hours (by start) left at the edges of those."""
    first_hour = _ceil(start, HOUR_MS)
    hours_end = _ceil(end, HOUR_MS)  # past the last hour that starts before end
    if first_hour >= hours_end:
        return (), (), ()
    edges, days = _tile(first_hour, hours_end, DAY_MS)
    hours: list[Span] = []
    quarters: list[Span] = []
    for edge_start, edge_end in edges:
        edge_hours, edge_quarters = _tile(edge_start, edge_end, CUBE_GRAINS[GRAIN_QUARTER_DAY])
        hours.extend(edge_hours)
        quarters.extend(edge_quarters)
    return tuple(hours), tuple(quarters), days


def _speed_tiles(start: int, end: int) -> tuple[tuple[Span, ...], tuple[Span, ...]]:
    """Minutes (by start) at the edges of ``[start, end)`` and the whole hours between."""
    first_minute = _ceil(start, MINUTE_MS)
    minutes_end = _ceil(end, MINUTE_MS)  # past the last minute that starts before end
    if first_minute >= minutes_end:
        return (), ()
    return _tile(first_minute, minutes_end, HOUR_MS)[::-1]


def _close_end(
    hours: tuple[Span, ...], minutes: tuple[Span, ...], speed_until_ms: int | None
) -> tuple[tuple[Span, ...], tuple[Span, ...], bool]:
    """Read the last minute edge as its whole hour when it starts on the hour and no speed
    data is past its end: the hour rollup then holds exactly those minutes."""
    if speed_until_ms is None or not minutes:
        return hours, minutes, False
    start, end = minutes[-1]
    if start % HOUR_MS or speed_until_ms > end:
        return hours, minutes, False
    if hours and hours[-1][1] == start:  # extends the whole hours before it
        return (*hours[:-1], (hours[-1][0], start + HOUR_MS)), minutes[:-1], True
    return (*hours, (start, start + HOUR_MS)), minutes[:-1], True


def _tile(start: int, end: int, size: int) -> tuple[tuple[Span, ...], tuple[Span, ...]]:
    """``[start, end)`` as (the edges, the whole buckets of ``size`` between)."""
    inner_start, inner_end = _ceil(start, size), end - end % size
    if inner_start >= inner_end:
        return ((start, end),), ()
    edges = tuple(span for span in ((start, inner_start), (inner_end, end)) if span[0] < span[1])
    return edges, ((inner_start, inner_end),)


def _ceil(ms: int, size: int) -> int:
    return -(-ms // size) * size
