"""One query, end to end: the boundary, the documents, the merge, the freshness facts."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from elasticsearch import Elasticsearch

from clickstream.closing import Closeable
from clickstream.settings import Settings
from indexing.client import connect
from indexing.templates import read_boundary
from serving import search
from serving.answer import Answer, LateEvents, late_events, notes_for
from serving.merge import Group, Selection, metrics, select
from serving.params import MetricsQuery
from serving.plan import Plan, plan
from serving.series import BUCKETS, Point, Sums, points, series_plan

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Series:
    """Clicks per bucket over a range, with the facts a reader needs to trust them."""

    query: MetricsQuery
    bucket: str
    boundary_ms: int | None
    speed_until_ms: int | None
    late: LateEvents
    points: list[Point]


@dataclass(frozen=True, slots=True)
class _Selected:
    """The merged selections of one answer, and whether a plan read an open end."""

    total: Selection
    groups: list[Selection]
    group_count: int
    open_end: bool


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
        lg_k = self._settings.batch.hll_lg_k

        def read(
            boundary: int | None, until: int | None, sealed: frozenset[int]
        ) -> tuple[_Selected, bool]:
            selected = self._select(query, boundary, until, sealed)
            return selected, selected.open_end

        with search.unavailable_as_error(self._settings.elasticsearch.url):
            found, boundary, speed_until = self._consistent(read)
        keys, late_error = self._late_ledger()
        groups = tuple(Group(s.url, s.country, metrics(s, lg_k)) for s in found.groups)
        return Answer(
            query=query,
            boundary_ms=boundary,
            speed_until_ms=speed_until,
            late=late_events(keys, query, boundary, late_error),
            total=metrics(found.total, lg_k),
            groups=groups,
            group_count=found.group_count,
            notes=tuple(notes_for(query, boundary, late_error, found.group_count)),
        )

    def series(self, query: MetricsQuery, bucket: str) -> Series:
        """Clicks and bot clicks per bucket of the query's range (its groups ignored), the
        batch part and the speed part apart (serving/series.py)."""
        whole = dataclasses.replace(query, group_by=(), top=None, default_top=False)

        def read(
            boundary: int | None, until: int | None, sealed: frozenset[int]
        ) -> tuple[tuple[Sums, Sums], bool]:
            tiles = series_plan(plan(whole, boundary, until, sealed), bucket)
            return self._histograms(whole, tiles, bucket), tiles.open_end

        with search.unavailable_as_error(self._settings.elasticsearch.url):
            sums, boundary, speed_until = self._consistent(read)
        keys, late_error = self._late_ledger()
        return Series(
            query=whole,
            bucket=bucket,
            boundary_ms=boundary,
            speed_until_ms=speed_until,
            late=late_events(keys, whole, boundary, late_error),
            points=points(query.from_ms, query.to_ms, bucket, *sums),
        )

    def _consistent(
        self, read: Callable[[int | None, int | None, frozenset[int]], tuple[T, bool]]
    ) -> tuple[T, int | None, int | None]:
        """``read(boundary, speed_until, sealed hours)`` at one boundary and speed reach:
        (its result, the boundary, the speed layer's reach). ``read`` says whether its plan
        read the last hour whole because nothing newer than the range was folded (open end);
        if something was folded meanwhile, it reads again, the range's minutes this time."""
        client = self.client
        prefix = self._settings.elasticsearch.index_prefix
        # The boundary first: it only moves forward, so an exact flag decided on it stays true.
        boundary = read_boundary(client, prefix)
        state = search.speed_state(client, prefix, boundary)
        speed_until = state.until_ms
        result, open_end = read(boundary, speed_until, state.sealed_hours)
        if open_end:
            state = search.speed_state(client, prefix, boundary)
            if state.until_ms != speed_until:
                speed_until = state.until_ms
                result, _ = read(boundary, None, state.sealed_hours)
        return result, boundary, speed_until

    def _histograms(self, query: MetricsQuery, tiles: Plan, bucket: str) -> tuple[Sums, Sums]:
        """The batch part's and the speed part's sums per bucket."""
        prefix = self._settings.elasticsearch.index_prefix
        batch = dataclasses.replace(
            tiles, speed_hours=(), sealed_hours=(), speed_minutes=(), open_end=False
        )
        speed = dataclasses.replace(tiles, hours=(), quarters=(), days=())
        size = BUCKETS[bucket]
        with ThreadPoolExecutor(max_workers=2) as pool:
            sums = [
                pool.submit(search.histogram, self.client, search.parts(prefix, query, part), size)
                for part in (batch, speed)
            ]
            return sums[0].result(), sums[1].result()

    def _select(
        self,
        query: MetricsQuery,
        boundary: int | None,
        speed_until: int | None,
        sealed: frozenset[int],
    ) -> _Selected:
        """The total at its own level (the query without its group key: the coarsest level
        that answers) and, for a grouped query, the groups ranked and the shown ones merged.
        The total and the shown groups' documents are fetched at the same time, the groups in
        two halves: the cost of a broad answer is moving its sketches, which Elasticsearch
        and this process then do on both cores."""
        prefix = self._settings.elasticsearch.index_prefix
        limit = self._settings.serving.max_documents
        client = self.client
        whole = dataclasses.replace(query, group_by=(), top=None, default_top=False)
        whole_plan = plan(whole, boundary, speed_until, sealed)
        found = search.parts(prefix, whole, whole_plan)
        with ThreadPoolExecutor(max_workers=3) as pool:
            total_docs = pool.submit(search.fetch_views, client, prefix, found, limit)
            if not query.group_by:
                total = select(whole, boundary, total_docs.result())[0]
                return _Selected(total, [], 0, whole_plan.open_end)
            chosen = plan(query, boundary, speed_until, sealed)
            parts = search.parts(prefix, query, chosen)
            ranked = search.rank_groups(client, query, parts)
            shown = [key for key, _ in ranked[: query.top]]
            half = (len(shown) + 1) // 2
            fetches = [
                pool.submit(search.fetch_views, client, prefix, parts, limit, chunk)
                for chunk in (shown[:half], shown[half:])
                if chunk
            ]
            docs = [doc for fetch in fetches for doc in fetch.result()]
            if len(docs) > limit:  # each half was checked alone
                raise search.too_broad(len(docs), limit)
            total = select(whole, boundary, total_docs.result())[0]
        groups = select(query, boundary, docs)[1] if docs else []
        return _Selected(total, groups, len(ranked), whole_plan.open_end or chosen.open_end)

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
