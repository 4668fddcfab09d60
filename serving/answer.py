"""The answer to a query, and its plain-data form (JSON for the API and ``--format json``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from clickstream.times import HOUR_MS, iso
from hbase_schema.late import hour_of, waiting_events
from serving.merge import Group, Metrics, UniqueUsers
from serving.params import MetricsQuery


@dataclass(frozen=True, slots=True)
class LateEvents:
    """Late events in the ledger, waiting for the next batch run (None: ledger unreadable)."""

    waiting: int | None
    touching_range: int | None
    error: str | None = None


def late_events(
    keys: Iterable[bytes] | None,
    query: MetricsQuery,
    boundary_ms: int | None,
    error: str | None,
) -> LateEvents:
    """Distinct late events the batch views behind the boundary do not hold yet (a ledger key
    is ``hour | event key``, one per hour an event changes): all of them, and those changing an
    hour that overlaps the range. Keys of hours at or past the boundary are answered by the
    speed layer already (ingest marks hours a scheduled run may have done, conservatively), so
    they are not waiting; before the first batch run nothing is."""
    if keys is None:
        return LateEvents(None, None, error)
    keys = list(keys)
    # Of the waiting keys, those of hours that overlap the range (hours start at from - 1 h).
    in_range = [k for k in keys if query.from_ms - HOUR_MS < hour_of(k) < query.to_ms]
    return LateEvents(waiting_events(keys, boundary_ms), waiting_events(in_range, boundary_ms))


@dataclass(frozen=True, slots=True)
class Answer:
    """Merged measures of a query, with what a reader needs to trust them."""

    query: MetricsQuery
    boundary_ms: int | None
    speed_until_ms: int | None
    late: LateEvents
    total: Metrics
    groups: tuple[Group, ...]
    group_count: int
    notes: tuple[str, ...] = ()

    @property
    def late_events_waiting(self) -> int | None:
        """Distinct late events waiting for the next batch run (None: ledger unreadable)."""
        return self.late.waiting


def notes_for(
    query: MetricsQuery, boundary_ms: int | None, late_error: str | None, group_count: int = 0
) -> list[str]:
    """Caveats of an answer that the numbers alone do not show."""
    notes = []
    if query.default_top and query.top is not None and group_count > query.top:
        notes.append(
            f"showing the top {query.top} of {group_count} groups by clicks (the default; "
            "ask for more or fewer with top); the total covers every group"
        )
    if boundary_ms is not None and query.from_ms < boundary_ms:
        batch_end = min(query.to_ms, boundary_ms)
        if query.from_ms % HOUR_MS or batch_end % HOUR_MS:
            notes.append(
                "before the boundary the views are hourly: an hour counts when it starts in "
                "the range"
            )
    if late_error is not None:
        notes.append(f"late events waiting unknown: {late_error}")
    return notes


def unique_users_dict(users: UniqueUsers) -> dict[str, Any]:
    """Unique users as plain data."""
    return {
        "value": users.value,
        "exact": users.exact,
        "lower_bound": users.lower_bound,
        "upper_bound": users.upper_bound,
        "confidence": users.confidence,
        "source": users.source,
    }


def metrics_dict(metrics: Metrics) -> dict[str, Any]:
    """Measures as plain data."""
    return {
        "clicks": metrics.clicks,
        "bot_clicks": metrics.bot_clicks,
        "bot_clicks_by_rule": dict(metrics.bot_clicks_by_rule),
        "unique_users": unique_users_dict(metrics.unique_users),
        "time_spent_sum_ms": metrics.time_spent_sum_ms,
        "time_spent_count": metrics.time_spent_count,
        "clicks_without_time_spent": metrics.clicks_without_time_spent,
        "avg_time_spent_ms": metrics.avg_time_spent_ms,
        "documents": metrics.documents,
    }


def answer_dict(answer: Answer) -> dict[str, Any]:
    """The whole answer as plain data (the API's response body)."""
    query = answer.query
    return {
        "range": {"from": iso(query.from_ms), "to": iso(query.to_ms)},
        "filters": {"url_prefix": query.url_prefix, "country": query.country},
        "group_by": list(query.group_by),
        "top": query.top,
        "boundary": None if answer.boundary_ms is None else iso(answer.boundary_ms),
        "speed_until": None if answer.speed_until_ms is None else iso(answer.speed_until_ms),
        "late_events_waiting": answer.late.waiting,
        "late_events_in_range": answer.late.touching_range,
        "total": metrics_dict(answer.total),
        "group_count": answer.group_count,
        "groups": [
            {"url": g.url, "country": g.country, **metrics_dict(g.metrics)} for g in answer.groups
        ],
        "notes": list(answer.notes),
    }
