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
from clickstream.times import MINUTE_MS
from indexing.views import MEASURE_FIELDS, ViewNames, cube_index
from serving.errors import BackendUnavailableError, QueryError, TooBroadError
from serving.merge import ViewDoc
from serving.params import MetricsQuery
from storage import late as late_ledger

SOURCE_FIELDS: Final = list(MEASURE_FIELDS)
PAGE_SIZE: Final = 5000
KEEP_ALIVE: Final = "1m"
_UNAVAILABLE_STATUS: Final = frozenset({429, 502, 503, 504})


def filter_query(query: MetricsQuery) -> dict[str, Any]:
    """The Elasticsearch query of a selection: a bool filter of range, prefix and term."""
    clauses: list[dict[str, Any]] = [
        {"range": {"start": {"gte": query.from_ms, "lt": query.to_ms, "format": "epoch_millis"}}}
    ]
    if query.url_prefix is not None:
        clauses.append({"prefix": {"url": {"value": query.url_prefix}}})
    if query.country is not None:
        clauses.append({"term": {"country": {"value": query.country}}})
    return {"bool": {"filter": clauses}}


def view_doc(hit: dict[str, Any], batch_index: str) -> ViewDoc:
    """A search hit as a :class:`ViewDoc` (the layer from the index it came from)."""
    source = hit["_source"]
    sketch = source.get("users_sketch")
    return ViewDoc(
        layer="batch" if hit["_index"] == batch_index else "speed",
        url=source["url"],
        country=source["country"],
        start_ms=int(source["start"]),
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


def count_views(client: Elasticsearch, prefix: str, query: MetricsQuery) -> int:
    """How many view documents the selection holds (through the alias)."""
    response = client.count(
        index=ViewNames(prefix).alias,
        query=filter_query(query),
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    return int(response["count"])


def fetch_views(
    client: Elasticsearch, prefix: str, query: MetricsQuery, limit: int
) -> list[ViewDoc]:
    """Every view document of the selection, from one point in time; refused past ``limit``."""
    names = ViewNames(prefix)
    pit = client.open_point_in_time(
        index=names.alias, keep_alive=KEEP_ALIVE, ignore_unavailable=True
    )
    pit_id = pit["id"]
    docs: list[ViewDoc] = []
    search_after: list[Any] | None = None
    try:
        while True:
            response = client.search(
                pit={"id": pit_id, "keep_alive": KEEP_ALIVE},
                query=filter_query(query),
                sort=[{"_shard_doc": "asc"}],
                size=PAGE_SIZE,
                source_includes=SOURCE_FIELDS,
                search_after=search_after,
                track_total_hits=False,
            )
            pit_id = response.get("pit_id", pit_id)
            hits = response["hits"]["hits"]
            docs.extend(view_doc(hit, names.batch_index) for hit in hits)
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


def exact_uniques(client: Elasticsearch, prefix: str, ids: list[str]) -> dict[str, int]:
    """The exact unique users of the cube's rollups by id (absent ones are left out)."""
    if not ids:
        return {}
    index = cube_index(prefix)
    response = client.options(ignore_status=404).mget(index=index, ids=ids, source=["unique_users"])
    return {
        doc["_id"]: int(doc["_source"]["unique_users"])
        for doc in response.body.get("docs", [])
        if doc.get("found")
    }


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
