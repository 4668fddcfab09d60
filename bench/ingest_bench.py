"""Ingest throughput beside its raw ceilings, measured in one run on the local stack.

    make bench-ingest            # or: .venv/bin/python bench/ingest_bench.py --events 100000

Figures (events/s), each over the same generated messages:
  kafka_consume   librdkafka reading the topic, no processing (the input ceiling)
  pipeline_cpu    validate + enrich + encode rows in-process, no I/O (the CPU ceiling)
  hbase_put       happybase batched puts of pre-built rows, no enrichment (the storage ceiling)
  daemon          one `clickstream ingest` process end to end (Kafka -> HBase + DLQ, offsets)
The machine is shared and noisy: compare the ratios within one run, not absolute numbers
across runs. Results are printed and saved to bench/results/ingest-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import time
from datetime import UTC, datetime

from confluent_kafka import Consumer
from results_file import save

from clickstream.settings import Settings, load_settings
from ingest.daemon import geo_paths
from ingest.enrich import Enricher
from ingest.generate import TrafficSpec, generate, publish
from ingest.harness import DaemonProcess, batch_throughput, batches_in, isolated
from ingest.model import Source
from ingest.pipeline import Incoming, process
from ingest.population import GeoSample
from ingest.topics import create_topics, delete_topics, pipeline_topics
from ingest.validate import Limits
from storage.admin import create_table, drop_tables
from storage.writer import HBaseWriter, Row


def bench_kafka_consume(settings: Settings, total: int) -> float:
    """Events/s of a bare consumer reading every message of the topic."""
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"bench-raw-{time.time()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.kafka.clicks_topic])
    read, started = 0, None
    try:
        while read < total:
            batch = consumer.consume(500, timeout=1.0)
            if batch and started is None:
                started = time.perf_counter()
            read += sum(1 for m in batch if m.error() is None)
    finally:
        consumer.close()
    return total / (time.perf_counter() - (started or time.perf_counter()))


def bench_pipeline_and_rows(settings: Settings, values: list[bytes]) -> tuple[float, list[Row]]:
    """Events/s of validate + enrich + encode in-process; also returns the rows it built."""
    enricher = Enricher.from_settings(settings.ingest, geo_paths(settings))
    incoming = [Incoming(None, v, Source("bench", 0, i)) for i, v in enumerate(values)]
    now_ms = int(time.time() * 1000)
    limits = Limits.from_settings(settings.ingest)
    started = time.perf_counter()
    rows: list[Row] = []
    for i in range(0, len(incoming), 500):
        batch = process(
            incoming[i : i + 500], enricher, limits, settings.hbase.salt_buckets, now_ms
        )
        rows.extend(batch.rows.items())
    return len(values) / (time.perf_counter() - started), rows


def bench_hbase_put(settings: Settings, rows: list[Row], batch_size: int) -> float:
    """Events/s of happybase batched puts of pre-built rows into a fresh table."""
    writer = HBaseWriter(settings.hbase)
    started = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        writer.write(rows[i : i + batch_size])
    elapsed = time.perf_counter() - started
    writer.close()
    return len(rows) / elapsed


def bench_daemon(settings: Settings, total: int) -> dict[str, float]:
    """One daemon process over the whole topic: events/s between its first and last batch."""
    daemon = DaemonProcess.start(settings, "bench", "--exit-when-idle", "3")
    batches = batches_in(daemon.finish())
    consumed = sum(b["messages"] for b in batches)
    if consumed != total:
        raise SystemExit(f"daemon consumed {consumed} of {total} messages")
    ms = sorted(b["ms"] for b in batches)
    return {
        "events_per_s": batch_throughput(batches),
        "batches": len(batches),
        "batch_ms_p50": ms[len(ms) // 2],
        "batch_ms_p99": ms[int(len(ms) * 0.99)],
    }


def main() -> None:
    """Run every measurement once, print a table, save JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="valid events (default 1e5)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    base = load_settings()
    name = f"bench_{secrets.token_hex(3)}"
    settings = isolated(base, name)
    put_settings = isolated(base, name + "_put")
    print(f"preparing {name}: topics, tables, {args.events} events ...", flush=True)
    create_topics(settings.kafka)
    create_table(settings, progress=lambda _: None)
    create_table(put_settings, progress=lambda _: None)
    try:
        start = int(time.time() * 1000) - 6 * 3_600_000
        traffic = generate(
            TrafficSpec(start_ms=start, events=args.events, hours=6),
            seed=args.seed,
            geo=GeoSample.from_mmdb(geo_paths(base), seed=args.seed),
        )
        total = len(traffic.messages)
        publish(traffic, settings.kafka, settings.kafka.clicks_topic, progress=lambda _: None)

        figures: dict[str, float] = {}
        print("kafka_consume ...", flush=True)
        figures["kafka_consume"] = bench_kafka_consume(settings, total)
        print("pipeline_cpu ...", flush=True)
        figures["pipeline_cpu"], rows = bench_pipeline_and_rows(
            settings, [m.value for m in traffic.messages]
        )
        print("hbase_put ...", flush=True)
        figures["hbase_put"] = bench_hbase_put(put_settings, rows, settings.ingest.batch_size)
        print("daemon ...", flush=True)
        daemon = bench_daemon(settings, total)
        figures["daemon"] = daemon["events_per_s"]
    finally:
        delete_topics(settings.kafka, pipeline_topics(settings.kafka))
        drop_tables(settings)
        drop_tables(put_settings)

    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "messages": total,
        "batch_size": settings.ingest.batch_size,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "events_per_s": {k: round(v) for k, v in figures.items()},
        "daemon_vs_ceiling": {
            k: round(figures["daemon"] / figures[k], 3)
            for k in ("kafka_consume", "pipeline_cpu", "hbase_put")
        },
        "daemon_batches": daemon,
    }
    print(f"\n{'measure':<15} {'events/s':>10}  daemon / this")
    for key, value in figures.items():
        print(f"{key:<15} {value:>10.0f}  {figures['daemon'] / value:>6.2f}")
    print(
        f"daemon batch latency p50 {daemon['batch_ms_p50']:.0f} ms, "
        f"p99 {daemon['batch_ms_p99']:.0f} ms over {daemon['batches']:.0f} batches"
    )
    save("ingest", report)


if __name__ == "__main__":
    main()
