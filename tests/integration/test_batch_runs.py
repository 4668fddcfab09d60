"""Batch runs on the real stack: the range rules at the entry points, one run at a time (the
lock in the state index), and `clickstream batch-status`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch
from pyspark.sql import SparkSession

from clickstream.errors import ConfigError
from clickstream.settings import Settings
from clickstream.times import HOUR_MS, MINUTE_MS, hour_floor, iso
from commands.cli import main
from hbase_schema.late import LATE_COLUMN, late_keys, late_table
from hbase_schema.rowkey import encode_row_key
from indexing.boundary import move_boundary
from indexing.client import connect as es_connect
from indexing.lock import (
    Lease,
    LockHeldError,
    LockLostError,
    acquire_lock,
    read_lock,
    release_lock,
    renew_lock,
)
from indexing.state import advance_watermark, ensure_state_index, read_watermark
from indexing.templates import drop_views
from processing.job import batch_range, run_batch
from storage.connection import connect as hbase_connect
from tests.integration.helpers import traffic_start_ms

pytestmark = pytest.mark.integration

TTL_MS = 10 * MINUTE_MS


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def state(settings: Settings) -> Iterator[Elasticsearch]:
    """A client on the test's own (empty) state index, dropped afterwards: no Kafka, no HBase."""
    client = es_connect(settings.elasticsearch)
    ensure_state_index(client, settings.elasticsearch)
    yield client
    drop_views(client, settings.elasticsearch)
    client.close()


class TestBatchRange:
    def test_refuses_a_start_past_the_stored_watermark_and_an_end_in_open_sessions(
        self, settings: Settings, state: Elasticsearch
    ) -> None:
        """The CLI's and spark-submit's range: a gap past the watermark and hours whose
        sessions are still open are refused, naming the watermark and the latest end; so is a
        run while another holds the lock."""
        now = now_ms()
        watermark = hour_floor(now) - 6 * HOUR_MS
        advance_watermark(
            state, settings.elasticsearch.index_prefix, watermark - HOUR_MS, watermark
        )

        with pytest.raises(ConfigError) as gap:
            batch_range(settings, iso(watermark + HOUR_MS), iso(watermark + 2 * HOUR_MS), now)
        assert f"watermark {iso(watermark)}" in str(gap.value)
        assert f"--from {iso(watermark)}" in str(gap.value)

        latest = hour_floor(now - settings.ingest.session_timeout_ms)
        with pytest.raises(ConfigError) as open_hours:
            batch_range(settings, iso(watermark), iso(latest + HOUR_MS), now)
        assert f"latest allowed end is {iso(latest)}" in str(open_hours.value)

        assert batch_range(settings, iso(watermark), iso(latest), now) == (watermark, latest)
        assert batch_range(settings, None, None, now) == (watermark, latest)

        # A run in progress is reported before Spark starts (run_batch takes the lock itself).
        acquire_lock(state, settings.elasticsearch.index_prefix, "run-a", now, TTL_MS)
        with pytest.raises(LockHeldError, match="run-a"):
            batch_range(settings, None, None, now + 1000)


class TestLock:
    def test_a_second_run_fails_fast_naming_the_holder_and_the_expiry(
        self, settings: Settings, state: Elasticsearch
    ) -> None:
        """While one run holds the lock, another is refused and the lock stays the holder's."""
        prefix = settings.elasticsearch.index_prefix
        now = now_ms()
        held = acquire_lock(state, prefix, "run-a", now, TTL_MS)
        assert held == Lease("run-a", now, now + TTL_MS)

        started = time.monotonic()
        with pytest.raises(LockHeldError) as caught:
            acquire_lock(state, prefix, "run-b", now + 1000, TTL_MS)
        assert time.monotonic() - started < 5
        assert "run-a" in str(caught.value)
        assert iso(now + TTL_MS) in str(caught.value)
        assert read_lock(state, prefix) == held

    def test_of_many_runs_starting_together_exactly_one_wins(
        self, settings: Settings, state: Elasticsearch
    ) -> None:
        """op_type=create: of eight simultaneous runs one holds the lock, seven are refused."""
        prefix = settings.elasticsearch.index_prefix
        assert self.race(state, prefix, now_ms()) == 1

    def test_an_expired_lock_is_taken_over_by_exactly_one_run(
        self, settings: Settings, state: Elasticsearch
    ) -> None:
        """A crashed run's lock expires; of eight runs taking it over, one wins."""
        prefix = settings.elasticsearch.index_prefix
        now = now_ms()
        acquire_lock(state, prefix, "crashed", now - 2 * TTL_MS, TTL_MS)
        assert self.race(state, prefix, now) == 1
        assert read_lock(state, prefix).owner.startswith("racer-")

    def test_the_old_holder_learns_it_lost_the_lock_and_releases_only_its_own(
        self, settings: Settings, state: Elasticsearch
    ) -> None:
        """After a takeover the slow run's renew fails and its release leaves the new lock; the
        new holder renews, then releases, and the lock is free."""
        prefix = settings.elasticsearch.index_prefix
        now = now_ms()
        slow = acquire_lock(state, prefix, "slow", now - 2 * TTL_MS, TTL_MS)
        fresh = acquire_lock(state, prefix, "fresh", now, TTL_MS)

        with pytest.raises(LockLostError, match="fresh"):
            renew_lock(state, prefix, slow, now + 1000, TTL_MS)
        assert release_lock(state, prefix, slow) is False
        assert read_lock(state, prefix) == fresh

        renewed = renew_lock(state, prefix, fresh, now + 5000, TTL_MS)
        assert renewed == Lease("fresh", now, now + 5000 + TTL_MS)
        assert read_lock(state, prefix) == renewed
        assert release_lock(state, prefix, renewed) is True
        assert read_lock(state, prefix) is None
        assert acquire_lock(state, prefix, "next", now + 6000, TTL_MS).owner == "next"

    @staticmethod
    def race(client: Elasticsearch, prefix: str, now: int) -> int:
        """Eight threads acquire at once; how many won (the others must be refused)."""
        barrier = threading.Barrier(8)
        won: list[str] = []
        refused: list[str] = []

        def attempt(number: int) -> None:
            barrier.wait()
            try:
                won.append(acquire_lock(client, prefix, f"racer-{number}", now, TTL_MS).owner)
            except LockHeldError:
                refused.append(f"racer-{number}")

        threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(won) + len(refused) == 8
        assert read_lock(client, prefix).owner == won[0]
        return len(won)


def test_run_batch_refuses_while_locked_and_past_the_watermark_and_always_releases(
    pipeline: Settings, views: Elasticsearch, spark: SparkSession
) -> None:
    """run_batch takes the lock before anything: held by another run, it fails fast and does
    nothing; a start past the watermark is refused under the lock, which is released; a run at
    the watermark succeeds and releases it too."""
    prefix = pipeline.elasticsearch.index_prefix
    t0 = traffic_start_ms()
    other = acquire_lock(views, prefix, "other-run", now_ms(), TTL_MS)
    with pytest.raises(LockHeldError, match="other-run"):
        run_batch(spark, pipeline, t0, t0 + HOUR_MS, progress=lambda _: None)
    assert read_lock(views, prefix) == other
    assert read_watermark(views, prefix).completed_until_ms is None
    assert release_lock(views, prefix, other) is True

    advance_watermark(views, prefix, t0 - HOUR_MS, t0)
    with pytest.raises(ConfigError, match=f"past the watermark {iso(t0)}"):
        run_batch(spark, pipeline, t0 + HOUR_MS, t0 + 2 * HOUR_MS, progress=lambda _: None)
    assert read_lock(views, prefix) is None
    assert read_watermark(views, prefix).completed_until_ms == t0

    result = run_batch(spark, pipeline, t0, t0 + HOUR_MS, progress=lambda _: None)
    assert result.boundary_ms == t0 + HOUR_MS
    assert read_lock(views, prefix) is None


@pytest.fixture
def env(pipeline: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's table and index prefix passed to the CLI as an operator would."""
    monkeypatch.setenv("CLICKSTREAM_HBASE__TABLE", pipeline.hbase.table)
    monkeypatch.setenv(
        "CLICKSTREAM_ELASTICSEARCH__INDEX_PREFIX", pipeline.elasticsearch.index_prefix
    )
    return pipeline


def test_batch_status_shows_the_last_run_lag_lock_and_late_events(
    env: Settings, views: Elasticsearch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before any run: exit 3, no boundary. After one: the last range and when, the boundary's
    lag, the lock's holder, the distinct late events behind the boundary; exit 0, or 3 when the
    lag passes --max-lag-minutes."""
    assert main(["batch-status"]) == 3
    out = capsys.readouterr().out
    assert "no batch run yet" in out

    prefix = env.elasticsearch.index_prefix
    now = now_ms()
    boundary = hour_floor(now - env.ingest.session_timeout_ms)
    advance_watermark(views, prefix, boundary - 3 * HOUR_MS, boundary)
    move_boundary(views, env.elasticsearch, boundary)
    lease = acquire_lock(views, prefix, "host-1:4242:abcd", now, TTL_MS)
    timeout = env.ingest.session_timeout_ms
    buckets = env.hbase.salt_buckets
    behind = boundary - 2 * HOUR_MS
    # Two events behind the boundary (each with two ledger keys), one at it (speed has it).
    events = [
        encode_row_key("u1", behind + 10 * MINUTE_MS, "e1", buckets),
        encode_row_key("u2", behind + 20 * MINUTE_MS, "e2", buckets),
        encode_row_key("u3", boundary + 40 * MINUTE_MS, "e3", buckets),
    ]
    stamps = [behind + 10 * MINUTE_MS, behind + 20 * MINUTE_MS, boundary + 40 * MINUTE_MS]
    connection = hbase_connect(env.hbase)
    try:
        table = connection.table(late_table(env.hbase.table))
        for key, stamp in zip(events, stamps, strict=True):
            for late_key in late_keys(key, stamp, timeout):
                table.put(late_key, {LATE_COLUMN: b""})
    finally:
        connection.close()

    assert main(["batch-status"]) == 0
    out = capsys.readouterr().out
    assert f"[{iso(boundary - 3 * HOUR_MS)}, {iso(boundary)})" in out
    assert f"boundary      {iso(boundary)}" in out
    assert "host-1:4242:abcd" in out
    assert iso(lease.expires_at_ms) in out
    assert "2 waiting" in out
    assert "ok" in out.splitlines()[-1]

    assert main(["batch-status", "--max-lag-minutes", "1"]) == 3
    assert "LAGGING" in capsys.readouterr().out.splitlines()[-1]
