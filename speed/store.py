"""The speed documents in Elasticsearch: loaded on a cache miss, written with external versions.

Every document is written with ``version_type=external`` and its last folded offset as the
version. Elasticsearch keeps the higher version, so a replayed write (same offset) or a stale
owner's write after a rebalance (lower offset) is refused with 409 and changes nothing; that
refusal is the expected outcome, not an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from elasticsearch import ApiError, Elasticsearch, TransportError

from clickstream.errors import RetriableError
from indexing.views import speed_doc_id
from speed.docs import Rendered, parse, speed_index
from speed.state import DocKey, SpeedDoc

log = structlog.get_logger(__name__)


class SpeedStore:
    """Reads and writes one index prefix's speed documents."""

    def __init__(self, client: Elasticsearch, prefix: str, lg_k: int) -> None:
        self._client = client
        self.prefix = prefix
        self.lg_k = lg_k

    def load(self, keys: Sequence[tuple[int, DocKey]]) -> list[SpeedDoc]:
        """The stored documents among ``keys`` (absent ones are simply not returned)."""
        if not keys:
            return []
        docs = [
            {"_index": speed_index(self.prefix, k[2]), "_id": speed_doc_id(p, *k)} for p, k in keys
        ]
        try:
            response = self._client.mget(docs=docs, source_excludes=["avg_time_spent_ms"])
        except (ApiError, TransportError) as exc:
            raise RetriableError(f"Elasticsearch mget of speed documents failed: {exc}") from exc
        found = []
        for (partition, _), item in zip(keys, response["docs"], strict=True):
            if item.get("found"):
                found.append(parse(partition, item["_source"], self.lg_k))
            elif "error" in item and item["error"].get("type") != "index_not_found_exception":
                raise RetriableError(
                    f"Elasticsearch mget failed for {item['_id']}: {item['error']}"
                )
        return found

    def write(self, rendered: Sequence[Rendered]) -> int:
        """Index every document; how many were written (the rest were already as new)."""
        if not rendered:
            return 0
        operations: list[dict[str, Any]] = []
        for doc in rendered:
            operations.append(
                {
                    "index": {
                        "_index": doc.index,
                        "_id": doc.doc_id,
                        "version": doc.version,
                        "version_type": "external",
                    }
                }
            )
            operations.append(doc.source)
        try:
            response = self._client.bulk(operations=operations)
        except (ApiError, TransportError) as exc:
            raise RetriableError(f"Elasticsearch bulk of speed documents failed: {exc}") from exc
        written = stale = 0
        failures = []
        for item in response["items"]:
            result = item["index"]
            status = result.get("status", 500)
            if status < 300:
                written += 1
            elif status == 409:
                stale += 1
            else:
                failures.append(result.get("error"))
        if failures:
            raise RetriableError(
                f"Elasticsearch refused {len(failures)} speed documents: {failures[:2]}"
            )
        if stale:
            log.debug("speed.stale_writes", count=stale)
        return written

    def close(self) -> None:
        """Close the client."""
        self._client.close()
