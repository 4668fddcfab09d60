"""The batch job: for hour-aligned ``[from, to)``, read HBase, build the views, index, advance.

Runs in-process (``clickstream batch``, Spark local mode) or under ``spark-submit``
(``processing/main.py``, see deploy/spark/). A long range is processed in chunks, with progress,
and the watermark moves after each chunk is indexed. One run at a time: a run holds the lock in
the state index (indexing/lock.py) from before it reads the ledger until it has moved the
boundary.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog
from pyspark.sql import DataFrame, SparkSession

from clickstream.errors import ConfigError
from clickstream.settings import Settings
from clickstream.times import HOUR_MS, MINUTE_MS, iso, parse_ms
from hbase_schema.late import closed_until_ms, hour_of
from indexing.boundary import move_boundary, prune_speed
from indexing.client import connect
from indexing.lock import BatchLock, LockHeldError, held_message, read_lock
from indexing.state import advance_watermark, ensure_state_index, read_watermark
from indexing.templates import ensure_batch_index, ensure_cube_index
from indexing.views import (
    COARSE_LEVELS,
    CUBE_GRAINS,
    GRAIN_DAY,
    GRAIN_HOUR,
    GRAIN_QUARTER_DAY,
    LEVEL_KEYS,
    ViewNames,
    cube_index,
)
from processing.aggregate import batch_views, rollups, sessionised
from processing.reader import read_clicks
from processing.writer import write_rollups, write_views
from storage import late as late_ledger

log = structlog.get_logger(__name__)

LOG4J2 = Path(__file__).resolve().parent / "log4j2.properties"

Progress = Callable[[str], None]

#: The cube's grains above the hour, rolled up once each of their buckets is complete.
BLOCK_GRAINS: Final = (GRAIN_QUARTER_DAY, GRAIN_DAY)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one run did."""

    t0_ms: int
    t1_ms: int
    views: int
    seconds: float
    late_hours: int = 0
    boundary_ms: int | None = None
    pruned: tuple[str, ...] = ()


def spark_session(settings: Settings, app: str = "clickstream-batch") -> SparkSession:
    """A session from settings (under spark-submit, the submitted master and confs win)."""
    builder = SparkSession.builder.appName(app).master(settings.spark.master)
    if settings.spark.master.startswith("local"):
        # Python workers must be this interpreter (the venv with the project's dependencies),
        # not whatever `python3` is on PATH. On a cluster the spark-submit recipe ships them.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # Local mode stays on loopback, like the rest of the local stack.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (
            builder.config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
        )
    spark = (
        builder.config("spark.driver.memory", settings.spark.driver_memory)
        .config("spark.executor.memory", settings.spark.executor_memory)
        .config("spark.sql.shuffle.partitions", str(settings.spark.shuffle_partitions))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG4J2}")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    return spark


# --- the range rules (pure) -------------------------------------------------------------------


def check_gap(t0_ms: int, watermark_ms: int | None) -> None:
    """Refuse a start past the watermark: the hours between would get no batch views, and the
    boundary, moved to this run's end, would hide their speed views."""
    if watermark_ms is not None and t0_ms > watermark_ms:
        raise ConfigError(
            f"--from {iso(t0_ms)} is past the watermark {iso(watermark_ms)} (where the last "
            f"batch run ended): [{iso(watermark_ms)}, {iso(t0_ms)}) would have no batch views "
            f"and the boundary would hide their speed views. Start at the watermark (--from "
            f"{iso(watermark_ms)}), or give no range to run from it"
        )


def resolve_range(
    since_ms: int | None,
    until_ms: int | None,
    *,
    watermark_ms: int | None,
    now_ms: int,
    session_timeout_ms: int,
) -> tuple[int, int]:
    """The range a run processes: ``[since, until)`` as given, or without one every closed hour
    since the watermark (empty when there is none yet). A start past the watermark is refused
    (:func:`check_gap`; before the first run any start is fine), and so is an end past
    :func:`hbase_schema.late.closed_until_ms`."""
    latest = closed_until_ms(now_ms, session_timeout_ms)
    if since_ms is None or until_ms is None:
        if watermark_ms is None:
            raise ConfigError("no batch has run yet: give the first range with --from/--to")
        return watermark_ms, max(latest, watermark_ms)
    check_gap(since_ms, watermark_ms)
    if until_ms > latest:
        raise ConfigError(
            f"--to {iso(until_ms)} is too late: the latest allowed end is {iso(latest)} (now "
            f"minus the session timeout, {session_timeout_ms // MINUTE_MS} min, to the hour), "
            "since the sessions of later hours can still change. Use that or an earlier --to"
        )
    return since_ms, until_ms


# --- the entry points' range ------------------------------------------------------------------


def default_range(settings: Settings, now_ms: int) -> tuple[int, int]:
    """Since the watermark, up to the last hour whose sessions can no longer change."""
    return _resolve(settings, None, None, now_ms)


def batch_range(
    settings: Settings, since: str | None, until: str | None, now_ms: int
) -> tuple[int, int]:
    """The range a run processes: ``[since, until)`` as given (ISO-8601 with a UTC offset, both
    or neither), else :func:`default_range`, under the rules of :func:`resolve_range`. Both
    entry points (the CLI and spark-submit's ``processing/main.py``) read their arguments
    through this, so they read them alike."""
    if (since is None) != (until is None):
        raise ConfigError("give both --from and --to, or neither (then: since the watermark)")
    if since is None or until is None:
        return default_range(settings, now_ms)
    try:
        since_ms, until_ms = parse_ms(since), parse_ms(until)
    except ValueError as exc:
        raise ConfigError(f"--from/--to: {exc} (e.g. 2026-11-22T10:00Z)") from None
    return _resolve(settings, since_ms, until_ms, now_ms)


def _resolve(
    settings: Settings, since_ms: int | None, until_ms: int | None, now_ms: int
) -> tuple[int, int]:
    """:func:`resolve_range` with the stored watermark; a run holding the lock is reported here
    already, before Spark starts (run_batch takes the lock itself, race-free)."""
    prefix = settings.elasticsearch.index_prefix
    with connect(settings.elasticsearch) as client:
        watermark = read_watermark(client, prefix)
        lock = read_lock(client, prefix)
    if lock is not None and not lock.expired(now_ms):
        raise LockHeldError(held_message(lock, now_ms))
    return resolve_range(
        since_ms,
        until_ms,
        watermark_ms=watermark.completed_until_ms,
        now_ms=now_ms,
        session_timeout_ms=settings.ingest.session_timeout_ms,
    )


def check_range(t0_ms: int, t1_ms: int) -> None:
    """Ranges are whole UTC hours, non-empty."""
    if t0_ms % HOUR_MS or t1_ms % HOUR_MS:
        raise ConfigError("--from and --to must be whole UTC hours (e.g. 2026-11-22T10:00Z)")
    if t1_ms <= t0_ms:
        raise ConfigError(f"empty range: --to must be after --from ({t0_ms} >= {t1_ms})")


def run_batch(
    spark: SparkSession,
    settings: Settings,
    t0_ms: int,
    t1_ms: int,
    *,
    progress: Progress = print,
    chunk_hours: int = 24,
) -> BatchResult:
    """Build and index the views and hour rollups of ``[t0, t1)`` chunk by chunk, advancing the
    watermark; then recompute the earlier hours that late events touched (the late ledger);
    then the quarter-day and day rollups of the completed buckets either touched; then move
    the time boundary to the watermark and prune the speed indices behind it.

    All of it under the batch lock (a second run fails fast, naming the holder), and a start
    past the watermark is refused under it (:func:`check_gap`)."""
    check_range(t0_ms, t1_ms)
    started = time.monotonic()
    es = settings.elasticsearch
    with connect(es) as client:
        ensure_state_index(client, es)
        with BatchLock(client, es.index_prefix, settings.batch.lock_ttl_s * 1000) as lock:
            check_gap(t0_ms, read_watermark(client, es.index_prefix).completed_until_ms)
            # Snapshot the ledger before reading HBase: a late event that lands while the job
            # reads keeps its key and is recomputed by the next run.
            ledger = late_ledger.snapshot(settings.hbase)
            cube = ensure_cube_index(client, es)
            batch_index = ensure_batch_index(client, es.index_prefix)
            views_total = 0
            watermark: int | None = None
            chunks = list(range(t0_ms, t1_ms, chunk_hours * HOUR_MS))
            for number, c0 in enumerate(chunks, 1):
                c1 = min(c0 + chunk_hours * HOUR_MS, t1_ms)
                count = _build_and_write(spark, settings, c0, c1)
                views_total += count
                lock.renew()
                watermark = advance_watermark(client, es.index_prefix, c0, c1).completed_until_ms
                progress(f"chunk {number}/{len(chunks)}: [{iso(c0)}, {iso(c1)}) -> {count} views")
            done = [key for key in ledger if hour_of(key) < (watermark or t1_ms)]
            late_hours = sorted({hour_of(key) for key in done} - set(range(t0_ms, t1_ms, HOUR_MS)))
            for r0, r1 in _runs(late_hours):
                count = _build_and_write(spark, settings, r0, r1)
                views_total += count
                progress(f"late events: recomputed [{iso(r0)}, {iso(r1)}) -> {count} views")
                lock.renew()
            # Quarter-day and day rollups need every hour of their bucket: (re)written once a
            # bucket is complete, for the buckets this run or its late events touched; each run
            # of buckets re-reads its hours from HBase.
            completed = watermark if watermark is not None else t1_ms
            touched = set(range(t0_ms, t1_ms, HOUR_MS)) | set(late_hours)
            for grain in BLOCK_GRAINS:
                for b0, b1 in _block_runs(touched, completed, CUBE_GRAINS[grain]):
                    count = _build_blocks(spark, settings, b0, b1, grain)
                    progress(f"{grain} rollups: [{iso(b0)}, {iso(b1)}) -> {count}")
                    lock.renew()
            late_ledger.clear(settings.hbase, done)
            client.indices.refresh(index=batch_index)
            client.indices.refresh(index=cube)
            # Only once the views are searchable may readers be switched to them.
            lock.renew()
            boundary = move_boundary(client, es, watermark if watermark is not None else t1_ms)
            serving = settings.serving
            pruned = prune_speed(
                client, es, boundary, serving.speed_keep_days, serving.speed_minute_keep_hours
            )
    result = BatchResult(
        t0_ms,
        t1_ms,
        views_total,
        time.monotonic() - started,
        len(late_hours),
        boundary,
        tuple(pruned),
    )
    log.info(
        "batch.done",
        t0=iso(t0_ms),
        t1=iso(t1_ms),
        views=views_total,
        late_hours=len(late_hours),
        late_keys_cleared=len(done),
        boundary=iso(boundary),
        speed_indices_pruned=len(pruned),
        seconds=round(result.seconds, 1),
    )
    return result


def _read(spark: SparkSession, settings: Settings, t0_ms: int, t1_ms: int) -> DataFrame:
    """The clicks of ``[t0, t1)`` with their time spent, kept in memory for several passes.
    HBase is read one session timeout past the range, so time spent near its end is known."""
    timeout_ms = settings.ingest.session_timeout_ms
    clicks = read_clicks(
        spark,
        settings.hbase,
        t0_ms,
        t1_ms + timeout_ms,
        slice_ms=settings.batch.time_slice_hours * HOUR_MS,
        caching=settings.batch.scan_caching,
    )
    return sessionised(clicks, t0_ms, t1_ms, timeout_ms).persist()


def _build_and_write(spark: SparkSession, settings: Settings, t0_ms: int, t1_ms: int) -> int:
    """The (url, country, hour) views and the hour rollups of the coarser levels of
    ``[t0, t1)``, built and indexed; how many views."""
    clicks = _read(spark, settings, t0_ms, t1_ms)
    lg_k = settings.batch.hll_lg_k
    views = batch_views(clicks, lg_k).cache()
    es = settings.elasticsearch
    write_views(views, es, ViewNames(es.index_prefix).batch_index)
    hours = rollups(clicks, HOUR_MS, COARSE_LEVELS, lg_k)
    write_rollups(hours, es, cube_index(es.index_prefix), GRAIN_HOUR)
    count = views.count()
    views.unpersist()
    clicks.unpersist()
    return count


def _build_blocks(
    spark: SparkSession, settings: Settings, b0_ms: int, b1_ms: int, grain: str
) -> int:
    """The rollups (every level) of the whole buckets of ``grain`` in ``[b0, b1)``; how many."""
    clicks = _read(spark, settings, b0_ms, b1_ms)
    lg_k = settings.batch.hll_lg_k
    blocks = rollups(clicks, CUBE_GRAINS[grain], tuple(LEVEL_KEYS), lg_k).cache()
    es = settings.elasticsearch
    write_rollups(blocks, es, cube_index(es.index_prefix), grain)
    count = blocks.count()
    blocks.unpersist()
    clicks.unpersist()
    return count


def _block_runs(hours: set[int], completed_until_ms: int, size: int) -> list[tuple[int, int]]:
    """The whole buckets of ``size`` ms holding any of ``hours`` and ending by
    ``completed_until_ms``, consecutive ones merged into ``[start, end)`` ranges."""
    blocks = sorted({hour - hour % size for hour in hours})
    runs: list[tuple[int, int]] = []
    for block in blocks:
        if block + size > completed_until_ms:
            continue
        if runs and runs[-1][1] == block:
            runs[-1] = (runs[-1][0], block + size)
        else:
            runs.append((block, block + size))
    return runs


def _runs(hours: list[int]) -> list[tuple[int, int]]:
    """Consecutive hours merged into ``[start, end)`` ranges."""
    runs: list[tuple[int, int]] = []
    for hour in hours:
        if runs and runs[-1][1] == hour:
            runs[-1] = (runs[-1][0], hour + HOUR_MS)
        else:
            runs.append((hour, hour + HOUR_MS))
    return runs
