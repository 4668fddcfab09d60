"""Every server taken away mid-run, frozen (SIGSTOP: connections stay open and nothing answers,
which is what a network partition looks like) and stopped, under a daemon whose systemd
watchdog is armed on a real ``NOTIFY_SOCKET``: the daemon stays up, its pings never stop, its
memory stays bounded, it resumes soon after the server returns, and nothing is lost or doubled.

Kept short for `make test`: the clients' timeouts are scaled down (Thrift 3 s, Elasticsearch
2 s) and each outage lasts a few times those; the 60 s ones are in `make chaos`. Stopped Thrift
and Elasticsearch are also covered beside: test_ingest.py, test_speed.py.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from clickstream.settings import Settings
from commands.stack.manager import Stack
from tests.integration.helpers import Spawn, make_traffic, metric, wait_for
from tests.integration.test_ingest import assert_landed_exactly
from tests.integration.test_speed import assert_speed_equals_truth
from traffic.generate import Traffic, publish
from traffic.harness import free_port
from traffic.notify import PingClock

pytestmark = pytest.mark.integration

WATCHDOG_S = 4.0
FROZEN_S = 10.0
#: Kafka is away longer than the transaction timeout (10 s) and two transactional calls (10 s
#: each): the open transaction is aborted by the broker and the daemon's own abort times out.
#: (A 60 s freeze in `make chaos` once left every daemon retrying begin_transaction forever.)
KAFKA_AWAY_S = 25.0
BACKOFF_MAX_S = 2.0


def resident_mib(pid: int) -> float:
    """The process's resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@contextmanager
def away(stack: Stack, server: str, how: str) -> Iterator[None]:
    """``server`` frozen or stopped for the block; back (and answering) after it."""
    if how == "frozen":
        with stack.frozen(server):
            yield
        return
    # The Thrift server lives off its HBase (and its embedded ZooKeeper): it goes down with it.
    for name in ("thrift", server) if server == "hbase" else (server,):
        assert stack.stop_server(name)
    try:
        yield
    finally:
        stack.up()


@pytest.mark.parametrize(
    "outage",
    [
        "kafka frozen",
        # Not "hbase frozen": the local HBase runs its ZooKeeper in the same JVM, so a frozen
        # HBase wakes up to sessions its own server expired (seen with 60 s sessions too),
        # and the master aborts. A separate ZooKeeper makes that a RegionServer restart.
        "thrift frozen",
        "elasticsearch frozen",
        # Stopped Thrift and Elasticsearch: test_ingest.py and test_speed.py. A stopped and
        # restarted broker is not here: librdkafka's send_offsets_to_transaction can then
        # block past its timeout (librdkafka issues 5456 and 5511, open), and only the
        # watchdog's bound (ingest.hung_after_s) ends that wait, by a systemd restart.
        "hbase stopped",
    ],
)
def test_a_server_away_neither_stops_the_daemon_nor_starves_its_watchdog(
    pipeline: Settings, stack: Stack, spawn: Spawn, tmp_path: Path, outage: str
) -> None:
    server, how = outage.split()
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
        with away(stack, server, how):
            if server != "kafka":
                publish(rest, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
            stored_at_freeze = metric(port, "clickstream_ingest_events_stored_total")
            consumed = metric(port, "clickstream_ingest_messages_consumed_total")
            assert consumed < len(traffic.messages), "froze after the daemon had finished"
            time.sleep(KAFKA_AWAY_S if server == "kafka" else FROZEN_S)
            assert running.process.poll() is None, f"the daemon died with {server} away ({how})"
            during_mib = resident_mib(pid)
        thawed = time.monotonic()
        try:
            wait_for(
                lambda: metric(port, "clickstream_ingest_events_stored_total") > stored_at_freeze,
                60,
            )
        except AssertionError:
            # What the daemon did, for the failure report (its own lines, not librdkafka's).
            own = [line for line in running.log().splitlines() if line[:1] != "%"]
            print("\n".join(own)[-12000:])
            raise
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
    print(f"{server} ({how}): resumed {resumed_s:.1f}s after the thaw, longest ping gap {gap:.1f}s")
    print(f"  transaction retries: {dict(retries)}")
    assert gap < WATCHDOG_S, f"the watchdog went {gap:.1f}s without a ping ({server}, {how})"
    assert during_mib - before_mib < 100, "memory grew during the outage"
    # The retry in hand waits out its backoff (at most BACKOFF_MAX_S) and, for a call that was
    # blocked when the freeze began, its client's timeout (3 s); then the server answers.
    assert resumed_s < BACKOFF_MAX_S + 3 + 10, f"resumed {resumed_s:.1f}s after the thaw"
    assert_landed_exactly(pipeline, traffic)
    assert_speed_equals_truth(pipeline, traffic)
