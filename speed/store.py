"""The speed documents in Elasticsearch: loaded on a cache miss, written with external versions.

Every document is written with ``version_type=external`` and its last folded offset as the
version. Elasticsearch keeps the higher version, so a replayed write (same offset) or a stale
owner's write after a rebalance (lower offset) is refused with 409 and changes nothing; that
refusal is the expected outcome, not an error. Any other refusal is classified
(indexing/failures.py): an overloaded or recovering cluster is retried, an index whose mapping
refuses every document stops the daemon with a SchemaError naming the fix, and a document
refused for its own value is recorded and left behind (the batch layer's views correct it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from elasticsearch import ApiError, Elasticsearch, TransportError

from clickstream.errors import Failure, RetriableError, SchemaError
from indexing.failures import PARSING_TYPES, classify_bulk_item, error_type, mapping_mismatches
from indexing.views import (
    GRAIN_HOUR,
    GRAIN_MINUTE,
    SPEED_PROPERTIES,
    VIEW_PROPERTIES,
    speed_doc_id,
)
from speed.docs import Rendered, parse, speed_index
from speed.state import RollupKey, SpeedDoc

log = structlog.get_logger(__name__)

#: The fields every speed document carries, with the types the pipeline's template maps.
SPEED_FIELDS = {**VIEW_PROPERTIES, **SPEED_PROPERTIES}


@dataclass(frozen=True, slots=True)
class Rejected:
    """A speed document Elasticsearch refused for its own value: left behind, not retried."""

    index: str
    doc_id: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Written:
    """What a bulk write did: documents written, already as new (409), refused for good."""

    written: int
    stale: int = 0
    rejected: tuple[Rejected, ...] = ()


class SpeedStore:
    """Reads and writes one index prefix's speed documents."""

    def __init__(self, client: Elasticsearch, prefix: str, lg_k: int) -> None:
        self._client = client
        self.prefix = prefix
        self.lg_k = lg_k
        #: Daily index -> whether it holds minute documents (written by the releases before
        #: minutes had hourly indices); asked once per index.
        self._minutes_in_day: dict[str, bool] = {}
        #: Id -> the daily index of each minute document found there: rewritten in place, so
        #: no minute is ever in two indices.
        self._legacy: dict[str, str] = {}

    def load(self, keys: Sequence[tuple[int, RollupKey]]) -> list[SpeedDoc]:
        """The stored documents among ``keys`` (absent ones are simply not returned). A minute
        document not in its hourly index is looked for in its day's index, if that one holds
        minute documents of an older release."""
        if not keys:
            return []
        located = [(p, k, speed_index(self.prefix, k[4], k[1])) for p, k in keys]
        found, missing = self._mget(located)
        older = [
            (p, k, day)
            for p, k, _ in missing
            if k[1] == GRAIN_MINUTE
            and self._holds_minutes(day := speed_index(self.prefix, k[4], GRAIN_HOUR))
        ]
        if older:
            legacy, _ = self._mget(older)
            for doc in legacy:
                self._legacy[doc.doc_id] = speed_index(self.prefix, doc.key[4], GRAIN_HOUR)
            found.extend(legacy)
        return found

    def _mget(
        self, located: Sequence[tuple[int, RollupKey, str]]
    ) -> tuple[list[SpeedDoc], list[tuple[int, RollupKey, str]]]:
        """(the documents found, the keys not found) among (partition, key, index)."""
        docs = [{"_index": index, "_id": speed_doc_id(p, k)} for p, k, index in located]
        try:
            response = self._client.mget(docs=docs, source_excludes=["avg_time_spent_ms"])
        except (ApiError, TransportError) as exc:
            raise RetriableError(f"Elasticsearch mget of speed documents failed: {exc}") from exc
        found = []
        missing = []
        for where, item in zip(located, response["docs"], strict=True):
            if item.get("found"):
                found.append(parse(where[0], item["_source"], self.lg_k))
            elif "error" in item and item["error"].get("type") != "index_not_found_exception":
                raise RetriableError(
                    f"Elasticsearch mget failed for {item['_id']}: {item['error']}"
                )
            else:
                missing.append(where)
        return found, missing

    def _holds_minutes(self, day_index: str) -> bool:
        """Whether a daily speed index holds minute documents (asked once, then remembered:
        this release writes none there)."""
        known = self._minutes_in_day.get(day_index)
        if known is None:
            minutes = {
                "bool": {
                    "should": [
                        {"term": {"grain": GRAIN_MINUTE}},
                        {"bool": {"must_not": {"exists": {"field": "grain"}}}},
                    ],
                    "minimum_should_match": 1,
                }
            }
            try:
                response = self._client.options(ignore_status=404).count(
                    index=day_index, query=minutes
                )
            except (ApiError, TransportError) as exc:
                raise RetriableError(f"Elasticsearch count of {day_index} failed: {exc}") from exc
            known = self._minutes_in_day[day_index] = int(response.get("count", 0)) > 0
        return known

    def write(self, rendered: Sequence[Rendered]) -> Written:
        """Index every document: RetriableError if the cluster should be asked again,
        SchemaError if an index refuses the documents as such; else what was written, and the
        documents refused for their own value (logged here, counted by the caller)."""
        if not rendered:
            return Written(0)
        operations: list[dict[str, Any]] = []
        for doc in rendered:
            operations.append(
                {
                    "index": {
                        "_index": self._legacy.get(doc.doc_id, doc.index),
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
        written, stale, failed = _outcome(response["items"])
        for result in failed[Failure.CONFIGURATION]:
            raise self._refused_index(result)
        for result in failed[Failure.DOCUMENT]:
            if error_type(result) in PARSING_TYPES:
                self._check_mapping(result)
        if failed[Failure.RETRIABLE]:
            errors = [result.get("error") for result in failed[Failure.RETRIABLE]]
            raise RetriableError(
                f"Elasticsearch refused {len(errors)} speed documents for now: {errors[:2]}"
            )
        rejected = tuple(
            Rejected(
                str(result.get("_index", "")),
                str(result.get("_id", "")),
                error_type(result) or f"status_{result.get('status')}",
                str((result.get("error") or {}).get("reason", ""))[:300],
            )
            for result in failed[Failure.DOCUMENT]
        )
        if rejected:
            # One line per batch, naming each refused document (they are rare by nature).
            log.warning(
                "speed.documents_rejected",
                count=len(rejected),
                documents=[
                    {"index": r.index, "id": r.doc_id, "reason": r.reason, "detail": r.detail}
                    for r in rejected[:20]
                ],
                note="left behind: the speed view misses them until the batch covers the hour",
            )
        if stale:
            log.debug("speed.stale_writes", count=stale)
        return Written(written, stale, rejected)

    def _check_mapping(self, result: Mapping[str, Any]) -> None:
        """A document that does not parse is its own fault only if its index maps every speed
        field as the pipeline does; otherwise SchemaError, naming the differing fields."""
        index = str(result.get("_index", ""))
        try:
            mappings = self._client.indices.get_mapping(index=index)[index]["mappings"]
        except (ApiError, TransportError) as exc:
            raise RetriableError(f"cannot read the mapping of {index}: {exc}") from exc
        mismatches = mapping_mismatches(SPEED_FIELDS, mappings)
        if mismatches:
            raise self._refused_index(result, f"it maps {'; '.join(mismatches)}")

    def _refused_index(self, result: Mapping[str, Any], why: str = "") -> SchemaError:
        error = result.get("error") or {}
        reason = f"{error.get('type', result.get('status'))}: {str(error.get('reason', ''))[:200]}"
        return SchemaError(
            f"Elasticsearch index {result.get('_index')} refuses the speed documents "
            f"({reason}){'; ' + why if why else ''}. Its mapping is not the pipeline's: delete "
            f"the index (and any other index template matching {self.prefix}-speed-*), then run "
            "`clickstream schema create`"
        )

    def close(self) -> None:
        """Close the client."""
        self._client.close()


def _outcome(items: Sequence[Mapping[str, Any]]) -> tuple[int, int, dict[Failure, list[Any]]]:
    """Written, already as new (409), and the failed items' results by failure."""
    written = stale = 0
    failed: dict[Failure, list[Any]] = {failure: [] for failure in Failure}
    for item in items:
        result = item["index"]
        failure = classify_bulk_item(result)
        if failure is not None:
            failed[failure].append(result)
        elif result.get("status", 500) == 409:
            stale += 1
        else:
            written += 1
    return written, stale, failed
