"""Every server frozen mid-run (SIGSTOP: connections stay open and nothing answers, which is what
a network partition looks like) under a daemon whose systemd watchdog is armed on a real
``NOTIFY_SOCKET``: the daemon stays up, its pings never stop, its memory stays bounded, it
resumes soon after the server returns, and nothing is lost or doubled.

Kept short for `make test`: the clients' timeouts are scaled down (Thrift 3 s, Elasticsearch
2 s) and each freeze lasts a few times those. Stopped servers are covered beside: Thrift in
test_ingest.py, Elasticsearch in test_speed.py.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from clickstream.settings import Settings
from commands.stack.manager import Stack
from tests.integration.helpers import Spawn, make_traffic, metric, wait_for
from tests.integration.test_ingest import assert_landed_exactly
from tests.integration.test_speed import assert_speed_equals_truth
from tests.notify import PingClock
from traffic.generate import Traffic, publish
from traffic.harness import free_port

pytestmark = pytest.mark.integration

WATCHDOG_S = 4.0
FROZEN_S = 10.0
BACKOFF_MAX_S = 2.0


def resident_mib(pid: int) -> float:
    """The process's resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.parametrize("server", ["kafka", "hbase", "thrift", "elasticsearch"])
def test_a_frozen_server_neither_stops_the_daemon_nor_starves_its_watchdog(
    pipeline: Settings, stack: Stack, spawn: Spawn, tmp_path: Path, server: str
) -> None:
    # A frozen broker takes nothing, so its test publishes everything first and freezes it
    # mid-run: enough traffic that the daemon is still busy (each batch's commit then waits).
    traffic = make_traffic(events=16_000 if server == "kafka" else 4000, seed=31)
    half = len(traffic.messages) // 2
    first = Traffic(traffic.messages[:half], traffic.truth)
    rest = Traffic(traffic.messages[half:], traffic.truth)
    port = free_port()
    path = str(tmp_path / "notify.sock")
    clock = PingClock(path)
    try:
        running = spawn(
            "f",
            "--exit-when-idle",
            "6",
            NOTIFY_SOCKET=path,
            WATCHDOG_USEC=str(int(WATCHDOG_S * 1_000_000)),
            CLICKSTREAM_INGEST__METRICS_PORT=str(port),
            CLICKSTREAM_INGEST__BACKOFF_MAX_MS=str(int(BACKOFF_MAX_S * 1000)),
            CLICKSTREAM_INGEST__BATCH_SIZE="200",
            CLICKSTREAM_HBASE__TIMEOUT_MS="3000",
            CLICKSTREAM_ELASTICSEARCH__REQUEST_TIMEOUT_S="2",
        )
        pid = running.process.pid
        publish(first, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
        wait_for(lambda: metric(port, "clickstream_ingest_events_stored_total") > 0, 90)
        armed = time.monotonic()
        if server == "kafka":
            publish(rest, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
        before_mib = resident_mib(pid)
        with stack.frozen(server):
            if server != "kafka":
                publish(rest, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
            stored_at_freeze = metric(port, "clickstream_ingest_events_stored_total")
            consumed = metric(port, "clickstream_ingest_messages_consumed_total")
            assert consumed < len(traffic.messages), "froze after the daemon had finished"
            time.sleep(FROZEN_S)
            assert running.process.poll() is None, f"the daemon died with {server} frozen"
            during_mib = resident_mib(pid)
        thawed = time.monotonic()
        wait_for(
            lambda: metric(port, "clickstream_ingest_events_stored_total") > stored_at_freeze,
            60,
        )
        resumed_s = time.monotonic() - thawed
        log = running.finish(timeout=120)
        ended = time.monotonic()
        gap = clock.longest_gap(armed, ended - 6)  # the idle exit's last seconds aside
    finally:
        clock.close()
    retries = Counter(
        json.loads(line).get("error", "")[:90]
        for line in log.splitlines()
        if '"kafka.txn_retry"' in line
    )
    print(f"{server}: resumed {resumed_s:.1f}s after the thaw, longest ping gap {gap:.1f}s")
    print(f"  transaction retries: {dict(retries)}")
    assert gap < WATCHDOG_S, f"the watchdog went {gap:.1f}s without a ping ({server} frozen)"
    assert during_mib - before_mib < 100, "memory grew during the outage"
    # The retry in hand waits out its backoff (at most BACKOFF_MAX_S) and, for a call that was
    # blocked when the freeze began, its client's timeout (3 s); then the server answers.
    assert resumed_s < BACKOFF_MAX_S + 3 + 10, f"resumed {resumed_s:.1f}s after the thaw"
    assert_landed_exactly(pipeline, traffic)
    assert_speed_equals_truth(pipeline, traffic)
