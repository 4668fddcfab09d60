"""The read side of the speed layer's state: how far it reaches, and which sealed hours hold.

A sealed hour (written by speed/seal.py) is a closed speed hour whose partition-owned rollups
were merged into one document per group. Its **fingerprint** is that of the hour when it was
read: how many partition documents the hour's (all, all) rollup has, and the sum of their last
offsets. Every change to an hour of a partition reaches that partition's (all, all) rollup of
the hour with the offset that made it, and offsets only grow, so a seal whose fingerprint is
not the hour's current one is **broken** (a late event arrived since) and must not be read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from elasticsearch import Elasticsearch

from clickstream.times import MINUTE_MS
from indexing.views import GRAIN_HOUR, LEVEL_ALL, VIEW_PROPERTIES, ViewNames

#: (partition documents of the hour's (all, all) rollup, sum of their last offsets).
Fingerprint = tuple[int, int]

#: Mapping of a sealed hour's documents: the view measures, level and grain, the fingerprint.
SEALED_MAPPINGS: Final[dict[str, Any]] = {
    "dynamic": "strict",
    "properties": {
        **VIEW_PROPERTIES,
        "level": {"type": "keyword"},
        "grain": {"type": "keyword"},
        "seal_docs": {"type": "long"},
        "seal_offsets": {"type": "long"},
    },
}


class SpeedStateError(RuntimeError):
    """Elasticsearch failed one of the requests of :func:`read_speed_state`."""


#: Most hours one read considers (the speed layer keeps days, not months).
_MAX_HOURS: Final = 10_000


@dataclass(frozen=True, slots=True)
class SpeedState:
    """What the speed layer holds at or after some time (the boundary)."""

    #: End of the newest speed minute (epoch ms); None without any speed document.
    until_ms: int | None
    #: Each speed hour's current fingerprint, by hour start.
    fingerprints: Mapping[int, Fingerprint]
    #: Each sealed hour's fingerprint when it was sealed, by hour start.
    seals: Mapping[int, Fingerprint]

    @property
    def sealed_hours(self) -> frozenset[int]:
        """The hours whose seal holds: it matches the partition documents as they are now."""
        return frozenset(h for h, seal in self.seals.items() if self.fingerprints.get(h) == seal)


def all_hours(from_ms: int | None) -> dict[str, Any]:
    """The query of the (all, all) hour rollups (starting at or after ``from_ms``)."""
    clauses: list[dict[str, Any]] = [
        {"term": {"grain": GRAIN_HOUR}},
        {"term": {"level": LEVEL_ALL}},
    ]
    if from_ms is not None:
        clauses.append({"range": {"start": {"gte": from_ms, "format": "epoch_millis"}}})
    return {"bool": {"filter": clauses}}


def read_speed_state(client: Elasticsearch, prefix: str, from_ms: int | None) -> SpeedState:
    """The speed layer's reach, fingerprints and seals (hours from ``from_ms``): one
    multi-search of three small requests."""
    names = ViewNames(prefix)
    options = {"ignore_unavailable": True, "allow_no_indices": True}
    hours = all_hours(from_ms)
    # Three requests: the newest start alone (Elasticsearch answers a max over everything from
    # the index's points, without visiting documents; under a filter it would visit them all),
    # the fingerprints over the few (all, all) hour rollups, the seals' markers.
    response = client.msearch(
        searches=[
            {"index": names.speed_pattern, **options},
            {"size": 0, "aggs": {"newest": {"max": {"field": "start"}}}},
            {"index": names.speed_pattern, **options},
            {
                "size": 0,
                "query": hours,
                "aggs": {
                    "start": {
                        "terms": {"field": "start", "size": _MAX_HOURS},
                        "aggs": {"offsets": {"sum": {"field": "last_offset"}}},
                    }
                },
            },
            {"index": names.sealed_pattern, **options},
            {
                "size": _MAX_HOURS,
                "query": hours,
                "_source": ["start", "seal_docs", "seal_offsets"],
            },
        ]
    )
    newest, fingerprints, sealed = response["responses"]
    for part in (newest, fingerprints, sealed):
        if "error" in part:
            raise SpeedStateError(f"reading the speed layer's state failed: {part['error']}")
    value = newest.get("aggregations", {}).get("newest", {}).get("value")
    buckets = fingerprints.get("aggregations", {}).get("start", {}).get("buckets", [])
    return SpeedState(
        until_ms=None if value is None else int(value) + MINUTE_MS,
        fingerprints={
            int(b["key"]): (int(b["doc_count"]), int(b["offsets"]["value"])) for b in buckets
        },
        seals=seals_of(sealed["hits"]["hits"]),
    )


def seals_of(hits: Iterable[Mapping[str, Any]]) -> dict[int, Fingerprint]:
    """The fingerprint each seal's marker was written with, by hour."""
    found: dict[int, Fingerprint] = {}
    for hit in hits:
        source = hit["_source"]
        found[int(source["start"])] = (int(source["seal_docs"]), int(source["seal_offsets"]))
    return found
