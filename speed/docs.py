"""The minute documents one daemon owns: applied contributions, rendered for Elasticsearch.

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

from clickstream.times import MINUTE_MS
from indexing.views import view_source
from speed.state import Contribution, DocKey, SpeedDoc


@dataclass(frozen=True, slots=True)
class Rendered:
    """One document as it goes to Elasticsearch."""

    index: str
    doc_id: str
    version: int
    source: dict[str, Any]


def speed_index(prefix: str, minute_ms: int) -> str:
    """The daily speed index of a minute: ``<prefix>-speed-YYYY.MM.DD`` (UTC)."""
    return f"{prefix}-speed-{time.strftime('%Y.%m.%d', time.gmtime(minute_ms / 1000))}"


def render(doc: SpeedDoc, prefix: str) -> Rendered:
    """The Elasticsearch form of ``doc`` (sketch compact-serialised, base64)."""
    url, country, minute = doc.key
    sketch = doc.sketch
    source = view_source(
        url=url,
        country=country,
        start_ms=minute,
        clicks=doc.clicks,
        bot_clicks=doc.bot_clicks,
        unique_users=round(sketch.get_estimate()) if sketch is not None else 0,
        users_sketch=sketch.serialize_compact() if sketch is not None else None,
        time_spent_sum_ms=doc.spent_sum,
        time_spent_count=doc.spent_count,
    )
    source.update(partition=doc.partition, last_offset=doc.last_offset)
    return Rendered(speed_index(prefix, minute), doc.doc_id, doc.last_offset, source)


def parse(partition: int, source: Mapping[str, Any], lg_k: int) -> SpeedDoc:
    """A stored document back into its in-memory form."""
    encoded = source.get("users_sketch")
    sketch = hll_sketch.deserialize(base64.b64decode(encoded)) if encoded else None
    return SpeedDoc(
        partition=partition,
        key=(source["url"], source["country"], int(source["start"])),
        lg_k=lg_k,
        clicks=int(source["clicks"]),
        bot_clicks=int(source["bot_clicks"]),
        spent_sum=int(source["time_spent_sum_ms"]),
        spent_count=int(source["time_spent_count"]),
        last_offset=int(source["last_offset"]),
        sketch=sketch,
    )


class DocTable:
    """The documents of every partition this daemon owns, keyed by (partition, doc key)."""

    def __init__(self, lg_k: int) -> None:
        self.lg_k = lg_k
        self.docs: dict[tuple[int, DocKey], SpeedDoc] = {}

    def missing(self, contributions: Iterable[Contribution]) -> list[tuple[int, DocKey]]:
        """Documents the contributions touch that are not in memory (to load, or new)."""
        wanted = {(c.partition, c.doc_key) for c in contributions}
        return sorted(key for key in wanted if key not in self.docs)

    def add(self, docs: Iterable[SpeedDoc]) -> None:
        """Documents loaded from the store (or new, empty ones)."""
        for doc in docs:
            self.docs[(doc.partition, doc.key)] = doc

    def new(self, partition: int, key: DocKey) -> SpeedDoc:
        """An empty document (no contribution folded yet)."""
        return SpeedDoc(partition, key, self.lg_k)

    def apply(self, contributions: Iterable[Contribution]) -> list[SpeedDoc]:
        """Fold the contributions in (each once, by offset); the documents that changed."""
        changed: dict[tuple[int, DocKey], SpeedDoc] = {}
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
        """Forget documents of minutes wholly below ``floor_ms``; how many."""
        old = [k for k in self.docs if k[0] == partition and k[1][2] + MINUTE_MS <= floor_ms]
        for key in old:
            del self.docs[key]
        return len(old)


__all__ = ["DocTable", "Rendered", "parse", "render", "speed_index"]
