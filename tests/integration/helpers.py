"""Shared helpers of the integration tests: generated traffic with known geolocation."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable

from clickstream.model import BOT_RULES
from clickstream.settings import IngestSettings
from clickstream.times import HOUR_MS
from ingest.agent import AgentParser
from tests.paths import GEO_DB
from traffic.generate import Message, Traffic, TrafficSpec, generate
from traffic.harness import DaemonProcess
from traffic.population import GeoSample

#: Starts `clickstream ingest` on a test's topics and table (see the `spawn` fixture).
Spawn = Callable[..., DaemonProcess]


def traffic_start_ms(hours_ago: int = 8) -> int:
    """A whole UTC hour ``hours_ago`` hours back."""
    return (int(time.time() * 1000) // HOUR_MS - hours_ago) * HOUR_MS


def make_traffic(events: int, seed: int, hours: int = 6) -> Traffic:
    """``hours`` of generated traffic from 8 whole hours ago, IPs from the MaxMind test DB."""
    geo = GeoSample.from_mmdb([GEO_DB], seed=seed)
    spec = TrafficSpec(
        start_ms=traffic_start_ms(),
        session_timeout_ms=IngestSettings().session_timeout_ms,
        events=events,
        hours=hours,
    )
    return generate(spec, seed=seed, geo=geo)


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    """Poll ``condition`` (connection errors count as not yet) until true, or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"condition not met within {timeout}s")


def metric(port: int, name: str) -> float:
    """One unlabelled metric of a daemon's Prometheus endpoint (0 when absent)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def health(port: int) -> dict[str, object]:
    """A daemon's /healthz body (also when it answers 503)."""
    try:
        response = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
    except urllib.error.HTTPError as exc:  # 503 while degraded still carries the JSON
        return dict(json.load(exc))
    return dict(json.load(response))


def bots_by_rule(messages: Iterable[Message]) -> dict[str, int]:
    """Bot clicks per rule (clickstream.model.BOT_RULES) of the distinct valid events among
    ``messages``, the rule found by the ingest's own parser from each event's user agent."""
    parser = AgentParser()
    counts = dict.fromkeys(BOT_RULES, 0)
    for message in messages:
        if message.kind != "valid" or message.event is None or not message.event.is_bot:
            continue
        rule = parser.parse(json.loads(message.value)["user_agent"]).bot_rule
        assert rule is not None, message.value
        counts[rule] += 1
    return counts
