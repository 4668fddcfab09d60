"""One query, end to end: the boundary, the documents, the merge, the freshness facts."""

from __future__ import annotations

import dataclasses
import threading
import time

from elasticsearch import Elasticsearch

from clickstream.closing import Closeable
from clickstream.settings import Settings
from indexing.client import connect
from indexing.templates import read_boundary
from serving import search
from serving.answer import Answer, late_events, notes_for
from serving.merge import Group, Selection, metrics, select
from serving.params import MetricsQuery
from serving.plan import plan


class MetricsService(Closeable):
    """Answers :class:`MetricsQuery` from Elasticsearch; one client, connected on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Elasticsearch | None = None
        self._lock = threading.Lock()  # the API calls from several worker threads
        self._ledger: tuple[float, tuple[list[bytes] | None, str | None]] | None = None

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
        """Merge the batch and speed documents of the query's selection into an answer: the
        groups ranked by Elasticsearch, documents fetched for the groups shown and the total."""
        prefix = self._settings.elasticsearch.index_prefix
        limit = self._settings.serving.max_documents
        lg_k = self._settings.batch.hll_lg_k
        client = self.client
        with search.unavailable_as_error(self._settings.elasticsearch.url):
            # The boundary first: it only moves forward, so an exact flag decided on it stays true.
            boundary = read_boundary(client, prefix)
            # The total at its own level: with no group key it is the coarsest that answers.
            whole = dataclasses.replace(query, group_by=(), top=None, default_top=False)
            found = search.parts(prefix, whole, plan(whole, boundary))
            total = select(whole, boundary, search.fetch_views(client, prefix, found, limit))[0]
            selections: list[Selection] = []
            group_count = 0
            if query.group_by:
                found = search.parts(prefix, query, plan(query, boundary))
                ranked = search.rank_groups(client, query, found)
                group_count = len(ranked)
                shown = [key for key, _ in ranked[: query.top]]
                if shown:
                    docs = search.fetch_views(client, prefix, found, limit, shown)
                    selections = select(query, boundary, docs)[1]
            speed_until = search.speed_until(client, prefix)
        keys, late_error = self._late_ledger()
        groups = tuple(Group(s.url, s.country, metrics(s, lg_k)) for s in selections)
        return Answer(
            query=query,
            boundary_ms=boundary,
            speed_until_ms=speed_until,
            late=late_events(keys, query, boundary, late_error),
            total=metrics(total, lg_k),
            groups=groups,
            group_count=group_count,
            notes=tuple(notes_for(query, boundary, late_error, group_count)),
        )

    def _late_ledger(self) -> tuple[list[bytes] | None, str | None]:
        """The late ledger's keys, read at most every ``serving.late_ledger_cache_s``: it
        changes when late events arrive or a batch run folds them in, and reading it opens a
        Thrift connection and scans a table."""
        ttl = self._settings.serving.late_ledger_cache_s
        now = time.monotonic()
        with self._lock:
            cached = self._ledger
            if cached is not None and now - cached[0] < ttl:
                return cached[1]
        found = search.late_ledger_keys(self._settings.hbase)
        with self._lock:
            self._ledger = (now, found)
        return found
