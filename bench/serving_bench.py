"""Query latency of the serving layer (HTTP API) on a month of a real-sized site's views.

    make bench-serving          # or: .venv/bin/python bench/serving_bench.py --keep
    .venv/bin/python bench/serving_bench.py --reuse --keep   # measure again, no reload

Loads Elasticsearch, under an isolated index prefix, with documents in the layers' own formats,
built by the layers' own document builders (processing.writer.view_document / rollup_document,
speed.docs.render):

- batch views: ``--days`` whole UTC days plus the hours of the current day before the boundary
  H; each hour ``--events-per-hour`` sampled events (``--urls`` URLs, Zipf popularity;
  ``--countries`` countries, skewed; ``--users`` users; 3 % bots; 75 % of human clicks with a
  time spent), aggregated with numpy to (url, country, hour) documents with exact unique users
  and HLL sketches (lgK = batch.hll_lg_k, the stored type HLL_4) of their users;
- the batch cube: levels url, country, all per hour; all four levels per completed UTC day;
- the speed tail [H, now), now = H + 2 h - 3 min: ``--rate`` events/s over ``--partitions``
  Kafka partitions (each owning its users, as the user-id key does), each partition's 8
  documents per click (4 levels x minute/hour), last offsets as external versions.

What is modelled: events are drawn i.i.d. (numpy) rather than sent through Kafka and folded by
the daemon; time spent is drawn (exponential, mean 45 s) rather than derived from the user's next
click; user ids are integers in the sketches (the pipeline hashes strings: same sketch format
and size). Document counts, keys, ids, sketches and measures are what the layers write for
such traffic. The batch sample (not 1,000 events/s) is what the issue asks: >= 2M (url,
country, hour) documents over 30 days.

Then, through `clickstream serve` on a free port: p50/p99 of six queries (one client, after a
warm-up, `to` shifted by whole minutes between repetitions; the request cache is off on the
bench's indices), the old fetch-everything path on the same data (median of 5, up to 2M
documents), eight concurrent clients for ``--mix-seconds``, a plain ``_count`` round trip, and
documents and bytes per day of traffic per layer. Targets: p99 <= 300 ms per query with one
client; with 8 clients p99 <= 1 s for the realtime and total queries (no group, no filter) and
<= 4x the one-client p99 for the others; >= 10x faster than the old path.
Prints a table and saves bench/results/serving-<UTC time>.json. ``--keep`` leaves the indices
for a later ``--reuse`` run, which skips loading when the prefix's indices exist (and completes
a load that was interrupted: each part is recorded in the batch index's ``_meta`` when done). A
bulk request that meets an Elasticsearch restart waits for the cluster and is sent again.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import shutil
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
from datasketches import hll_sketch, hll_union
from elasticsearch import ApiError, Elasticsearch, TransportError
from pyspark.sql import Row
from results_file import percentile, save
from serving_data import (
    Cell,
    Events,
    Groups,
    Site,
    aggregate,
    decode,
    draw_events,
    level_keys,
    make_site,
    partition_users,
    poisson_counts,
)

from clickstream.security import redact_url
from clickstream.settings import Settings, load_settings
from clickstream.times import DAY_MS, HOUR_MS, MINUTE_MS, iso
from indexing.boundary import move_boundary, speed_index_span
from indexing.client import connect as es_connect
from indexing.templates import (
    create_templates,
    drop_views,
    ensure_batch_index,
    ensure_cube_index,
)
from indexing.views import (
    COARSE_LEVELS,
    CUBE_GRAINS,
    GRAIN_DAY,
    GRAIN_HOUR,
    GRAIN_MINUTE,
    GRAIN_QUARTER_DAY,
    LEVEL_URL_COUNTRY,
    LEVELS,
    SKETCH_TYPE,
    ViewNames,
    cube_id,
    view_id,
)
from processing.writer import rollup_document, view_document
from speed.docs import render, speed_index
from speed.seal import seal_pass
from speed.state import SpeedDoc
from traffic.harness import ApiProcess, isolated

MIN_FREE_BYTES = 10 * 10**9
HLL_TYPE = SKETCH_TYPE  # what the speed layer builds (the batch writer converts to it)
#: Documents the old path reads at most; beyond, it "does not answer".
OLD_PATH_CAP = 2_000_000
OLD_PATH_RUNS = 5
TAIL_SHORT_MS = 3 * MINUTE_MS
P99_TARGET_S = 0.3
MIX_TARGET_S = 1.0
MIX_FACTOR = 4.0
SPEEDUP_TARGET = 10.0
SOURCE_FIELDS = [
    "url",
    "country",
    "start",
    "clicks",
    "bot_clicks",
    "unique_users",
    "users_sketch",
    "time_spent_sum_ms",
    "time_spent_count",
]


# --- pure helpers -----------------------------------------------------------------------------


def ceil_hour(ms: int) -> int:
    """The first whole hour at or after ``ms``."""
    return -(-ms // HOUR_MS) * HOUR_MS


@dataclass(frozen=True)
class Layout:
    """Where the data lies in time: batch hours [first_hour, boundary), speed [boundary, now)."""

    boundary_ms: int
    now_ms: int
    days: int

    @classmethod
    def at(cls, wall_ms: int, days: int) -> Layout:
        """Now = H + 2 h - 3 min, the latest such time not after ``wall_ms``."""
        boundary = (wall_ms + TAIL_SHORT_MS) // HOUR_MS * HOUR_MS - 2 * HOUR_MS
        return cls(boundary, boundary + 2 * HOUR_MS - TAIL_SHORT_MS, days)

    @property
    def first_hour(self) -> int:
        """Start of the batch data: ``days`` whole UTC days before the boundary's day."""
        return self.boundary_ms // DAY_MS * DAY_MS - self.days * DAY_MS

    @property
    def tail_minutes(self) -> int:
        """Minutes of the speed tail."""
        return (self.now_ms - self.boundary_ms) // MINUTE_MS

    @property
    def batch_days(self) -> float:
        """Days of traffic behind the boundary (whole days plus the current day's hours)."""
        return (self.boundary_ms - self.first_hour) / DAY_MS

    def day_hours(self, day: int) -> int:
        """Hours of batch day ``day`` (index from ``first_hour``) behind the boundary."""
        start = self.first_hour + day * DAY_MS
        return max(0, min(24, (self.boundary_ms - start) // HOUR_MS))


@dataclass(frozen=True)
class Query:
    """One benchmarked query: its range length and the API parameters besides the range."""

    name: str
    span_ms: int
    params: dict[str, str]
    realtime_or_total: bool = False

    def window(self, layout: Layout, repetition: int) -> tuple[int, int]:
        """[from, to) of a repetition: "the last N" asked at a time a little after now (the
        data's newest minute), a different second each repetition, as a dashboard asks."""
        to = layout.now_ms + (1 + repetition % 600) * 1000
        return to - self.span_ms, to

    def api_params(self, layout: Layout, repetition: int) -> dict[str, str]:
        """The query string of a repetition."""
        start, end = self.window(layout, repetition)
        return {"from": iso(start), "to": iso(end), **self.params}


def queries(site: Site) -> list[Query]:
    """The six queries of the issue."""
    return [
        Query("last 5 min, total", 5 * MINUTE_MS, {}, realtime_or_total=True),
        Query("24 h by url top 100", DAY_MS, {"group_by": "url", "top": "100"}),
        Query("7 d by country", 7 * DAY_MS, {"group_by": "country"}),
        Query("30 d total", 30 * DAY_MS, {}, realtime_or_total=True),
        Query(
            f"30 d by url top 10, {site.mid_country()}",
            30 * DAY_MS,
            {"group_by": "url", "top": "10", "country": site.mid_country()},
        ),
        Query("30 d url prefix (1 %)", 30 * DAY_MS, {"url": site.section_prefix()}),
    ]


@dataclass(frozen=True)
class Measures:
    """A group's measures, its sketch built."""

    clicks: int
    bot_clicks: int
    unique_users: int
    sketch: hll_sketch | None
    spent_sum: int
    spent_count: int
    last_offset: int

    def row(self) -> dict[str, Any]:
        """The measure columns of a batch row (processing.writer reads these)."""
        return {
            "clicks": self.clicks,
            "bot_clicks": self.bot_clicks,
            "unique_users": self.unique_users,
            "users_sketch": self.sketch.serialize_compact() if self.sketch is not None else None,
            "time_spent_sum_ms": self.spent_sum,
            "time_spent_count": self.spent_count,
        }


def sketch_of(users: list[int], lg_k: int) -> hll_sketch | None:
    """An HLL sketch (the stored type) of ``users`` (None when there are none, as for bot-only
    cells)."""
    if not users:
        return None
    sketch = hll_sketch(lg_k, HLL_TYPE)
    for user in users:
        sketch.update(user)
    return sketch


def group_measures(site: Site, groups: Groups, lg_k: int) -> Iterator[tuple[Cell, Measures]]:
    """Each group's decoded key and measures."""
    users = groups.users.tolist()
    bounds = groups.bounds.tolist()
    columns = zip(
        groups.keys.tolist(),
        groups.clicks.tolist(),
        groups.bot_clicks.tolist(),
        groups.spent_sum.tolist(),
        groups.spent_count.tolist(),
        groups.last_offset.tolist(),
        strict=True,
    )
    for g, (key, clicks, bots, spent_sum, spent_count, last) in enumerate(columns):
        distinct = users[bounds[g] : bounds[g + 1]]
        yield (
            decode(site, key),
            Measures(
                clicks,
                bots,
                len(distinct),
                sketch_of(distinct, lg_k),
                spent_sum,
                spent_count,
                last,
            ),
        )


def as_row(columns: dict[str, Any]) -> Row:
    """A row for processing.writer, which reads its columns by name as from a Spark Row."""
    return cast(Row, columns)


def batch_actions(
    site: Site, groups: Groups, lg_k: int, index: str, day_start: int
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Bulk actions of (url, country, hour) batch views; bucket = hour of the day."""
    for cell, measures in group_measures(site, groups, lg_k):
        hour = day_start + cell.bucket * HOUR_MS
        url, country = cell.pair()
        row = {"url": url, "country": country, "hour": hour, **measures.row()}
        meta = {"index": {"_index": index, "_id": view_id(url, country, hour)}}
        yield meta, view_document(as_row(row))


def cube_actions(
    site: Site, groups: Groups, lg_k: int, *, index: str, level: str, grain: str, start: int
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Bulk actions of cube rollups of one level and grain; bucket = hour of the day or 0."""
    size = CUBE_GRAINS[grain]
    for cell, measures in group_measures(site, groups, lg_k):
        bucket_start = start + cell.bucket * size
        row = {
            "level": level,
            "url": cell.url,
            "country": cell.country,
            "start": bucket_start,
            **measures.row(),
        }
        doc_id = cube_id(level, grain, cell.url, cell.country, bucket_start)
        yield {"index": {"_index": index, "_id": doc_id}}, rollup_document(as_row(row), grain)


def speed_actions(
    site: Site,
    groups: Groups,
    lg_k: int,
    *,
    prefix: str,
    partition: int,
    level: str,
    grain: str,
    start: int,
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Bulk actions of one partition's speed documents of one level and grain."""
    size = MINUTE_MS if grain == GRAIN_MINUTE else HOUR_MS
    for cell, m in group_measures(site, groups, lg_k):
        key = (level, grain, cell.url, cell.country, start + cell.bucket * size)
        doc = SpeedDoc(
            partition,
            key,
            lg_k,
            clicks=m.clicks,
            bot_clicks=m.bot_clicks,
            spent_sum=m.spent_sum,
            spent_count=m.spent_count,
            last_offset=m.last_offset,
            sketch=m.sketch,
        )
        r = render(doc, prefix)
        meta = {
            "index": {
                "_index": r.index,
                "_id": r.doc_id,
                "version": r.version,
                "version_type": "external",
            }
        }
        yield meta, r.source


# --- loading ----------------------------------------------------------------------------------


class BulkWriter:
    """Bulk requests of ``chunk`` documents sent from ``threads`` threads, a few in flight,
    while the caller builds the next ones."""

    def __init__(self, client: Elasticsearch, threads: int = 2, chunk: int = 5000) -> None:
        self._client = client
        self._pool = ThreadPoolExecutor(threads)
        self._chunk = chunk
        self._in_flight = 2 * threads
        self._ops: list[dict[str, Any]] = []
        self._pending: deque[Future[int]] = deque()
        self.written = 0

    def add(self, actions: Iterator[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        """Queue every action, sending full chunks as they fill."""
        for meta, source in actions:
            self._ops.append(meta)
            self._ops.append(source)
            if len(self._ops) >= 2 * self._chunk:
                self._submit()

    def flush(self) -> int:
        """Send what is queued and wait for every request; documents written so far."""
        if self._ops:
            self._submit()
        while self._pending:
            self.written += self._pending.popleft().result()
        return self.written

    def close(self) -> None:
        """Stop the threads (after :meth:`flush`)."""
        self._pool.shutdown(wait=True)

    def _submit(self) -> None:
        ops, self._ops = self._ops, []
        while len(self._pending) >= self._in_flight:
            self.written += self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._send, ops))

    def _send(self, ops: list[dict[str, Any]]) -> int:
        for attempt in range(SEND_ATTEMPTS):
            try:
                response = self._client.bulk(operations=ops, filter_path=BULK_FILTER)
            except (ApiError, TransportError) as exc:
                if attempt + 1 == SEND_ATTEMPTS or not retriable(exc):
                    raise
                print(f"  bulk failed ({type(exc).__name__}); waiting for Elasticsearch ...")
                wait_for_cluster(self._client)
                continue
            failed = refused(response)
            if failed:
                raise SystemExit(f"Elasticsearch refused {len(failed)} documents: {failed[:3]}")
            return len(ops) // 2
        raise AssertionError("unreachable")


SEND_ATTEMPTS = 5
BULK_FILTER = "errors,items.*.error,items.*.status"


def retriable(exc: Exception) -> bool:
    """A connection failure or an overloaded / restarting cluster."""
    return not isinstance(exc, ApiError) or exc.status_code in {429, 502, 503, 504}


def refused(response: Any) -> list[Any]:
    """The bulk items refused, except a resent externally versioned document already stored
    (409: its version is already in the index)."""
    if not response.get("errors"):
        return []
    errors = [next(iter(item.values())) for item in response["items"]]
    return [e for e in errors if "error" in e and e.get("status") != 409]


def wait_for_cluster(client: Elasticsearch, timeout: float = 600) -> None:
    """Block until the cluster answers with its shards assigned (after a restart)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.cluster.health(wait_for_status="yellow", timeout="10s")
        except (ApiError, TransportError):
            time.sleep(2)
            continue
        return
    raise SystemExit(f"Elasticsearch did not come back within {timeout:.0f} s")


@dataclass(frozen=True)
class Spec:
    """What to load (from the options)."""

    site: Site
    layout: Layout
    events_per_hour: int
    rate: float
    partitions: int
    lg_k: int
    seed: int


def day_events(spec: Spec, day: int) -> Events | None:
    """The batch sample of day ``day`` (bucket = hour of the day); None when it has no hour
    behind the boundary. The same for every part (seeded per day)."""
    hours = spec.layout.day_hours(day)
    if hours == 0:
        return None
    rng = np.random.default_rng([spec.seed, 1, day])
    return draw_events(spec.site, poisson_counts(rng, spec.events_per_hour, hours), rng)


def load_batch_views(writer: BulkWriter, spec: Spec, index: str) -> None:
    """Every (url, country, hour) view behind the boundary."""
    for day in range(spec.layout.days + 1):
        events = day_events(spec, day)
        if events is None:
            continue
        groups = aggregate(level_keys(spec.site, LEVEL_URL_COUNTRY, events), events)
        day_start = spec.layout.first_hour + day * DAY_MS
        writer.add(batch_actions(spec.site, groups, spec.lg_k, index, day_start))


def load_cube(writer: BulkWriter, spec: Spec, index: str, grain: str) -> None:
    """The cube's rollups of one grain: hours at the levels above (url, country), for every
    day with batch hours; quarter days and days at every level, for the completed ones."""
    per_bucket = CUBE_GRAINS[grain] // HOUR_MS
    for day in range(spec.layout.days + 1):
        events = day_events(spec, day)
        if events is None:
            continue
        whole = spec.layout.day_hours(day) // per_bucket  # the completed buckets
        if grain != GRAIN_HOUR:  # events are in hour order: keep the completed buckets' ones
            kept = int(np.searchsorted(events.bucket, whole * per_bucket))
            events = Events(**{f.name: getattr(events, f.name)[:kept] for f in fields(Events)})
            events = replace(events, bucket=events.bucket // per_bucket)
        if whole == 0 or len(events) == 0:
            continue
        day_start = spec.layout.first_hour + day * DAY_MS
        for level in COARSE_LEVELS if grain == GRAIN_HOUR else LEVELS:
            groups = aggregate(level_keys(spec.site, level, events), events)
            writer.add(
                cube_actions(
                    spec.site,
                    groups,
                    spec.lg_k,
                    index=index,
                    level=level,
                    grain=grain,
                    start=day_start,
                )
            )


def partition_events(spec: Spec, partition: int) -> Events:
    """One partition's clicks of the speed tail (bucket = minute from the boundary)."""
    rng = np.random.default_rng([spec.seed, 2, partition])
    per_minute = spec.rate * 60 / spec.partitions
    counts = poisson_counts(rng, per_minute, spec.layout.tail_minutes)
    users = partition_users(spec.site, partition, spec.partitions)
    return draw_events(spec.site, counts, rng, users, first_offset=10_000_000)


def load_speed(writer: BulkWriter, spec: Spec, prefix: str) -> None:
    """Every partition's speed documents: 4 levels x minute and hour grain."""
    boundary = spec.layout.boundary_ms
    for partition in range(spec.partitions):
        minutes = partition_events(spec, partition)
        hours = replace(minutes, bucket=minutes.bucket // 60)
        for grain, events in ((GRAIN_MINUTE, minutes), (GRAIN_HOUR, hours)):
            for level in LEVELS:
                groups = aggregate(level_keys(spec.site, level, events), events)
                writer.add(
                    speed_actions(
                        spec.site,
                        groups,
                        spec.lg_k,
                        prefix=prefix,
                        partition=partition,
                        level=level,
                        grain=grain,
                        start=boundary,
                    )
                )


def timed_part(
    client: Elasticsearch, name: str, load: Callable[[BulkWriter], None]
) -> dict[str, Any]:
    """Run one loading part through its own writer; its documents and seconds, printed."""
    started = time.monotonic()
    writer = BulkWriter(client)
    try:
        load(writer)
        docs = writer.flush()
    finally:
        writer.close()
    seconds = time.monotonic() - started
    print(f"  {name:<14} {docs:>10,} docs in {seconds:6.1f} s ({docs / seconds:,.0f}/s)")
    return {"docs": docs, "seconds": round(seconds, 1)}


PARTS = ("batch_views", "cube_hours", "cube_quarter_days", "cube_days", "speed")
#: The last part: the closed speed hour sealed by the speed layer's own pass (speed/seal.py).
SEALS = "speed_seals"


def timed_seals(client: Elasticsearch, settings: Settings) -> dict[str, Any]:
    """Seal the closed speed hours as `clickstream seal` does; documents and seconds, printed."""
    started = time.monotonic()
    done = seal_pass(client, settings)
    seconds = time.monotonic() - started
    print(
        f"  speed seals    {done.documents:>10,} docs in {seconds:6.1f} s "
        f"({len(done.sealed)} closed hour(s) merged across partitions)"
    )
    return {"docs": done.documents, "seconds": round(seconds, 1), "hours": len(done.sealed)}


def for_loading(client: Elasticsearch, indices: Sequence[str]) -> None:
    """No refresh and an async translog while loading."""
    client.indices.put_settings(
        index=",".join(indices),
        settings={"index.refresh_interval": "-1", "index.translog.durability": "async"},
    )


def for_reading(client: Elasticsearch, settings: Settings) -> None:
    """The refresh intervals the pipeline's indices have (templates, else the default) and a
    request-durable translog; then one refresh."""
    es = settings.elasticsearch
    names = ViewNames(es.index_prefix)
    intervals = {
        names.batch_index: "1s",
        f"{es.index_prefix}-cube-v1": None,
        names.speed_pattern: es.speed_refresh_interval,
    }
    for index, interval in intervals.items():
        client.indices.put_settings(
            index=index,
            settings={"index.refresh_interval": interval, "index.translog.durability": None},
            allow_no_indices=True,
        )
    client.indices.refresh(index=f"{es.index_prefix}-*")


def load(client: Elasticsearch, settings: Settings, spec: Spec, done: list[str]) -> dict[str, Any]:
    """Create the indices and load every part not ``done`` (each recorded when done); per
    part documents and seconds."""
    es = settings.elasticsearch
    prefix = es.index_prefix
    create_templates(client, es)
    batch = ensure_batch_index(client, prefix)
    cube = ensure_cube_index(client, es)
    for_loading(client, [batch, cube])
    print(
        f"loading {spec.layout.batch_days:.2f} days of batch views before "
        f"{iso(spec.layout.boundary_ms)} and a {spec.layout.tail_minutes}-minute speed tail "
        f"to {iso(spec.layout.now_ms)} under {prefix}-* ..."
    )
    loaders: dict[str, Callable[[BulkWriter], None]] = {
        "batch_views": lambda w: load_batch_views(w, spec, batch),
        "cube_hours": lambda w: load_cube(w, spec, cube, GRAIN_HOUR),
        "cube_quarter_days": lambda w: load_cube(w, spec, cube, GRAIN_QUARTER_DAY),
        "cube_days": lambda w: load_cube(w, spec, cube, GRAIN_DAY),
        "speed": lambda w: load_speed(w, spec, prefix),
    }
    started = time.monotonic()
    parts: dict[str, Any] = {}
    for part in PARTS:
        if part in done:
            print(f"  {part:<14} loaded before")
            continue
        if part == "speed":
            before_speed(client, settings, spec)
        parts[part] = timed_part(client, part.replace("_", " "), loaders[part])
        done.append(part)
        remember(client, prefix, spec, done)
    for_reading(client, settings)
    if SEALS not in done:
        parts[SEALS] = timed_seals(client, settings)
        done.append(SEALS)
        remember(client, prefix, spec, done)
    parts["total_seconds"] = round(time.monotonic() - started, 1)
    print(f"  loaded in {parts['total_seconds']:.1f} s (refresh included)")
    return parts


def before_speed(client: Elasticsearch, settings: Settings, spec: Spec) -> None:
    """Put the boundary in force, then create the speed indices (joining the alias filtered)
    and tune them for loading."""
    prefix = settings.elasticsearch.index_prefix
    move_boundary(client, settings.elasticsearch, spec.layout.boundary_ms)
    layout = spec.layout
    hours = range(layout.boundary_ms, layout.now_ms, HOUR_MS)
    speed = sorted(
        {speed_index(prefix, h, grain) for h in hours for grain in (GRAIN_HOUR, GRAIN_MINUTE)}
    )
    for index in speed:
        client.options(ignore_status=400).indices.create(index=index)
    for_loading(client, speed)


def remember(client: Elasticsearch, prefix: str, spec: Spec, done: list[str]) -> None:
    """Keep what is loaded in the batch index's mapping ``_meta`` (for --reuse)."""
    client.indices.put_mapping(
        index=ViewNames(prefix).batch_index,
        meta={
            "bench_serving": {
                "boundary_ms": spec.layout.boundary_ms,
                "now_ms": spec.layout.now_ms,
                "days": spec.layout.days,
                "urls": len(spec.site.urls),
                "countries": len(spec.site.countries),
                "users": spec.site.users,
                "events_per_hour": spec.events_per_hour,
                "rate": spec.rate,
                "partitions": spec.partitions,
                "seed": spec.seed,
                "loaded": list(done),
            }
        },
    )


def recalled(client: Elasticsearch, prefix: str) -> dict[str, Any] | None:
    """What a previous run loaded (or began loading) under ``prefix``, if its indices exist."""
    index = ViewNames(prefix).batch_index
    if not client.indices.exists(index=index):
        return None
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    meta = mapping.get("_meta", {}).get("bench_serving")
    return dict(meta) if meta is not None else None


def check_disk(settings: Settings) -> None:
    """Refuse to load with less than ~10 GB free where Elasticsearch keeps its data."""
    home = settings.stack.home
    where = home if home.exists() else Path("/")
    free = shutil.disk_usage(where).free
    if free < MIN_FREE_BYTES:
        raise SystemExit(
            f"only {free / 1e9:.1f} GB free on {where}: the bench needs ~10 GB "
            "(free some space or lower --days / --urls)"
        )


# --- the API and the measurements -------------------------------------------------------------


@dataclass
class Sample:
    """One answer: which query, how long, its status and what it said."""

    query: str
    seconds: float
    status: int
    clicks: int | None = None
    documents: int | None = None
    error: str | None = None


def ask(http: httpx.Client, query: Query, layout: Layout, repetition: int) -> Sample:
    """One GET /v1/metrics, timed."""
    params = query.api_params(layout, repetition)
    started = time.perf_counter()
    try:
        response = http.get("/v1/metrics", params=params)
    except httpx.HTTPError as exc:
        return Sample(query.name, time.perf_counter() - started, 0, error=repr(exc)[:300])
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        return Sample(query.name, seconds, response.status_code, error=response.text[:300])
    body = response.json()
    total = body.get("total") or {}
    documents = body.get("documents", total.get("documents"))
    return Sample(query.name, seconds, 200, total.get("clicks"), documents)


def single_client(
    base_url: str, plan: list[Query], layout: Layout, warmup: int, reps: int
) -> tuple[list[Sample], float]:
    """Rounds of every query in turn; the samples after ``warmup`` rounds and their rate."""
    samples: list[Sample] = []
    with httpx.Client(base_url=base_url, timeout=120) as http:
        for round_ in range(warmup):
            for query in plan:
                ask(http, query, layout, round_)
        started = time.monotonic()
        for round_ in range(warmup, warmup + reps):
            samples.extend(ask(http, query, layout, round_) for query in plan)
        elapsed = time.monotonic() - started
    return samples, len(samples) / elapsed


def mixed_clients(
    base_url: str, plan: list[Query], layout: Layout, clients: int, seconds: float
) -> tuple[list[Sample], float]:
    """``clients`` threads looping over the queries for ``seconds``; samples and rate."""
    samples: list[Sample] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(worker: int) -> None:
        mine: list[Sample] = []
        with httpx.Client(base_url=base_url, timeout=120) as http:
            step = 0
            while time.monotonic() < deadline:
                query = plan[(worker + step) % len(plan)]
                mine.append(ask(http, query, layout, worker * 7 + step))
                step += 1
        with lock:
            samples.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(w,)) for w in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples, len(samples) / (time.monotonic() - started)


def first_window(base_url: str, plan: list[Query], layout: Layout) -> dict[str, Sample]:
    """Each query's answer on repetition 0's range (the range the old path reads)."""
    with httpx.Client(base_url=base_url, timeout=120) as http:
        return {q.name: ask(http, q, layout, 0) for q in plan}


def compare_clicks(old: dict[str, Any], new: Sample) -> None:
    """Note in ``old`` whether the API's total clicks on the same range are the old path's."""
    if old["answers"]:
        old["api_total_clicks"] = new.clicks
        old["clicks_match"] = new.clicks == old["total_clicks"]


def summary(samples: Sequence[Sample]) -> dict[str, Any]:
    """p50/p99 (s) of the 200 answers, the failures, and what the answers said."""
    ok = [s for s in samples if s.status == 200]
    failed = [s for s in samples if s.status != 200]
    result: dict[str, Any] = {"answers": len(ok), "failures": len(failed)}
    if ok:
        seconds = [s.seconds for s in ok]
        result |= {
            "p50_s": round(percentile(seconds, 0.5), 4),
            "p99_s": round(percentile(seconds, 0.99), 4),
            "total_clicks": ok[-1].clicks,
            "documents": ok[-1].documents,
        }
    if failed:
        result["first_failure"] = f"{failed[0].status}: {failed[0].error}"
    return result


def per_query(plan: list[Query], samples: Sequence[Sample]) -> dict[str, dict[str, Any]]:
    """:func:`summary` of each query's samples."""
    return {q.name: summary([s for s in samples if s.query == q.name]) for q in plan}


def count_round_trip(client: Elasticsearch, index: str, reps: int = 50) -> float:
    """p50 (s) of a plain ``_count`` on ``index``."""
    seconds = []
    for _ in range(reps):
        started = time.perf_counter()
        client.count(index=index)
        seconds.append(time.perf_counter() - started)
    return percentile(seconds, 0.5)


def health_round_trip(base_url: str, reps: int = 50) -> float:
    """p50 (s) of GET /healthz (the app's own overhead plus an Elasticsearch ping)."""
    seconds = []
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for _ in range(reps):
            started = time.perf_counter()
            http.get("/healthz")
            seconds.append(time.perf_counter() - started)
    return percentile(seconds, 0.5)


# --- the old fetch-everything path ------------------------------------------------------------


@dataclass
class Merged:
    """Sums per group and the sketches to union (the old path's merge)."""

    lg_k: int
    group_by: str | None
    clicks: int = 0
    documents: int = 0
    total_union: hll_union = field(init=False)
    groups: dict[str, list[int]] = field(default_factory=dict)
    sketches: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.total_union = hll_union(self.lg_k)

    def add(self, source: dict[str, Any]) -> None:
        """Fold one view document in."""
        self.documents += 1
        self.clicks += int(source["clicks"])
        encoded = source.get("users_sketch")
        if encoded:
            self.total_union.update(hll_sketch.deserialize(base64.b64decode(encoded)))
        if self.group_by is None:
            return
        key = str(source.get(self.group_by))
        sums = self.groups.setdefault(key, [0, 0, 0, 0])
        sums[0] += int(source["clicks"])
        sums[1] += int(source["bot_clicks"])
        sums[2] += int(source["time_spent_sum_ms"])
        sums[3] += int(source["time_spent_count"])
        if encoded:
            self.sketches.setdefault(key, []).append(encoded)

    def shown(self, top: int) -> dict[str, float]:
        """The top groups by clicks (ties by key) and their unique-users estimates."""
        ranked = sorted(self.groups, key=lambda k: (-self.groups[k][0], k))[:top]
        shown = {}
        for key in ranked:
            union = hll_union(self.lg_k)
            for encoded in self.sketches.get(key, []):
                union.update(hll_sketch.deserialize(base64.b64decode(encoded)))
            shown[key] = union.get_estimate()
        return shown


def old_selections(
    names: ViewNames, layout: Layout, start: int, end: int, params: dict[str, str]
) -> list[tuple[str, dict[str, Any]]]:
    """(index, query) of the documents the old path reads: batch hours behind the boundary,
    speed (url, country, minute) documents after it."""
    filters: list[dict[str, Any]] = []
    if "url" in params:
        filters.append({"prefix": {"url": params["url"]}})
    if "country" in params:
        filters.append({"term": {"country": params["country"]}})
    boundary = layout.boundary_ms

    def ranged(lo: int, hi: int, *extra: dict[str, Any]) -> dict[str, Any]:
        span = {"range": {"start": {"gte": lo, "lt": hi, "format": "epoch_millis"}}}
        return {"bool": {"filter": [span, *extra, *filters]}}

    selections = []
    if ceil_hour(start) < min(boundary, end):
        selections.append((names.batch_index, ranged(ceil_hour(start), min(boundary, end))))
    if max(boundary, start) < end:
        level = {"term": {"level": LEVEL_URL_COUNTRY}}
        grain = {"term": {"grain": GRAIN_MINUTE}}
        selections.append((names.speed_pattern, ranged(max(boundary, start), end, level, grain)))
    return selections


def fetch_all(client: Elasticsearch, index: str, query: dict[str, Any], merged: Merged) -> None:
    """Every document of the selection through a point in time + search_after."""
    pit = client.open_point_in_time(index=index, keep_alive="1m")["id"]
    after: list[Any] | None = None
    try:
        while True:
            page = client.search(
                pit={"id": pit, "keep_alive": "1m"},
                query=query,
                size=5000,
                sort=[{"_shard_doc": "asc"}],
                source_includes=SOURCE_FIELDS,
                search_after=after,
                track_total_hits=False,
            )
            hits = page["hits"]["hits"]
            for hit in hits:
                merged.add(hit["_source"])
            if len(hits) < 5000:
                return
            after = hits[-1]["sort"]
            pit = page.get("pit_id", pit)
    finally:
        client.close_point_in_time(id=pit)


def old_path(
    client: Elasticsearch, names: ViewNames, layout: Layout, query: Query, lg_k: int
) -> dict[str, Any]:
    """The old path's median of 5 on the first repetition's range, or why it does not answer."""
    start, end = query.window(layout, 0)
    selections = old_selections(names, layout, start, end, query.params)
    docs = sum(
        int(client.count(index=index, query=q, allow_no_indices=True)["count"])
        for index, q in selections
    )
    if docs > OLD_PATH_CAP:
        return {"documents": docs, "answers": False}
    group_by = query.params.get("group_by")
    seconds = []
    merged = Merged(lg_k, group_by)
    for _ in range(OLD_PATH_RUNS):
        started = time.perf_counter()
        merged = Merged(lg_k, group_by)
        for index, q in selections:
            fetch_all(client, index, q, merged)
        merged.shown(int(query.params.get("top", "10")))
        merged.total_union.get_result().get_estimate()
        seconds.append(time.perf_counter() - started)
    return {
        "documents": merged.documents,
        "answers": True,
        "median_s": round(statistics.median(seconds), 3),
        "total_clicks": merged.clicks,
    }


# --- sizes, targets, report -------------------------------------------------------------------


def layer_sizes(client: Elasticsearch, prefix: str, layout: Layout) -> dict[str, dict[str, Any]]:
    """Documents and store bytes per layer, and per day of traffic (the speed tail extrapolated
    from its minutes to a day)."""
    names = ViewNames(prefix)
    stats = client.indices.stats(index=f"{prefix}-*", metric="docs,store")["indices"]
    layers = {"batch_views": [names.batch_index], "cube": [f"{prefix}-cube-v1"]}
    spans = {i: speed_index_span(prefix, i) for i in stats}
    # Minute rollups live in hourly indices (<prefix>-speed-YYYY.MM.DD.HH), hours in daily ones.
    layers["speed_minutes"] = [i for i, s in spans.items() if s and s[1] - s[0] == HOUR_MS]
    layers["speed_hours"] = [i for i, s in spans.items() if s and s[1] - s[0] == DAY_MS]
    layers["speed_sealed"] = [i for i in stats if speed_index_span(prefix, i, "sealed")]
    tail_days = layout.tail_minutes / (24 * 60)
    days = {
        "batch_views": layout.batch_days,
        "cube": layout.batch_days,
        "speed_minutes": tail_days,
        "speed_hours": tail_days,
        "speed_sealed": tail_days,
    }
    sizes = {}
    for layer, indices in layers.items():
        docs = sum(int(stats[i]["primaries"]["docs"]["count"]) for i in indices)
        size = sum(int(stats[i]["primaries"]["store"]["size_in_bytes"]) for i in indices)
        sizes[layer] = {
            "docs": docs,
            "bytes": size,
            "docs_per_day": round(docs / days[layer]),
            "bytes_per_day": round(size / days[layer]),
        }
    return sizes


def targets(
    plan: list[Query],
    single: dict[str, dict[str, Any]],
    mix: dict[str, dict[str, Any]],
    old: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """Each target, its measured value and PASS/FAIL."""
    rows = []
    for q in plan:
        one, many = single[q.name], mix[q.name]
        p99 = one.get("p99_s")
        ok1 = p99 is not None and one["failures"] == 0 and p99 <= P99_TARGET_S
        rows.append(_row(q.name, "p99, 1 client <= 0.3 s", p99, ok1))
        limit = MIX_TARGET_S if q.realtime_or_total else MIX_FACTOR * (p99 or 0.0)
        label = "<= 1 s" if q.realtime_or_total else f"<= 4x 1-client p99 ({limit:.3f} s)"
        p99m = many.get("p99_s")
        okm = p99m is not None and many["failures"] == 0 and p99 is not None and p99m <= limit
        rows.append(_row(q.name, f"p99, 8 clients {label}", p99m, okm))
        rows.append(_speedup_row(q.name, one, old[q.name]))
    return rows


def _row(query: str, target: str, value: float | None, ok: bool) -> dict[str, Any]:
    shown = f"{value:.3f} s" if value is not None else "no answer"
    return {"query": query, "target": target, "value": shown, "pass": ok}


def _speedup_row(query: str, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    target = "old path / new p50 >= 10x"
    if not old["answers"]:
        value = f"old path does not answer ({old['documents']:,} docs > {OLD_PATH_CAP:,})"
        return {"query": query, "target": target, "value": value, "pass": "p50_s" in new}
    if "p50_s" not in new:
        return {"query": query, "target": target, "value": "no answer", "pass": False}
    ratio = old["median_s"] / max(new["p50_s"], 1e-9)
    old["ratio"] = round(ratio, 1)
    shown = f"{ratio:.1f}x"
    return {"query": query, "target": target, "value": shown, "pass": ratio >= SPEEDUP_TARGET}


def print_report(
    plan: list[Query],
    single: dict[str, dict[str, Any]],
    mix: dict[str, dict[str, Any]],
    old: dict[str, dict[str, Any]],
    rows: list[dict[str, Any]],
) -> None:
    """The latency table, then the targets."""
    print(
        f"\n{'query':<30} {'p50':>7} {'p99':>7} {'8c p50':>7} {'8c p99':>7} "
        f"{'old med':>8} {'docs':>9} {'clicks':>10} {'fail':>5}"
    )
    for q in plan:
        one, many, was = single[q.name], mix[q.name], old[q.name]
        print(
            f"{q.name:<30} {_s(one.get('p50_s'))} {_s(one.get('p99_s'))} "
            f"{_s(many.get('p50_s'))} {_s(many.get('p99_s'))} {_s(was.get('median_s'), 8)} "
            f"{_n(one.get('documents'), 9)} {_n(one.get('total_clicks'), 10)} "
            f"{one['failures'] + many['failures']:>5}"
        )
        if "first_failure" in one or "first_failure" in many:
            print(f"    {one.get('first_failure') or many.get('first_failure')}")
    print(f"\n{'query':<30} {'target':<48} {'measured':<44} result")
    for row in rows:
        verdict = "PASS" if row["pass"] else "FAIL"
        print(f"{row['query']:<30} {row['target']:<48} {row['value']:<44} {verdict}")
    mismatched = [q.name for q in plan if old[q.name].get("clicks_match") is False]
    if mismatched:
        print(f"\nthe old path's total clicks differ from the API's on: {mismatched}")


def _s(value: float | None, width: int = 7) -> str:
    return f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}"


def _n(value: int | None, width: int) -> str:
    return f"{value:>{width},}" if value is not None else f"{'-':>{width}}"


def print_sizes(sizes: dict[str, dict[str, Any]]) -> None:
    """Documents and bytes per layer and per day of traffic."""
    print(f"\n{'layer':<14} {'docs':>12} {'MB':>9} {'docs/day':>13} {'MB/day':>9}")
    for layer, s in sizes.items():
        print(
            f"{layer:<14} {s['docs']:>12,} {s['bytes'] / 1e6:>9.1f} "
            f"{s['docs_per_day']:>13,} {s['bytes_per_day'] / 1e6:>9.1f}"
        )
    print(
        "(speed: the tail's figures scaled from its minutes to a day; the minute indices are\n"
        " kept serving.speed_minute_keep_hours behind the boundary, the others days)"
    )


# --- main -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    """The options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=30, help="days of batch views (30)")
    parser.add_argument("--urls", type=int, default=5000, help="distinct URLs (5000)")
    parser.add_argument("--countries", type=int, default=50, help="distinct countries (50)")
    parser.add_argument("--users", type=int, default=300_000, help="distinct users (300000)")
    parser.add_argument(
        "--events-per-hour",
        type=int,
        default=5400,
        help="sampled events per batch hour (5400: ~2,900 (url, country) cells an hour)",
    )
    parser.add_argument("--partitions", type=int, default=16, help="Kafka partitions (16)")
    parser.add_argument("--rate", type=float, default=1000.0, help="speed events/s (1000)")
    parser.add_argument("--reps", type=int, default=30, help="measured repetitions (30)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up repetitions (5)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    parser.add_argument("--mix-seconds", type=float, default=30.0, help="mix duration (30)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (7)")
    parser.add_argument("--prefix", default="bench-serving", help="index prefix (bench-serving)")
    parser.add_argument("--keep", action="store_true", help="leave the indices at the end")
    parser.add_argument(
        "--reuse", action="store_true", help="skip loading when the prefix's indices exist"
    )
    parser.add_argument("--load-only", action="store_true", help="load, measure nothing")
    return parser.parse_args()


def spec_from(args: argparse.Namespace, settings: Settings, layout: Layout) -> Spec:
    """The data to load (or that was loaded) from the options."""
    return Spec(
        site=make_site(args.urls, args.countries, args.users, args.seed),
        layout=layout,
        events_per_hour=args.events_per_hour,
        rate=args.rate,
        partitions=args.partitions,
        lg_k=settings.batch.hll_lg_k,
        seed=args.seed,
    )


def prepare(
    client: Elasticsearch, settings: Settings, args: argparse.Namespace
) -> tuple[Spec, dict[str, Any] | None]:
    """Reuse what a previous run loaded (--reuse; an interrupted load is completed) or load
    afresh; the spec and the load's figures (None when nothing was loaded)."""
    prefix = settings.elasticsearch.index_prefix
    meta = recalled(client, prefix) if args.reuse else None
    if meta is not None:
        print(f"reusing the indices under {prefix}-*: {meta}")
        for name in (*RECORDED, "partitions"):
            setattr(args, name, meta[name])
        layout = Layout(meta["boundary_ms"], meta["now_ms"], meta["days"])
        spec = spec_from(args, settings, layout)
        done = list(meta.get("loaded", PARTS))
        if all(part in done for part in (*PARTS, SEALS)):
            return spec, None
        check_disk(settings)
        return spec, load(client, settings, spec, done)
    drop_views(client, settings.elasticsearch)
    check_disk(settings)
    spec = spec_from(args, settings, Layout.at(int(time.time() * 1000), args.days))
    return spec, load(client, settings, spec, [])


RECORDED = ("days", "urls", "countries", "users", "events_per_hour", "rate", "seed")


def measure(
    client: Elasticsearch, settings: Settings, spec: Spec, args: argparse.Namespace
) -> dict[str, Any]:
    """Every measurement through the API and the old path; the report's figures."""
    prefix = settings.elasticsearch.index_prefix
    names = ViewNames(prefix)
    client.indices.put_settings(
        index=f"{prefix}-*", settings={"index.requests.cache.enable": False}
    )
    wait_for_cluster(client)
    plan = queries(spec.site)
    api = ApiProcess.start(settings)
    try:
        print(f"\nAPI at {api.base_url}; one client, {args.warmup} + {args.reps} rounds ...")
        samples, single_rate = single_client(
            api.base_url, plan, spec.layout, args.warmup, args.reps
        )
        single = per_query(plan, samples)
        print(f"{args.clients} clients for {args.mix_seconds:.0f} s ...")
        mixed, mix_rate = mixed_clients(
            api.base_url, plan, spec.layout, args.clients, args.mix_seconds
        )
        mix = per_query(plan, mixed)
        health = health_round_trip(api.base_url)
        same_range = first_window(api.base_url, plan, spec.layout)
    finally:
        api.stop()
    print("the old fetch-everything path ...")
    old = {q.name: old_path(client, names, spec.layout, q, spec.lg_k) for q in plan}
    for q in plan:
        compare_clicks(old[q.name], same_range[q.name])
    rows = targets(plan, single, mix, old)
    print_report(plan, single, mix, old, rows)
    count = count_round_trip(client, names.batch_index)
    print(
        f"\nthroughput: 1 client {single_rate:.1f} req/s, {args.clients} clients "
        f"{mix_rate:.1f} req/s ({mix_rate / single_rate:.2f}x); reference: _count p50 "
        f"{count * 1000:.1f} ms, /healthz p50 {health * 1000:.1f} ms"
    )
    return {
        "single_client": single,
        "mixed_clients": mix,
        "old_path": old,
        "targets": rows,
        "throughput_req_s": {"single": round(single_rate, 2), "mixed": round(mix_rate, 2)},
        "count_round_trip_p50_s": round(count, 4),
        "healthz_round_trip_p50_s": round(health, 4),
    }


def main() -> None:
    """Load (or reuse), measure, print, save JSON; drop the indices unless --keep."""
    args = parse_args()
    settings = isolated(load_settings(), args.prefix)
    client = es_connect(settings.elasticsearch)
    try:
        client.cluster.health()
    except (ApiError, TransportError) as exc:
        url = redact_url(settings.elasticsearch.url)
        raise SystemExit(f"Elasticsearch is not reachable at {url}: {exc}") from None
    try:
        spec, parts = prepare(client, settings, args)
        prefix = settings.elasticsearch.index_prefix
        sizes = layer_sizes(client, prefix, spec.layout)
        print_sizes(sizes)
        report: dict[str, Any] = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "options": {k: v for k, v in vars(args).items() if k != "load_only"},
            "boundary": iso(spec.layout.boundary_ms),
            "now": iso(spec.layout.now_ms),
            "load": parts,
            "sizes": sizes,
        }
        if not args.load_only:
            report |= measure(client, settings, spec, args)
        save("serving", report)
    finally:
        if not args.keep:
            drop_views(client, settings.elasticsearch)
        client.close()


if __name__ == "__main__":
    main()
