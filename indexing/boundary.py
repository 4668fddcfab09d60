"""The time boundary between the batch and speed views, kept in the filters of one alias.

Readers (the API, Kibana) query ``{prefix}-views``. It points at the batch index filtered
``start < boundary`` and at every speed index filtered ``start >= boundary``, so one time is
shown by exactly one layer. The boundary is the end of the last completed batch range; the batch
job moves it forward with one ``_aliases`` request (atomic for readers), after putting the speed
template with the new filter so that a speed index created later gets it too. Speed indices whose
whole UTC day lies far enough behind the boundary are then dropped (daily indices are the pruning
unit: this cluster has no delete-by-query).

This module also names the exact-uniques index: the batch job's exact distinct-user counts per
hour at the coarse levels, read by the serving layer by id and deliberately kept out of the alias.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from elasticsearch import Elasticsearch

from clickstream.settings import ElasticsearchSettings
from clickstream.times import DAY_MS
from indexing.templates import ViewNames, ensure_batch_index, speed_filter, template_bodies

log = structlog.get_logger(__name__)


#: Exact-uniques levels: (url, all countries), (all urls, country), (all urls, all countries).
LEVEL_URL: Final = "url"
LEVEL_COUNTRY: Final = "country"
LEVEL_ALL: Final = "all"
LEVELS: Final = (LEVEL_URL, LEVEL_COUNTRY, LEVEL_ALL)

UNIQUES_MAPPINGS: Final[dict[str, Any]] = {
    "dynamic": "strict",
    "properties": {
        "level": {"type": "keyword"},
        "url": {"type": "keyword"},
        "country": {"type": "keyword"},
        "start": {"type": "date", "format": "strict_date_optional_time||epoch_millis"},
        "unique_users": {"type": "long"},
    },
}


# --- pure parts -------------------------------------------------------------------------------


def batch_filter(boundary_ms: int) -> dict[str, Any]:
    """The alias filter of the batch index: hours before the boundary."""
    return {"range": {"start": {"lt": boundary_ms, "format": "epoch_millis"}}}


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


def boundary_of(batch_alias_filter: Any) -> int | None:
    """The boundary a batch alias filter holds (``range.start.lt``), None if it holds none."""
    try:
        value = batch_alias_filter["range"]["start"]["lt"]
    except (KeyError, TypeError):
        return None
    return int(value)


def speed_index_day(prefix: str, index: str) -> int | None:
    """Start (epoch ms) of the UTC day a speed index ``{prefix}-speed-YYYY.MM.DD`` holds."""
    match = re.fullmatch(re.escape(prefix) + r"-speed-(\d{4})\.(\d{2})\.(\d{2})", index)
    if match is None:
        return None
    year, month, day = (int(part) for part in match.groups())
    try:
        return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)
    except ValueError:
        return None


def indices_to_prune(
    prefix: str, speed_indices: list[str], boundary_ms: int, keep_days: int
) -> list[str]:
    """Speed indices whose whole UTC day ends at least ``keep_days`` days before the boundary.

    Names that are not a speed index of this prefix are never selected.
    """
    cutoff = boundary_ms - keep_days * DAY_MS
    chosen = []
    for index in speed_indices:
        day = speed_index_day(prefix, index)
        if day is not None and day + DAY_MS <= cutoff:
            chosen.append(index)
    return sorted(chosen)


def uniques_index(prefix: str) -> str:
    """The exact-uniques index (not in the alias: its documents are not views)."""
    return f"{prefix}-batch-uniques-v1"


def uniques_id(level: str, url: str | None, country: str | None, hour_ms: int) -> str:
    """The document id of one exact-uniques count: a re-run replaces it."""
    key = f"{level}\0{url or ''}\0{country or ''}\0{hour_ms}"
    return hashlib.sha256(key.encode()).hexdigest()[:40]


# --- Elasticsearch edge -----------------------------------------------------------------------


def speed_indices(client: Elasticsearch, prefix: str) -> list[str]:
    """Every existing speed index of the prefix."""
    found = client.indices.get_alias(index=ViewNames(prefix).speed_pattern, allow_no_indices=True)
    return sorted(name for name in found if speed_index_day(prefix, name) is not None)


def read_boundary(client: Elasticsearch, prefix: str) -> int | None:
    """The boundary in force (epoch ms), read from the batch index's alias filter; None before
    the first batch run."""
    names = ViewNames(prefix)
    found = client.options(ignore_status=404).indices.get_alias(
        index=names.batch_index, name=names.alias
    )
    aliases = dict(found).get(names.batch_index, {}).get("aliases", {})
    return boundary_of(aliases.get(names.alias, {}).get("filter"))


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
    client: Elasticsearch, settings: ElasticsearchSettings, boundary_ms: int, keep_days: int
) -> list[str]:
    """Delete the speed indices :func:`indices_to_prune` selects, each by name; their names."""
    prefix = settings.index_prefix
    doomed = indices_to_prune(prefix, speed_indices(client, prefix), boundary_ms, keep_days)
    for index in doomed:
        client.options(ignore_status=404).indices.delete(index=index)
    if doomed:
        log.info("boundary.pruned", indices=doomed, boundary=boundary_ms, keep_days=keep_days)
    return doomed


def ensure_uniques_index(client: Elasticsearch, settings: ElasticsearchSettings) -> str:
    """Create the exact-uniques index with its own strict mapping if absent; its name."""
    index = uniques_index(settings.index_prefix)
    client.options(ignore_status=400).indices.create(
        index=index,
        mappings=UNIQUES_MAPPINGS,
        settings={"number_of_shards": settings.shards, "number_of_replicas": settings.replicas},
    )
    return index
