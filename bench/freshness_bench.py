"""How long an event takes to become visible in the merged answer, at a steady input rate.

    make bench-freshness        # or: .venv/bin/python bench/freshness_bench.py --rate 1000

A producer sends fresh events (event time = now) at ``--rate`` events/s for ``--seconds``; one
`clickstream ingest` process folds them into the speed layer; a prober asks the serving layer
(`MetricsService`, the code behind `clickstream query` and the API) for the merged clicks
every ~50 ms. Event i is visible once the merged count first reaches i + 1; its latency is
that probe's completion time minus the time it was sent. With several partitions events can
overtake each other by a few ms, which this order-based reading smooths over. The first
``--warmup`` seconds (the day's speed index being created, the partitions restored) are sent
too but reported apart. Target: p99 <= 2 s.
Results are printed and saved to bench/results/freshness-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import secrets
import threading
import time
from datetime import UTC, datetime

from results_file import percentile, save

from clickstream.settings import Settings, load_settings
from clickstream.times import HOUR_MS
from commands.defaults import admin_runtime
from indexing.client import connect as es_connect
from indexing.templates import create_templates, drop_views
from ingest.topics import create_topics, delete_topics, pipeline_topics
from serving.errors import BackendUnavailableError
from serving.params import MetricsQuery
from serving.service import MetricsService
from storage.admin import create_table, drop_tables
from traffic.harness import DaemonProcess, isolated
from traffic.sender import Sender


def main() -> None:
    """Run one measurement, print it, save JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s (default 1000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send (30)")
    parser.add_argument("--users", type=int, default=2000, help="distinct users (2000)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="seconds sent first and reported apart (the day's speed index is created, the "
        "daemon restores its partitions); default 5",
    )
    args = parser.parse_args()

    settings = isolated(load_settings(), f"bench_fresh_{secrets.token_hex(3)}")
    create_topics(settings.kafka)
    create_table(settings, admin_runtime(settings, progress=lambda _: None))
    client = es_connect(settings.elasticsearch)
    create_templates(client, settings.elasticsearch)
    daemon = DaemonProcess.start(settings, "fresh")
    warm = int(args.rate * args.warmup)
    total = warm + int(args.rate * args.seconds)
    try:
        _wait_assigned(daemon)
        sent_at, probes = measure(settings, total, args.rate, args.users)
    finally:
        daemon.process.terminate()
        daemon.process.wait(30)
        daemon.log_path.unlink(missing_ok=True)
        delete_topics(settings.kafka, pipeline_topics(settings.kafka))
        drop_tables(settings)
        drop_views(client, settings.elasticsearch)
        client.close()
    if not probes or probes[-1][1] < total:
        raise SystemExit(f"only {probes[-1][1] if probes else 0} of {total} events became visible")
    everything = latencies_of(sent_at, probes)
    warmup, latencies = everything[:warm], everything[warm:]
    steady = len(latencies)
    probe_gaps = [b[0] - a[0] for a, b in itertools.pairwise(probes)]
    lat = {
        "p50": round(percentile(latencies, 0.5), 3),
        "p99": round(percentile(latencies, 0.99), 3),
        "max": round(max(latencies), 3),
    }
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "rate_per_s": args.rate,
        "events": steady,
        "warmup_events": warm,
        "warmup_latency_s_p99": round(percentile(warmup, 0.99), 3) if warmup else None,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "latency_s": lat,
        "probe_interval_s_p50": round(percentile(probe_gaps, 0.5), 3),
        "p99_by_fifth_s": [
            round(percentile(latencies[k * steady // 5 : (k + 1) * steady // 5], 0.99), 3)
            for k in range(5)
        ],
        "target_p99_s": 2.0,
    }
    print(
        f"visible in the merged answer: p50 {lat['p50']:.3f} s, p99 {lat['p99']:.3f} s, "
        f"max {lat['max']:.3f} s over {steady} events at {args.rate:.0f}/s "
        f"(probe every {report['probe_interval_s_p50']:.3f} s; target p99 <= 2 s); "
        f"p99 per fifth of the run: {report['p99_by_fifth_s']}; the {warm} warm-up events "
        f"before them: p99 {report['warmup_latency_s_p99']} s"
    )
    save("freshness", report)


def measure(
    settings: Settings, total: int, rate: float, users: int
) -> tuple[list[float], list[tuple[float, int]]]:
    """Send ``total`` fresh events at ``rate`` while probing the merged clicks; the send
    times and the probes (completion time, clicks)."""
    service = MetricsService(settings)
    now_ms = int(time.time() * 1000)
    query = MetricsQuery(from_ms=now_ms // HOUR_MS * HOUR_MS - HOUR_MS, to_ms=now_ms + 2 * HOUR_MS)
    sent_at: list[float] = []
    probes: list[tuple[float, int]] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            try:
                clicks = service.query(query).total.clicks
            except BackendUnavailableError:  # a speed index a moment after its creation
                continue
            probes.append((time.time(), clicks))
            time.sleep(0.05)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    print(f"sending {total} events at {rate:.0f}/s ...", flush=True)
    try:
        with Sender(settings.kafka, settings.kafka.clicks_topic) as sender:
            started = time.monotonic()
            for i in range(total):
                wait = started + i / rate - time.monotonic()
                if wait > 0:
                    sender.poll(wait)
                user = f"u{i % users}"
                body = {
                    "event_id": f"fresh-{i}",
                    "user_id": user,
                    "timestamp": int(time.time() * 1000),
                    "url": "https://shop.example/products/fresh",
                    "country": "DE",
                }
                sent_at.append(time.time())
                sender.send(user.encode(), json.dumps(body).encode())
        deadline = time.monotonic() + 60
        while (not probes or probes[-1][1] < total) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        prober.join(10)
        service.close()
    return sent_at, probes


def latencies_of(sent_at: list[float], probes: list[tuple[float, int]]) -> list[float]:
    """Event i's latency: the first probe whose count reached i + 1, minus its send time."""
    latencies = []
    cursor = 0
    for i, sent in enumerate(sent_at):
        while probes[cursor][1] < i + 1:
            cursor += 1
        latencies.append(max(0.0, probes[cursor][0] - sent))
    return latencies


def _wait_assigned(daemon: DaemonProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while '"event": "kafka.assigned"' not in daemon.log():
        if daemon.process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the daemon did not start:\n{daemon.log()[-2000:]}")
        time.sleep(0.2)


if __name__ == "__main__":
    main()
