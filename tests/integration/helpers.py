"""Shared helpers of the integration tests: generated traffic with known geolocation."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ingest.generate import Traffic, TrafficSpec, generate
from ingest.harness import DaemonProcess
from ingest.population import GeoSample

GEO_DB = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "testdata"
    / "geoip"
    / ("GeoIP2-City-Test.mmdb")
)
HOUR_MS = 3_600_000

#: Starts `clickstream ingest` on a test's topics and table (see the `spawn` fixture).
Spawn = Callable[..., DaemonProcess]


def traffic_start_ms(hours_ago: int = 8) -> int:
    """A whole UTC hour ``hours_ago`` hours back."""
    return (int(time.time() * 1000) // HOUR_MS - hours_ago) * HOUR_MS


def make_traffic(events: int, seed: int, hours: int = 6) -> Traffic:
    """``hours`` of generated traffic from 8 whole hours ago, IPs from the MaxMind test DB."""
    geo = GeoSample.from_mmdb([GEO_DB], seed=seed)
    spec = TrafficSpec(start_ms=traffic_start_ms(), events=events, hours=hours)
    return generate(spec, seed=seed, geo=geo)
