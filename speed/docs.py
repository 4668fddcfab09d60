"""The rollup documents one daemon owns: applied contributions, rendered for Elasticsearch.

Pure: the store (speed/store.py) loads the documents a batch touches that are not in memory
(``missing``), and writes what ``render`` returns with the document's last offset as its
external version.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from datasketches import hll_sketch

from indexing.views import GRAIN_HOUR, GRAIN_MINUTE, LEVEL_URL_COUNTRY, bot_rules_of, view_source
from speed.state import Contribution, RollupKey, SpeedDoc, span_of


@dataclass(frozen=True, slots=True)
class Rendered:
    """One document as it goes to Elasticsearch."""

    index: str
    doc_id: str
    version: int
    source: dict[str, Any]


def speed_index(prefix: str, start_ms: int, grain: str = GRAIN_HOUR, kind: str = "speed") -> str:
    """The speed index of a bucket: daily for hours, ``<prefix>-speed-YYYY.MM.DD``; hourly for
    minutes, ``<prefix>-speed-YYYY.MM.DD.HH``, so that the minute rollups, most of the
    documents, are dropped hours behind the boundary rather than days
    (``serving.speed_minute_keep_hours``). ``kind="sealed"``: the sealed hours (speed/seal.py)."""
    form = "%Y.%m.%d.%H" if grain == GRAIN_MINUTE else "%Y.%m.%d"
    return f"{prefix}-{kind}-{time.strftime(form, time.gmtime(start_ms / 1000))}"


def render(doc: SpeedDoc, prefix: str) -> Rendered:
    """The Elasticsearch form of ``doc`` (sketch compact-serialised, base64; url or country
    absent where its level counts all of them, as in the batch cube)."""
    _, grain, _, _, start = doc.key
    source = rollup_source(
        doc.key,
        clicks=doc.clicks,
        bot_clicks=doc.bot_clicks,
        spent_sum=doc.spent_sum,
        spent_count=doc.spent_count,
        sketch=doc.sketch,
        bot_rules=doc.bot_rules,
    )
    source.update(partition=doc.partition, last_offset=doc.last_offset)
    return Rendered(speed_index(prefix, start, grain), doc.doc_id, doc.last_offset, source)


def rollup_source(
    key: RollupKey,
    *,
    clicks: int,
    bot_clicks: int,
    spent_sum: int,
    spent_count: int,
    sketch: hll_sketch | None,
    bot_rules: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The ``_source`` of a speed rollup (a partition's, or a sealed hour's): the view fields,
    level and grain, url or country absent where the level counts all of them."""
    level, grain, url, country, start = key
    source = view_source(
        url=url,
        country=country,
        start_ms=start,
        clicks=clicks,
        bot_clicks=bot_clicks,
        unique_users=round(sketch.get_estimate()) if sketch is not None else 0,
        users_sketch=bytes(sketch.serialize_compact()) if sketch is not None else None,
        time_spent_sum_ms=spent_sum,
        time_spent_count=spent_count,
        bot_clicks_by_rule=bot_rules,
    )
    source.update(level=level, grain=grain)
    if url is None:
        del source["url"]
    if country is None:
        del source["country"]
    return source


def parse(partition: int, source: Mapping[str, Any], lg_k: int) -> SpeedDoc:
    """A stored document back into its in-memory form (one written before the rollups, without
    level and grain, is a (url, country, minute) document)."""
    encoded = source.get("users_sketch")
    sketch = hll_sketch.deserialize(base64.b64decode(encoded)) if encoded else None
    key: RollupKey = (
        source.get("level") or LEVEL_URL_COUNTRY,
        source.get("grain") or GRAIN_MINUTE,
        source.get("url"),
        source.get("country"),
        int(source["start"]),
    )
    return SpeedDoc(
        partition=partition,
        key=key,
        lg_k=lg_k,
        clicks=int(source["clicks"]),
        bot_clicks=int(source["bot_clicks"]),
        spent_sum=int(source["time_spent_sum_ms"]),
        spent_count=int(source["time_spent_count"]),
        last_offset=int(source["last_offset"]),
        sketch=sketch,
        bot_rules=bot_rules_of(source),
    )


class DocTable:
    """The documents of every partition this daemon owns, keyed by (partition, doc key)."""

    def __init__(self, lg_k: int) -> None:
        self.lg_k = lg_k
        self.docs: dict[tuple[int, RollupKey], SpeedDoc] = {}

    def missing(self, contributions: Iterable[Contribution]) -> list[tuple[int, RollupKey]]:
        """Documents the contributions touch that are not in memory (to load, or new)."""
        wanted = {(c.partition, c.doc_key) for c in contributions}
        return sorted((key for key in wanted if key not in self.docs), key=_sort_key)

    def add(self, docs: Iterable[SpeedDoc]) -> None:
        """Documents loaded from the store (or new, empty ones)."""
        for doc in docs:
            self.docs[(doc.partition, doc.key)] = doc

    def new(self, partition: int, key: RollupKey) -> SpeedDoc:
        """An empty document (no contribution folded yet)."""
        return SpeedDoc(partition, key, self.lg_k)

    def apply(self, contributions: Iterable[Contribution]) -> list[SpeedDoc]:
        """Fold the contributions in (each once, by offset); the documents that changed."""
        changed: dict[tuple[int, RollupKey], SpeedDoc] = {}
        for contribution in contributions:
            key = (contribution.partition, contribution.doc_key)
            doc = self.docs.get(key)
            if doc is None:
                doc = self.docs[key] = self.new(*key)
            if doc.apply(contribution):
                changed[key] = doc
        return list(changed.values())

    def drop_partition(self, partition: int) -> None:
        """Forget a revoked partition's documents (its new owner restores them)."""
        for key in [k for k in self.docs if k[0] == partition]:
            del self.docs[key]

    def evict(self, partition: int, floor_ms: int) -> int:
        """Forget documents whose bucket ends at or below ``floor_ms``; how many."""
        old = [k for k in self.docs if k[0] == partition and k[1][4] + span_of(k[1]) <= floor_ms]
        for key in old:
            del self.docs[key]
        return len(old)


def _sort_key(item: tuple[int, RollupKey]) -> tuple[int, str, str, str, str, int]:
    """Documents in a stable order (None sorts as the empty string)."""
    partition, (level, grain, url, country, start) = item
    return (partition, level, grain, url or "", country or "", start)


__all__ = ["DocTable", "Rendered", "parse", "render", "rollup_source", "speed_index"]
