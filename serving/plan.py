"""Which documents answer a query: the planner (pure: no I/O).

Behind the boundary the batch layer holds views per (url, country, hour) and the cube's rollups
per level and per hour and UTC day. A query reads the coarsest of them that answers it:

* the **level** keeps only the keys the query needs: the url if it groups by url or filters by a
  url prefix, the country if it groups by country or filters by one. No url and no country is
  the level (all, all): one document per bucket, whatever the traffic behind it;
* the **grain**: whole UTC days inside the batch part read day rollups; the hours at its edges
  read hour documents (the views at the (url, country) level, hour rollups at the others). As
  before, an hour counts when it starts in the range.

At or after the boundary the speed layer's minute views answer, through the readers' alias.
"""

from __future__ import annotations

from dataclasses import dataclass

from clickstream.times import DAY_MS, HOUR_MS
from indexing.views import LEVEL_ALL, LEVEL_COUNTRY, LEVEL_URL, LEVEL_URL_COUNTRY
from serving.params import MetricsQuery

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Plan:
    """The documents of one query: batch hours and days at ``level``, then the speed tail."""

    level: str
    #: ``[start, end)`` ranges of hour documents (each hour whose start is inside).
    hours: tuple[Span, ...]
    #: ``[start, end)`` ranges of whole UTC days, read as day rollups.
    days: tuple[Span, ...]
    #: Where the speed views start (None: the range has no part at or after the boundary).
    speed_from: int | None


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


def plan(query: MetricsQuery, boundary_ms: int | None) -> Plan:
    """Tile the query's range: batch hours at the edges, whole days between, speed after."""
    level = level_of(query)
    if boundary_ms is None:  # no batch run yet: the speed layer holds everything
        return Plan(level, (), (), query.from_ms)
    speed_from = max(query.from_ms, boundary_ms) if query.to_ms > boundary_ms else None
    batch_end = min(query.to_ms, boundary_ms)
    if query.from_ms >= batch_end:
        return Plan(level, (), (), speed_from)
    first_hour = _ceil(query.from_ms, HOUR_MS)
    hours_end = _ceil(batch_end, HOUR_MS)  # past the last hour that starts before batch_end
    if first_hour >= hours_end:
        return Plan(level, (), (), speed_from)
    d0, d1 = _ceil(first_hour, DAY_MS), hours_end - hours_end % DAY_MS
    if d0 >= d1:
        return Plan(level, ((first_hour, hours_end),), (), speed_from)
    edges = tuple(span for span in ((first_hour, d0), (d1, hours_end)) if span[0] < span[1])
    return Plan(level, edges, ((d0, d1),), speed_from)


def _ceil(ms: int, size: int) -> int:
    return -(-ms // size) * size
