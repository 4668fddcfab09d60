"""The batch watermark: which hours are done, kept in one Elasticsearch document.

Written only after a range's views are indexed, so a crash mid-run leaves the watermark where it
was and the next run recomputes the range (its writes are idempotent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from elasticsearch import Elasticsearch, NotFoundError

from clickstream.settings import ElasticsearchSettings

STATE_ID = "watermark"


@dataclass(frozen=True, slots=True)
class Watermark:
    """The end of the last completed batch range (exclusive), in epoch ms; None if never run.
    With it, when read back: the last range recorded and when (epoch ms)."""

    completed_until_ms: int | None
    last_range: tuple[int, int] | None = None
    updated_at_ms: int | None = None


def state_index(prefix: str) -> str:
    """The index holding the batch state."""
    return f"{prefix}-state"


def ensure_state_index(client: Elasticsearch, settings: ElasticsearchSettings) -> None:
    """Create the state index if absent (one shard, the settings' replicas)."""
    client.options(ignore_status=400).indices.create(
        index=state_index(settings.index_prefix),
        settings={"number_of_shards": 1, "number_of_replicas": settings.replicas},
    )


def read_watermark(client: Elasticsearch, prefix: str) -> Watermark:
    """The stored watermark (None when no batch has completed yet)."""
    try:
        doc = client.get(index=state_index(prefix), id=STATE_ID)
    except NotFoundError:
        return Watermark(None)
    source = doc["_source"]
    last = source.get("last_range")
    return Watermark(
        source.get("completed_until_ms"),
        (last[0], last[1]) if last else None,
        source.get("updated_at_ms"),
    )


def advance_watermark(client: Elasticsearch, prefix: str, t0_ms: int, t1_ms: int) -> Watermark:
    """Record ``[t0, t1)`` as completed: the watermark moves to ``t1`` if that is later."""
    current = read_watermark(client, prefix).completed_until_ms
    until = t1_ms if current is None else max(current, t1_ms)
    client.index(
        index=state_index(prefix),
        id=STATE_ID,
        document={
            "completed_until_ms": until,
            "last_range": [t0_ms, t1_ms],
            "updated_at_ms": int(time.time() * 1000),
        },
        refresh="wait_for",
    )
    return Watermark(until)
