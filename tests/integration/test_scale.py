"""Several daemons in one group on 8 partitions while traffic flows: scaled 1 -> 3 -> 2, one
SIGKILLed mid-run and replaced (as systemd restarts it: same instance name). HBase rows, dead
letters and speed views equal the ground truth; no dead letter is duplicated."""

from __future__ import annotations

import json
import random
import signal
import threading
import time

import pytest

from clickstream.settings import Settings
from commands.stack.manager import Stack
from tests.integration.helpers import Spawn, make_traffic, wait_for
from tests.integration.test_ingest import assert_landed_exactly
from tests.integration.test_speed import assert_speed_equals_truth
from traffic.generate import Traffic, publish
from traffic.harness import DaemonProcess, committed, isolated

pytestmark = pytest.mark.integration

PARTITIONS = 8
CHUNKS = 12


@pytest.fixture
def settings(stack: Stack, unique: str) -> Settings:
    """This module's runs use 8 partitions (the topics are made by `pipeline` from these)."""
    base = isolated(stack.settings, unique)
    return base.model_copy(
        update={"kafka": base.kafka.model_copy(update={"partitions": PARTITIONS})}
    )


def assigned_partitions(daemon: DaemonProcess) -> int:
    """How many partitions the daemon's last assignment gave it (0 before the first)."""
    count = 0
    for line in daemon.log().splitlines():
        if '"kafka.assigned"' in line:
            count = len(json.loads(line)["partitions"])
    return count


def test_three_daemons_scaled_and_killed_under_traffic_lose_and_double_nothing(
    pipeline: Settings, spawn: Spawn
) -> None:
    traffic = make_traffic(events=24_000, seed=41)
    total = len(traffic.messages)
    size = -(-total // CHUNKS)
    chunks = [Traffic(traffic.messages[i : i + size], traffic.truth) for i in range(0, total, size)]
    published = threading.Event()

    def flow() -> None:  # the web application: a chunk every second
        for chunk in chunks:
            publish(chunk, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
            time.sleep(1.0)
        published.set()

    publisher = threading.Thread(target=flow, daemon=True)
    publisher.start()
    rng = random.Random(41)

    a = spawn("a")
    wait_for(lambda: committed(pipeline) > 0, 90)
    wait_for(lambda: assigned_partitions(a) == PARTITIONS, 30)

    b, c = spawn("b"), spawn("c")  # 1 -> 3: the group rebalances while batches flow
    wait_for(lambda: all(assigned_partitions(d) for d in (b, c)), 90)
    assert sum(assigned_partitions(d) for d in (a, b, c)) == PARTITIONS
    floor = committed(pipeline)
    wait_for(lambda: committed(pipeline) > floor, 60)

    # 3 -> 2: c stops cleanly (finishes and commits the batch in hand). A static member does
    # not leave the group on close, so its partitions move at the session timeout.
    c.process.send_signal(signal.SIGTERM)
    c.finish(timeout=30)
    floor = committed(pipeline)
    wait_for(lambda: committed(pipeline) > floor, 90)

    # b is SIGKILLed at a random instant mid-run and replaced under its own name, as systemd
    # restarts it: the replacement fences b's transaction and takes its partitions back.
    time.sleep(rng.uniform(0.0, 0.5))
    b.kill()
    assert b.process.returncode == -signal.SIGKILL
    assert committed(pipeline) < total, "the run ended before the kill"
    replacement = spawn("b")

    assert published.wait(120), "the publisher did not finish"
    wait_for(lambda: committed(pipeline) == total, 180)
    for daemon in (a, replacement):
        daemon.process.send_signal(signal.SIGTERM)
        daemon.finish(timeout=30)

    assert_landed_exactly(pipeline, traffic)
    assert_speed_equals_truth(pipeline, traffic)
