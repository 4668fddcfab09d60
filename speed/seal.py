"""Sealed speed hours: a closed hour's partition-owned rollups merged into one per group.

The speed layer's hour rollups are per Kafka partition (each daemon writes only what it owns,
fenced by offsets), so a query over a speed hour moves one sketch per partition and group. Once
an hour is closed, a seal merges them: per (level, url, country) the sums and the union of the
sketches, written to ``<prefix>-sealed-YYYY.MM.DD`` with the hour's **fingerprint**: how many
partition documents the hour's (all, all) rollup has, and the sum of their last offsets.

A late event folded into a sealed hour changes that rollup's last offset (every change to an
hour of a partition reaches its (all, all) document, with the offset that made it), and
offsets only grow, so the fingerprint changes: the seal is **broken**, readers go back to the
partition documents for that hour (still exact), and the next pass seals it again. The (all,
all) sealed document is written last: it is the seal's marker, so readers never use a seal
whose other documents are not all written. Replays write the same documents with the same
offsets, so they never break a seal.

Run by ``clickstream seal`` (a pass; ``--every`` repeats it), under systemd by
``clickstream-seal.timer``. Nothing depends on it for exactness: without seals queries read the
partition documents, as before.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog
from datasketches import hll_sketch, hll_union
from elasticsearch import Elasticsearch
from elasticsearch.helpers import bulk, scan

from clickstream.settings import Settings
from clickstream.times import HOUR_MS, MINUTE_MS
from indexing.seals import SEALED_MAPPINGS, Fingerprint, read_speed_state
from indexing.templates import read_boundary
from indexing.views import (
    BOT_RULE_FIELDS,
    GRAIN_HOUR,
    LEVEL_ALL,
    SKETCH_TYPE,
    bot_rules_of,
    cube_id,
)
from speed.docs import rollup_source, speed_index
from speed.state import add_counts

log = structlog.get_logger(__name__)

#: An hour is sealed once the newest speed data is this far past its end: events that late
#: still break the seal (and it is made again), but the everyday stragglers do not.
SETTLE_MS: Final = 10 * MINUTE_MS
GroupKey = tuple[str, str | None, str | None]
_FIELDS: Final = [
    "level",
    "url",
    "country",
    "clicks",
    "bot_clicks",
    *BOT_RULE_FIELDS.values(),
    "users_sketch",
    "time_spent_sum_ms",
    "time_spent_count",
]


@dataclass(slots=True)
class _Merged:
    """One group's partition documents, merged."""

    clicks: int = 0
    bot_clicks: int = 0
    spent_sum: int = 0
    spent_count: int = 0
    union: Any = None
    bot_rules: dict[str, int] | None = None


def sealed_documents(
    docs: Iterable[Mapping[str, Any]], start_ms: int, lg_k: int, fingerprint: Fingerprint
) -> list[tuple[str, dict[str, Any]]]:
    """(id, source) of the sealed documents of one hour from its partition documents (any
    level; sources as the speed layer writes them), the (all, all) one last."""
    merged: dict[GroupKey, _Merged] = {}
    for doc in docs:
        key = (str(doc["level"]), doc.get("url"), doc.get("country"))
        group = merged.setdefault(key, _Merged())
        group.clicks += int(doc.get("clicks") or 0)
        group.bot_clicks += int(doc.get("bot_clicks") or 0)
        rules = bot_rules_of(doc)
        if rules:
            group.bot_rules = add_counts(group.bot_rules, rules)
        group.spent_sum += int(doc.get("time_spent_sum_ms") or 0)
        group.spent_count += int(doc.get("time_spent_count") or 0)
        encoded = doc.get("users_sketch")
        if encoded:
            if group.union is None:
                group.union = hll_union(lg_k)
            group.union.update(hll_sketch.deserialize(base64.b64decode(encoded)))
    return [
        _document(key, group, start_ms, fingerprint)
        for key, group in sorted(merged.items(), key=lambda item: _order(item[0]))
    ]


def _order(key: GroupKey) -> tuple[bool, str, str, str]:
    return (key[0] == LEVEL_ALL, key[0], key[1] or "", key[2] or "")


def _document(
    key: GroupKey, group: _Merged, start_ms: int, fingerprint: Fingerprint
) -> tuple[str, dict[str, Any]]:
    level, url, country = key
    source = rollup_source(
        (level, GRAIN_HOUR, url, country, start_ms),
        clicks=group.clicks,
        bot_clicks=group.bot_clicks,
        spent_sum=group.spent_sum,
        spent_count=group.spent_count,
        sketch=group.union.get_result(SKETCH_TYPE) if group.union is not None else None,
        bot_rules=group.bot_rules,
    )
    source.update(seal_docs=fingerprint[0], seal_offsets=fingerprint[1])
    return cube_id(level, GRAIN_HOUR, url, country, start_ms), source


def to_seal(
    fingerprints: Mapping[int, Fingerprint],
    seals: Mapping[int, Fingerprint],
    speed_until_ms: int | None,
) -> list[int]:
    """The closed hours (ended :data:`SETTLE_MS` before the newest speed data) whose seal is
    missing or broken, oldest first."""
    if speed_until_ms is None:
        return []
    closed = speed_until_ms - SETTLE_MS
    return sorted(
        hour
        for hour, found in fingerprints.items()
        if hour + HOUR_MS <= closed and seals.get(hour) != found
    )


# --- Elasticsearch edge -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SealPass:
    """What one pass did: hours sealed, hours skipped because they changed while read, and the
    documents written."""

    sealed: tuple[int, ...]
    busy: tuple[int, ...]
    documents: int


def seal_pass(client: Elasticsearch, settings: Settings) -> SealPass:
    """Seal every closed speed hour at or after the boundary whose seal is missing or broken.
    (The batch run drops the sealed days behind the boundary with the speed layer's.)"""
    prefix = settings.elasticsearch.index_prefix
    boundary = read_boundary(client, prefix)
    state = read_speed_state(client, prefix, boundary)
    sealed: list[int] = []
    busy: list[int] = []
    written = 0
    for hour in to_seal(state.fingerprints, state.seals, state.until_ms):
        count = seal_hour(client, settings, hour, state.fingerprints[hour])
        if count is None:
            busy.append(hour)
        else:
            sealed.append(hour)
            written += count
    log.info("seal.pass", sealed=len(sealed), busy=len(busy), documents=written)
    return SealPass(tuple(sealed), tuple(busy), written)


def seal_hour(
    client: Elasticsearch, settings: Settings, hour: int, fingerprint: Fingerprint
) -> int | None:
    """Seal one hour read at ``fingerprint``; the documents written, or None if the hour
    changed while it was read (a later pass seals it)."""
    prefix = settings.elasticsearch.index_prefix
    docs = _partition_hour(client, prefix, hour)
    sealed = sealed_documents(docs, hour, settings.batch.hll_lg_k, fingerprint)
    if read_speed_state(client, prefix, hour).fingerprints.get(hour) != fingerprint:
        log.info("seal.busy", hour=hour)
        return None
    index = speed_index(prefix, hour, kind="sealed")
    client.options(ignore_status=400).indices.create(
        index=index,
        mappings=SEALED_MAPPINGS,
        settings={"number_of_shards": 1, "number_of_replicas": settings.elasticsearch.replicas},
    )
    *groups, marker = sealed
    bulk(client, _actions(index, groups), chunk_size=2000, max_chunk_bytes=20_000_000)
    client.indices.refresh(index=index)
    client.index(index=index, id=marker[0], document=marker[1], refresh=True)
    return len(sealed)


def _actions(index: str, docs: list[tuple[str, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    for doc_id, source in docs:
        yield {"_op_type": "index", "_index": index, "_id": doc_id, "_source": source}


def _partition_hour(client: Elasticsearch, prefix: str, hour: int) -> Iterator[dict[str, Any]]:
    query = {
        "bool": {
            "filter": [
                {"term": {"grain": GRAIN_HOUR}},
                {"range": {"start": {"gte": hour, "lt": hour + HOUR_MS, "format": "epoch_millis"}}},
            ]
        }
    }
    for hit in scan(
        client,
        index=speed_index(prefix, hour),
        query={"query": query, "_source": _FIELDS},
        size=5000,
        scroll="2m",
    ):
        yield hit["_source"]
