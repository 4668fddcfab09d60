"""One query, end to end: the boundary, the documents, the merge, the freshness facts."""

from __future__ import annotations

import dataclasses
import threading

from elasticsearch import Elasticsearch

from clickstream.closing import Closeable
from clickstream.settings import Settings
from indexing.client import connect
from indexing.templates import read_boundary
from serving import search
from serving.answer import Answer, late_events, notes_for
from serving.merge import Group, exact_grain, metrics, select
from serving.params import MetricsQuery
from serving.plan import plan


class MetricsService(Closeable):
    """Answers :class:`MetricsQuery` from Elasticsearch; one client, connected on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Elasticsearch | None = None
        self._lock = threading.Lock()  # the API calls from several worker threads

    @property
    def client(self) -> Elasticsearch:
        """The Elasticsearch client (created lazily)."""
        with self._lock:
            if self._client is None:
                self._client = connect(self._settings.elasticsearch)
            return self._client

    def close(self) -> None:
        """Close the client, if one was made."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def healthy(self) -> bool:
        """Whether Elasticsearch answers with a usable cluster (green or yellow)."""
        try:
            # Cluster health, not ping: some builds (integ-test-zip) have no GET / handler.
            health = self.client.cluster.health()
        except Exception:  # noqa: BLE001 - any failure means "not healthy", reported as such
            return False
        return health.get("status") in ("green", "yellow")

    def query(self, query: MetricsQuery) -> Answer:
        """Merge the batch and speed views of the query's selection into an answer."""
        prefix = self._settings.elasticsearch.index_prefix
        limit = self._settings.serving.max_documents
        lg_k = self._settings.batch.hll_lg_k
        with search.unavailable_as_error(self._settings.elasticsearch.url):
            # The boundary first: it only moves forward, so an exact flag decided on it stays true.
            boundary = read_boundary(self.client, prefix)
            chosen = plan(query, boundary)
            count = search.count_views(self.client, prefix, query, chosen)
            if count > limit:
                raise search.too_broad(count, limit)
            docs = search.fetch_views(self.client, prefix, query, chosen, limit) if count else []
            total, selections, group_count = select(query, boundary, docs)
            if query.group_by and exact_grain(query, boundary) is not None:
                # One stored bucket: the total's own level holds its exact count (the groups'
                # documents are at a finer level, whose counts do not add up).
                whole = dataclasses.replace(query, group_by=(), top=None)
                found = search.fetch_views(self.client, prefix, whole, plan(whole, boundary), limit)
                total = select(whole, boundary, found)[0]
            speed_until = search.speed_until(self.client, prefix)
        keys, late_error = search.late_ledger_keys(self._settings.hbase)
        groups = tuple(Group(s.url, s.country, metrics(s, lg_k)) for s in selections)
        return Answer(
            query=query,
            boundary_ms=boundary,
            speed_until_ms=speed_until,
            late=late_events(keys, query, boundary, late_error),
            total=metrics(total, lg_k),
            groups=groups,
            group_count=group_count,
            notes=tuple(notes_for(query, boundary, late_error)),
        )
