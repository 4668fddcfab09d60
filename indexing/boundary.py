"""The time boundary between the batch and speed views, kept in the filters of one alias.

Readers (the API, Kibana) query ``{prefix}-views``. It points at the batch index filtered
``start < boundary`` and at every speed index filtered ``start >= boundary``, so one time is
shown by exactly one layer. The boundary is the end of the last completed batch range; the batch
job moves it forward with one ``_aliases`` request (atomic for readers), after putting the speed
template with the new filter so that a speed index created later gets it too. Speed indices whose
whole UTC day lies far enough behind the boundary are then dropped (daily indices are the pruning
unit: this cluster has no delete-by-query).

"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import structlog
from elasticsearch import Elasticsearch

from clickstream.settings import ElasticsearchSettings
from clickstream.times import DAY_MS, HOUR_MS
from indexing.templates import ensure_batch_index, read_boundary, template_bodies
from indexing.views import ViewNames, batch_filter, speed_filter

log = structlog.get_logger(__name__)


# --- pure parts -------------------------------------------------------------------------------


def alias_actions(
    prefix: str, speed_indices: list[str], boundary_ms: int
) -> list[dict[str, dict[str, Any]]]:
    """The ``_aliases`` actions that put the boundary in force on every index at once."""
    names = ViewNames(prefix)
    actions = [
        {
            "add": {
                "index": names.batch_index,
                "alias": names.alias,
                "filter": batch_filter(boundary_ms),
            }
        }
    ]
    actions.extend(
        {"add": {"index": index, "alias": names.alias, "filter": speed_filter(boundary_ms)}}
        for index in sorted(speed_indices)
    )
    return actions


def speed_index_span(prefix: str, index: str, kind: str = "speed") -> tuple[int, int] | None:
    """``[start, end)`` (epoch ms) of what a speed index holds: a UTC day for
    ``{prefix}-{kind}-YYYY.MM.DD`` (the hour rollups), a UTC hour for
    ``{prefix}-{kind}-YYYY.MM.DD.HH`` (the minute rollups); None for any other name.
    ``kind="sealed"``: the sealed speed hours (daily)."""
    pattern = re.escape(f"{prefix}-{kind}-") + r"(\d{4})\.(\d{2})\.(\d{2})(?:\.(\d{2}))?"
    match = re.fullmatch(pattern, index)
    if match is None:
        return None
    year, month, day = (int(part) for part in match.groups()[:3])
    hour = match.group(4)
    try:
        start = int(datetime(year, month, day, int(hour or 0), tzinfo=UTC).timestamp() * 1000)
    except ValueError:
        return None
    return (start, start + (HOUR_MS if hour is not None else DAY_MS))


def indices_to_prune(
    prefix: str,
    speed_indices: list[str],
    boundary_ms: int,
    keep_days: int,
    minute_keep_hours: int = 1,
) -> list[str]:
    """Speed indices wholly behind the boundary by their margin: a daily one (hour rollups, or
    the sealed hours) whose UTC day ends at least ``keep_days`` days before it, an hourly one
    (minute rollups) whose hour ends at least ``minute_keep_hours`` hours before it.

    Names that are not a speed or sealed index of this prefix are never selected.
    """
    chosen = []
    for index in speed_indices:
        span = speed_index_span(prefix, index) or speed_index_span(prefix, index, "sealed")
        if span is None:
            continue
        daily = span[1] - span[0] == DAY_MS
        margin = keep_days * DAY_MS if daily else minute_keep_hours * HOUR_MS
        if span[1] <= boundary_ms - margin:
            chosen.append(index)
    return sorted(chosen)


# --- Elasticsearch edge -----------------------------------------------------------------------


def speed_indices(client: Elasticsearch, prefix: str) -> list[str]:
    """Every existing speed index of the prefix, the sealed hours' (speed/seal.py) included."""
    names = ViewNames(prefix)
    patterns = f"{names.speed_pattern},{names.sealed_pattern}"
    found = client.indices.get_alias(index=patterns, allow_no_indices=True)
    return sorted(
        name
        for name in found
        if speed_index_span(prefix, name) or speed_index_span(prefix, name, "sealed")
    )


def put_speed_template(
    client: Elasticsearch, settings: ElasticsearchSettings, boundary_ms: int | None
) -> None:
    """Put the speed template with the alias (filtered from ``boundary_ms`` when given)."""
    name = ViewNames(settings.index_prefix).speed_template
    client.indices.put_index_template(name=name, **template_bodies(settings, boundary_ms)[name])


def move_boundary(client: Elasticsearch, settings: ElasticsearchSettings, boundary_ms: int) -> int:
    """Put ``boundary_ms`` in force (never backwards); the boundary now in force.

    The speed template goes first (a speed index created from now on gets the new filter), then
    one ``_aliases`` request switches the batch index and every speed index together.
    """
    prefix = settings.index_prefix
    current = read_boundary(client, prefix)
    if current is not None and boundary_ms < current:
        log.warning("boundary.not_moved_back", current=current, asked=boundary_ms)
        return current
    put_speed_template(client, settings, boundary_ms)
    # The alias needs the batch index to hold the batch filter, where the boundary is read.
    ensure_batch_index(client, prefix)
    client.indices.update_aliases(
        actions=alias_actions(prefix, speed_indices(client, prefix), boundary_ms)
    )
    log.info("boundary.moved", previous=current, boundary=boundary_ms)
    return boundary_ms


def prune_speed(
    client: Elasticsearch,
    settings: ElasticsearchSettings,
    boundary_ms: int,
    keep_days: int,
    minute_keep_hours: int = 1,
) -> list[str]:
    """Delete the speed indices :func:`indices_to_prune` selects, each by name; their names."""
    prefix = settings.index_prefix
    found = speed_indices(client, prefix)
    doomed = indices_to_prune(prefix, found, boundary_ms, keep_days, minute_keep_hours)
    for index in doomed:
        client.options(ignore_status=404).indices.delete(index=index)
    if doomed:
        log.info("boundary.pruned", indices=doomed, boundary=boundary_ms, keep_days=keep_days)
    return doomed
