"""The I/O edge of the serving layer: Elasticsearch reads and the HBase late ledger.

Queries are bool filters of term / prefix / range clauses only (no query-string parsing, so no
parameter can inject query syntax). View documents are read through the readers' alias with a
point in time and ``search_after`` when there are more than a page, only the fields the answer
needs. Groups are ranked by Elasticsearch (a composite aggregation summing clicks); documents are
fetched only for the groups an answer shows and for its total.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from elasticsearch import ApiError, Elasticsearch, TransportError
from thriftpy2.thrift import TException

from clickstream.errors import SchemaError
from clickstream.settings import HBaseSettings
from clickstream.times import HOUR_MS, MINUTE_MS
from indexing.seals import SpeedState, SpeedStateError, read_speed_state
from indexing.views import (
    CUBE_GRAINS,
    GRAIN_DAY,
    GRAIN_HOUR,
    GRAIN_MINUTE,
    GRAIN_QUARTER_DAY,
    LEVEL_URL_COUNTRY,
    MEASURE_FIELDS,
    ViewNames,
    bot_rules_of,
    cube_index,
)
from serving.errors import BackendUnavailableError, QueryError, TooBroadError
from serving.merge import GroupKey, Layer, ViewDoc, rank_order
from serving.params import MetricsQuery
from serving.plan import Plan, Span
from storage import late as late_ledger

SOURCE_FIELDS: Final = [*MEASURE_FIELDS, "grain"]
#: Hits per request; also the most one plain search may return (index.max_result_window).
PAGE_SIZE: Final = 10_000
#: Groups per composite aggregation page (below search.max_buckets, 65,536 by default).
GROUP_PAGE: Final = 10_000
KEEP_ALIVE: Final = "1m"
_UNAVAILABLE_STATUS: Final = frozenset({429, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a plan: the index (or pattern) it reads and the query of its documents."""

    index: str
    #: Restricts a combined search to this part's index: a ``term`` or ``prefix`` on _index.
    index_clause: dict[str, Any]
    body: dict[str, Any]


def filter_query(
    query: MetricsQuery,
    spans: tuple[Span, ...] | None = None,
    rollup: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The Elasticsearch query of a selection: a bool filter of range, prefix and term clauses.
    ``spans`` replace the query's range (any of them matches); ``rollup`` = (level, grain)
    selects the rollups of one level and grain (the cube's, or the speed layer's)."""
    ranges = spans if spans is not None else ((query.from_ms, query.to_ms),)
    clauses: list[dict[str, Any]] = [
        {
            "bool": {
                "should": [
                    {"range": {"start": {"gte": lo, "lt": hi, "format": "epoch_millis"}}}
                    for lo, hi in ranges
                ],
                "minimum_should_match": 1,
            }
        }
    ]
    if rollup is not None:
        clauses.append({"term": {"level": {"value": rollup[0]}}})
        clauses.append({"term": {"grain": {"value": rollup[1]}}})
    if query.url_prefix is not None:
        clauses.append({"prefix": {"url": {"value": query.url_prefix}}})
    if query.country is not None:
        clauses.append({"term": {"country": {"value": query.country}}})
    return {"bool": {"filter": clauses}}


def view_doc(hit: dict[str, Any], prefix: str) -> ViewDoc:
    """A search hit as a :class:`ViewDoc` (its layer and span from its index and grain)."""
    source = hit["_source"]
    sketch = source.get("users_sketch")
    index = hit["_index"]
    grain = source.get("grain")
    layer: Layer
    if index == ViewNames(prefix).batch_index:
        layer, span = "batch", HOUR_MS
    elif index == cube_index(prefix):
        layer, span = "cube", CUBE_GRAINS.get(str(grain), HOUR_MS)
    else:  # a speed index or a sealed hour's
        layer, span = "speed", HOUR_MS if grain == GRAIN_HOUR else MINUTE_MS
    return ViewDoc(
        layer=layer,
        url=source.get("url"),
        country=source.get("country"),
        start_ms=int(source["start"]),
        span_ms=span,
        clicks=int(source.get("clicks") or 0),
        bot_clicks=int(source.get("bot_clicks") or 0),
        unique_users=int(source.get("unique_users") or 0),
        sketch=base64.b64decode(sketch) if sketch else None,
        time_spent_sum_ms=int(source.get("time_spent_sum_ms") or 0),
        time_spent_count=int(source.get("time_spent_count") or 0),
        bot_rules=bot_rules_of(source),
    )


@contextmanager
def unavailable_as_error(url: str) -> Iterator[None]:
    """Connection failures and overload answers of Elasticsearch as BackendUnavailableError."""
    try:
        yield
    except ApiError as exc:
        if exc.meta.status in _UNAVAILABLE_STATUS:
            raise BackendUnavailableError(f"Elasticsearch at {url} is unavailable: {exc}") from exc
        if exc.meta.status == 400:
            # Validation should make this unreachable; if a limit of the cluster was missed,
            # it is still the query's fault, not a server error.
            raise QueryError(
                "query", f"Elasticsearch refused the query: {exc.message}", "check the parameters"
            ) from exc
        raise
    except TransportError as exc:
        raise BackendUnavailableError(
            f"Elasticsearch at {url} is unreachable ({type(exc).__name__}); check it is up "
            "(`clickstream stack status` locally) and elasticsearch.url"
        ) from exc


def parts(prefix: str, query: MetricsQuery, plan: Plan) -> list[Part]:
    """The parts of the plan: batch hours, quarter days and days, speed hours (sealed or per
    partition) and minutes."""
    names = ViewNames(prefix)
    cube = cube_index(prefix)
    speed_clause = {"prefix": {"_index": f"{prefix}-speed-"}}
    found: list[Part] = []
    if plan.hours:
        if plan.level == LEVEL_URL_COUNTRY:  # the (url, country) hours are the views themselves
            body = filter_query(query, plan.hours)
            found.append(Part(names.batch_index, {"term": {"_index": names.batch_index}}, body))
        else:
            body = filter_query(query, plan.hours, (plan.level, GRAIN_HOUR))
            found.append(Part(cube, {"term": {"_index": cube}}, body))
    for spans, grain in ((plan.quarters, GRAIN_QUARTER_DAY), (plan.days, GRAIN_DAY)):
        if spans:
            body = filter_query(query, spans, (plan.level, grain))
            found.append(Part(cube, {"term": {"_index": cube}}, body))
    # The speed indices are read directly, not through the readers' alias (which shows only
    # their minute views): the plan's spans start at or after the boundary it was made for.
    for spans, grain in ((plan.speed_hours, GRAIN_HOUR), (plan.speed_minutes, GRAIN_MINUTE)):
        if spans:
            body = filter_query(query, spans, (plan.level, grain))
            found.append(Part(names.speed_pattern, speed_clause, body))
    if plan.sealed_hours:
        body = filter_query(query, plan.sealed_hours, (plan.level, GRAIN_HOUR))
        sealed_clause = {"prefix": {"_index": f"{prefix}-sealed-"}}
        found.append(Part(names.sealed_pattern, sealed_clause, body))
    return found


def combined(found: Sequence[Part], groups: Sequence[GroupKey] = ()) -> tuple[str, dict[str, Any]]:
    """One search over every part: (indices, query); ``groups`` keeps only those groups."""
    indices = ",".join(dict.fromkeys(part.index for part in found))
    should = [{"bool": {"filter": [part.index_clause, part.body]}} for part in found]
    clauses: list[dict[str, Any]] = [{"bool": {"should": should, "minimum_should_match": 1}}]
    if groups:
        clauses.append(_groups_clause(groups))
    return indices, {"bool": {"filter": clauses}}


def _groups_clause(groups: Sequence[GroupKey]) -> dict[str, Any]:
    urls = sorted({url for url, _ in groups if url is not None})
    countries = sorted({country for _, country in groups if country is not None})
    if urls and countries:  # (url, country) pairs: exactly those
        pairs = [
            {"bool": {"filter": [{"term": {"url": url}}, {"term": {"country": country}}]}}
            for url, country in groups
        ]
        return {"bool": {"should": pairs, "minimum_should_match": 1}}
    if urls:
        return {"terms": {"url": urls}}
    return {"terms": {"country": countries}}


def rank_groups(
    client: Elasticsearch, query: MetricsQuery, found: Sequence[Part]
) -> list[tuple[GroupKey, int]]:
    """Every group of the selection with its clicks, most clicks first (ties by key).

    Summed by Elasticsearch with a composite aggregation, page by page: exact across shards
    and indices (a ``terms`` aggregation ordered by a sum is not), and its cost is the number
    of groups, not of events.
    """
    if not found or not query.group_by:
        return []
    indices, body = combined(found)
    sources = [{field: {"terms": {"field": field}}} for field in query.group_by]
    clicks: dict[GroupKey, int] = {}
    after: dict[str, Any] | None = None
    while True:
        composite: dict[str, Any] = {"size": GROUP_PAGE, "sources": sources}
        if after is not None:
            composite["after"] = after
        response = client.search(
            index=indices,
            query=body,
            size=0,
            aggs={
                "groups": {"composite": composite, "aggs": {"clicks": {"sum": {"field": "clicks"}}}}
            },
            ignore_unavailable=True,
            allow_no_indices=True,
            track_total_hits=False,
        )
        result = response.get("aggregations", {}).get("groups", {})
        for bucket in result.get("buckets", []):
            key = bucket["key"]
            group = (key.get("url"), key.get("country"))
            clicks[group] = clicks.get(group, 0) + int(bucket["clicks"]["value"])
        after = result.get("after_key")
        if after is None or len(result.get("buckets", [])) < GROUP_PAGE:
            break
    return sorted(clicks.items(), key=lambda item: rank_order(*item))


def fetch_views(
    client: Elasticsearch,
    prefix: str,
    found: Sequence[Part],
    limit: int,
    groups: Sequence[GroupKey] = (),
) -> list[ViewDoc]:
    """Every document of the parts (of ``groups`` only, if given) in one search, or through a
    point in time when there are more than a page; refused past ``limit``."""
    if not found:
        return []
    indices, body = combined(found, groups)
    response = client.search(
        index=indices,
        query=body,
        size=PAGE_SIZE,
        source_includes=SOURCE_FIELDS,
        track_total_hits=PAGE_SIZE + 1,
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    hits = response["hits"]["hits"]
    if response["hits"]["total"]["value"] <= PAGE_SIZE:
        if len(hits) > limit:
            raise too_broad(len(hits), limit)
        return [view_doc(hit, prefix) for hit in hits]
    return _fetch(client, prefix, indices, body, limit)


def _fetch(
    client: Elasticsearch, prefix: str, indices: str, body: dict[str, Any], limit: int
) -> list[ViewDoc]:
    pit = client.open_point_in_time(index=indices, keep_alive=KEEP_ALIVE, ignore_unavailable=True)
    pit_id = pit["id"]
    docs: list[ViewDoc] = []
    search_after: list[Any] | None = None
    try:
        while True:
            response = client.search(
                pit={"id": pit_id, "keep_alive": KEEP_ALIVE},
                query=body,
                sort=[{"_shard_doc": "asc"}],
                size=PAGE_SIZE,
                source_includes=SOURCE_FIELDS,
                search_after=search_after,
                track_total_hits=False,
            )
            pit_id = response.get("pit_id", pit_id)
            hits = response["hits"]["hits"]
            docs.extend(view_doc(hit, prefix) for hit in hits)
            if len(docs) > limit:
                raise too_broad(len(docs), limit)
            if len(hits) < PAGE_SIZE:
                return docs
            search_after = hits[-1]["sort"]
    finally:
        client.options(ignore_status=404).close_point_in_time(id=pit_id)


def too_broad(found: int, limit: int) -> TooBroadError:
    """The error of a selection with more documents than ``serving.max_documents``."""
    return TooBroadError(
        "from,to",
        f"the selection holds at least {found} documents, more than "
        f"serving.max_documents = {limit}",
        "narrow the range, add a url prefix or a country, or ask for fewer groups "
        "(or raise CLICKSTREAM_SERVING__MAX_DOCUMENTS)",
    )


def speed_state(client: Elasticsearch, prefix: str, boundary_ms: int | None) -> SpeedState:
    """The speed layer's reach and the hours whose seal holds (indexing/seals.py)."""
    try:
        return read_speed_state(client, prefix, boundary_ms)
    except SpeedStateError as exc:
        raise BackendUnavailableError(str(exc)) from exc


def late_ledger_keys(settings: HBaseSettings) -> tuple[list[bytes] | None, str | None]:
    """Every key of the late-event ledger, or None and why it cannot be read."""
    try:
        return late_ledger.snapshot(settings), None
    except SchemaError as exc:
        return None, str(exc)
    except (OSError, TException) as exc:
        return None, f"HBase Thrift at {settings.host}:{settings.port} unreachable ({exc})"


def histogram(
    client: Elasticsearch, found: Sequence[Part], bucket_ms: int
) -> dict[int, tuple[int, int]]:
    """Clicks and bot clicks per bucket of ``bucket_ms`` (UTC-aligned) over the parts' documents,
    summed by Elasticsearch: bucket start -> (clicks, bot clicks), empty buckets left out."""
    if not found:
        return {}
    indices, body = combined(found)
    response = client.search(
        index=indices,
        query=body,
        size=0,
        aggs={
            "buckets": {
                "date_histogram": {
                    "field": "start",
                    "fixed_interval": f"{bucket_ms // MINUTE_MS}m",
                    "min_doc_count": 1,
                },
                "aggs": {
                    "clicks": {"sum": {"field": "clicks"}},
                    "bot_clicks": {"sum": {"field": "bot_clicks"}},
                },
            }
        },
        ignore_unavailable=True,
        allow_no_indices=True,
        track_total_hits=False,
    )
    buckets = response.get("aggregations", {}).get("buckets", {}).get("buckets", [])
    return {
        int(b["key"]): (int(b["clicks"]["value"]), int(b["bot_clicks"]["value"])) for b in buckets
    }
