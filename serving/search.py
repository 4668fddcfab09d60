"""The I/O edge of the serving layer: Elasticsearch reads and the HBase late ledger.

Queries are bool filters of term / prefix / range clauses only (no query-string parsing, so no
parameter can inject query syntax). View documents are read through the readers' alias with a
point in time and ``search_after``, only the fields the answer needs.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from elasticsearch import ApiError, Elasticsearch, TransportError
from thriftpy2.thrift import TException

from clickstream.errors import SchemaError
from clickstream.settings import HBaseSettings
from clickstream.times import DAY_MS, HOUR_MS, MINUTE_MS
from indexing.views import (
    GRAIN_DAY,
    GRAIN_HOUR,
    LEVEL_URL_COUNTRY,
    MEASURE_FIELDS,
    ViewNames,
    cube_index,
)
from serving.errors import BackendUnavailableError, QueryError, TooBroadError
from serving.merge import Layer, ViewDoc
from serving.params import MetricsQuery
from serving.plan import Plan, Span
from storage import late as late_ledger

SOURCE_FIELDS: Final = [*MEASURE_FIELDS, "grain"]
PAGE_SIZE: Final = 5000
KEEP_ALIVE: Final = "1m"
_UNAVAILABLE_STATUS: Final = frozenset({429, 502, 503, 504})


def filter_query(
    query: MetricsQuery,
    spans: tuple[Span, ...] | None = None,
    rollup: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The Elasticsearch query of a selection: a bool filter of range, prefix and term clauses.
    ``spans`` replace the query's range (any of them matches); ``rollup`` = (level, grain)
    selects the cube's documents of one level and grain."""
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
    """A search hit as a :class:`ViewDoc` (its layer and span from the index it came from)."""
    source = hit["_source"]
    sketch = source.get("users_sketch")
    index = hit["_index"]
    layer: Layer
    if index == ViewNames(prefix).batch_index:
        layer, span = "batch", HOUR_MS
    elif index == cube_index(prefix):
        layer, span = "cube", DAY_MS if source.get("grain") == GRAIN_DAY else HOUR_MS
    else:
        layer, span = "speed", MINUTE_MS
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


def parts(prefix: str, query: MetricsQuery, plan: Plan) -> list[tuple[str, dict[str, Any]]]:
    """(index, query) of each part of the plan: batch hours, days, the speed tail."""
    names = ViewNames(prefix)
    found: list[tuple[str, dict[str, Any]]] = []
    if plan.hours:
        if plan.level == LEVEL_URL_COUNTRY:  # the (url, country) hours are the views themselves
            found.append((names.batch_index, filter_query(query, plan.hours)))
        else:
            rollup = (plan.level, GRAIN_HOUR)
            found.append((cube_index(prefix), filter_query(query, plan.hours, rollup)))
    if plan.days:
        rollup = (plan.level, GRAIN_DAY)
        found.append((cube_index(prefix), filter_query(query, plan.days, rollup)))
    if plan.speed_from is not None:
        # Through the alias, whose filters show only speed views at or after the boundary.
        found.append((names.alias, filter_query(query, ((plan.speed_from, query.to_ms),))))
    return found


def count_views(client: Elasticsearch, prefix: str, query: MetricsQuery, plan: Plan) -> int:
    """How many documents the plan reads."""
    return sum(
        int(
            client.count(index=index, query=body, ignore_unavailable=True, allow_no_indices=True)[
                "count"
            ]
        )
        for index, body in parts(prefix, query, plan)
    )


def fetch_views(
    client: Elasticsearch, prefix: str, query: MetricsQuery, plan: Plan, limit: int
) -> list[ViewDoc]:
    """Every document of the plan, each part from one point in time; refused past ``limit``."""
    docs: list[ViewDoc] = []
    for index, body in parts(prefix, query, plan):
        docs.extend(_fetch(client, prefix, index, body, limit - len(docs)))
    return docs


def _fetch(
    client: Elasticsearch, prefix: str, index: str, body: dict[str, Any], limit: int
) -> list[ViewDoc]:
    pit = client.open_point_in_time(index=index, keep_alive=KEEP_ALIVE, ignore_unavailable=True)
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
        f"the selection holds at least {found} view documents, more than "
        f"serving.max_documents = {limit}",
        "narrow the range, add a url prefix or a country "
        "(or raise CLICKSTREAM_SERVING__MAX_DOCUMENTS)",
    )


def speed_until(client: Elasticsearch, prefix: str) -> int | None:
    """End of the newest speed minute (epoch ms) over every speed index; None without any."""
    response = client.search(
        index=ViewNames(prefix).speed_pattern,
        size=0,
        aggs={"newest": {"max": {"field": "start"}}},
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    newest = response.get("aggregations", {}).get("newest", {}).get("value")
    return None if newest is None else int(newest) + MINUTE_MS


def late_ledger_keys(settings: HBaseSettings) -> tuple[list[bytes] | None, str | None]:
    """Every key of the late-event ledger, or None and why it cannot be read."""
    try:
        return late_ledger.snapshot(settings), None
    except SchemaError as exc:
        return None, str(exc)
    except (OSError, TException) as exc:
        return None, f"HBase Thrift at {settings.host}:{settings.port} unreachable ({exc})"
