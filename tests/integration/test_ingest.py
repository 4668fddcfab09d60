"""The ingest daemon on the real stack: exact landing, SIGKILLs, an HBase outage, systemd.

Each test publishes generated traffic (with duplicates, malformed messages of every kind, bots,
late and out-of-order events) to its own topics and table, runs `clickstream ingest` as a real
subprocess, and compares HBase and the dead-letter topic with the generator's ground truth.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from clickstream.settings import Settings
from clickstream.times import HOUR_MS
from commands.stack.manager import Stack
from hbase_schema import columns
from ingest.dlq import read_dead_letters
from storage.connection import connect
from tests.integration.helpers import Spawn, health, make_traffic, metric, wait_for
from traffic.generate import Traffic, publish
from traffic.harness import committed, free_port

pytestmark = pytest.mark.integration


def stored_rows(settings: Settings) -> dict[bytes, dict[bytes, bytes]]:
    """Every row of the test's table."""
    connection = connect(settings.hbase)
    try:
        return dict(connection.table(settings.hbase.table).scan(batch_size=2000))
    finally:
        connection.close()


def assert_landed_exactly(settings: Settings, traffic: Traffic) -> None:
    """HBase holds each distinct valid event once; each malformed message is dead-lettered once
    with its own reason; per (url, country, hour) the stored clicks equal the ground truth."""
    rows = stored_rows(settings)
    assert len(rows) == traffic.truth.summary.valid_events

    records = read_dead_letters(settings.kafka)
    expected = Counter(m.reason.value for m in traffic.messages if m.reason is not None)
    assert Counter(record.reason for record in records) == expected
    assert len({record.source for record in records}) == len(records)  # no record twice
    malformed_values = {m.value for m in traffic.messages if m.kind == "malformed"}
    assert {record.value for record in records} <= malformed_values

    clicks: Counter[tuple[str, str, int]] = Counter()
    bots: Counter[tuple[str, str, int]] = Counter()
    for cells in rows.values():
        hour = int(cells[columns.TIMESTAMP_MS]) // HOUR_MS * HOUR_MS
        group = (cells[columns.URL_NORMALIZED].decode(), cells[columns.COUNTRY].decode(), hour)
        (bots if cells[columns.IS_BOT] == b"1" else clicks)[group] += 1
    truth = {(g.url, g.country, g.hour_ms): g for g in traffic.truth.groups}
    assert {k: v for k, v in clicks.items()} == {k: g.clicks for k, g in truth.items() if g.clicks}
    assert {k: v for k, v in bots.items()} == {
        k: g.bot_clicks for k, g in truth.items() if g.bot_clicks
    }


def test_generated_traffic_lands_exactly(pipeline: Settings, spawn: Spawn) -> None:
    """Rows == distinct valid events, DLQ == malformed by reason, groups == ground truth."""
    traffic = make_traffic(events=3000, seed=11)
    reasons = {m.reason for m in traffic.messages if m.reason is not None}
    assert len(reasons) >= 8
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    log = spawn("a", "--exit-when-idle", "3").finish()
    assert '"event": "ingest.batch"' in log
    assert_landed_exactly(pipeline, traffic)

    # A second run over the same topic finds nothing new and changes nothing.
    spawn("a", "--exit-when-idle", "2").finish()
    assert_landed_exactly(pipeline, traffic)


def test_sigkill_at_three_instants_loses_and_duplicates_nothing(
    pipeline: Settings, spawn: Spawn
) -> None:
    """Killed with SIGKILL three times mid-run and restarted: the same final content."""
    traffic = make_traffic(events=20_000, seed=12)
    total = len(traffic.messages)
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    rng = random.Random(12)
    progress_at_kill = []
    for kill in range(3):
        running = spawn("k")
        # Kill at a random instant once this incarnation has committed something, while
        # messages remain: the kill lands between (or inside) batches, never after the end.
        floor = committed(pipeline)
        wait_for(lambda floor=floor: committed(pipeline) > floor, 60)  # type: ignore[misc]
        time.sleep(rng.uniform(0.0, 0.3))
        running.kill()
        progress_at_kill.append(committed(pipeline))
        assert running.process.returncode == -signal.SIGKILL, f"kill {kill}"
    assert progress_at_kill[-1] < total, "the run ended before the last kill"
    assert progress_at_kill == sorted(progress_at_kill)
    spawn("k", "--exit-when-idle", "4").finish()
    assert committed(pipeline) == total
    assert_landed_exactly(pipeline, traffic)


def test_hbase_thrift_down_30s_daemon_waits_and_loses_nothing(
    pipeline: Settings, stack: Stack, spawn: Spawn
) -> None:
    """With the Thrift server stopped for 30 s the daemon stays up, reports degraded, resumes."""
    traffic = make_traffic(events=6000, seed=13)
    port = free_port()
    running = spawn("o", "--exit-when-idle", "8", CLICKSTREAM_INGEST__METRICS_PORT=str(port))
    process = running.process
    try:
        half = len(traffic.messages) // 2
        first = Traffic(traffic.messages[:half], traffic.truth)
        rest = Traffic(traffic.messages[half:], traffic.truth)
        publish(first, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
        wait_for(lambda: metric(port, "clickstream_ingest_events_stored_total") > 0, 60)

        stopped = stack.stop_server("thrift")
        assert stopped
        publish(rest, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
        wait_for(lambda: health(port)["status"] == "degraded", 30)
        time.sleep(30)
        assert process.poll() is None, "the daemon died during the outage"
        state = health(port)
        assert state["status"] == "degraded"
        assert state["paused"] is True
    finally:
        stack.up()
    running.finish()
    assert_landed_exactly(pipeline, traffic)


def test_systemd_notify_ready_watchdog_stopping(
    pipeline: Settings, spawn: Spawn, tmp_path: Path
) -> None:
    """READY=1 after assignment, WATCHDOG=1 pings, STOPPING=1 and exit 0 within 10 s of TERM."""
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(30)
        running = spawn("n", NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
        process = running.process
        received: list[str] = []
        try:
            while not any(m.startswith("READY=1") for m in received):
                received.append(listener.recv(4096).decode())
            assert "STATUS=assigned partitions [0, 1, 2, 3]" in received[-1]
            pings_before = sum(m == "WATCHDOG=1" for m in received)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                received.append(listener.recv(4096).decode())
            assert sum(m == "WATCHDOG=1" for m in received) - pings_before >= 4
        finally:
            process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        running.finish(timeout=10)
        assert time.monotonic() - started < 10
        while True:
            message = listener.recv(4096).decode()
            if message.startswith("STOPPING=1"):
                break


def test_exit_when_idle_reads_the_topic_to_its_end_first(pipeline: Settings, spawn: Spawn) -> None:
    """An idle time shorter than the group join still drains the topic: the daemon exits only
    once every assigned partition was read to its end (a slow coordinator on a fresh broker
    once made it exit with the topic unread)."""
    traffic = make_traffic(events=1500, seed=13, hours=2)
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    spawn("i", "--exit-when-idle", "0.05").finish()
    assert committed(pipeline) == len(traffic.messages)
    assert_landed_exactly(pipeline, traffic)


def test_a_message_near_the_broker_maximum_is_dead_lettered_as_a_stub(
    pipeline: Settings, spawn: Spawn
) -> None:
    """A ~1 MB message is rejected as too_large; its dead letter (the original plus headers
    would exceed the topic's limit) is a marked stub with size and hash; the daemon goes on."""
    # Just under the broker's 1 MiB record limit: re-produced with headers it could not fit.
    big = b'{"user_id": "u", "padding": "' + b"x" * 1_040_000 + b'"}'
    traffic = make_traffic(events=200, seed=14, hours=1)
    producer = Producer({**pipeline.kafka.client_config(), "message.max.bytes": 1_048_576})
    producer.produce(pipeline.kafka.clicks_topic, key=b"u", value=big)
    assert producer.flush(30) == 0
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    spawn("b", "--exit-when-idle", "2").finish(timeout=120)
    records = read_dead_letters(pipeline.kafka)
    stubs = [r for r in records if r.reason == "too_large"]
    assert len(stubs) == 1
    stub = json.loads(stubs[0].value)
    assert (stub["clickstream_stub"], stub["size"]) == (True, len(big))
    assert stub["sha256"] == hashlib.sha256(big).hexdigest()
    assert committed(pipeline) == len(traffic.messages) + 1


def test_a_batch_held_through_a_rebalance_is_not_consumed_again(
    pipeline: Settings, stack: Stack, spawn: Spawn
) -> None:
    """A daemon holds a batch through a Thrift outage while a second one joins: the rebalance
    revokes its partitions and assigns some back at their committed offsets, which are before
    the batch. Once the batch is committed its positions move past it, so it is not consumed
    again and none of its dead letters is written twice."""
    traffic = make_traffic(events=3000, seed=14)
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    port = free_port()
    fast = {"CLICKSTREAM_HBASE__TIMEOUT_MS": "2000", "CLICKSTREAM_INGEST__BATCH_SIZE": "2000"}
    with stack.frozen("thrift"):
        # One batch of 2,000 of the 3,000 messages: most of every partition but the last.
        a = spawn("a", "--exit-when-idle", "5", CLICKSTREAM_INGEST__METRICS_PORT=str(port), **fast)
        wait_for(lambda: health(port)["status"] == "degraded", 60)
        b = spawn("b", "--exit-when-idle", "5", **fast)
        wait_for(lambda: '"kafka.assigned"' in b.log(), 60)
        time.sleep(3)  # a retries its batch, trimmed to the partitions it was given back
    log = a.finish()
    b.finish()
    assert '"ingest.position_advanced"' in log, "the rebalance gave a none of its partitions"
    assert committed(pipeline) == len(traffic.messages)
    assert_landed_exactly(pipeline, traffic)
