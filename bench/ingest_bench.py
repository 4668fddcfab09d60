"""Ingest throughput beside its raw ceilings, measured in one run on the local stack.

    make bench-ingest            # or: .venv/bin/python bench/ingest_bench.py --events 100000

Figures (events/s), each over the same generated messages:
  kafka_consume   librdkafka reading the topic, no processing (the input ceiling)
  pipeline_cpu    validate + enrich + encode rows in-process, no I/O (the CPU ceiling)
  hbase_put       happybase batched puts of pre-built rows, no enrichment (the storage ceiling)
  speed_fold_cpu  the speed layer's fold + apply + render in-process, no I/O (its CPU ceiling)
It also measures the speed state's memory per click kept, again with every URL padded to 8 KiB.
  daemon          one `clickstream ingest` process end to end (Kafka -> HBase + speed layer
                  in Elasticsearch + DLQ and changelog, offsets)
  daemon_no_speed the same with speed.enabled = false (what the speed layer costs)
It also reports the speed state's memory per click kept (tracemalloc).
The machine is shared and noisy: compare the ratios within one run, not absolute numbers
across runs. Results are printed and saved to bench/results/ingest-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from acceptance import six_hours
from confluent_kafka import Consumer
from results_file import save

from clickstream.model import Source
from clickstream.settings import Settings, load_settings
from commands.defaults import admin_runtime, geo_paths
from indexing.client import connect as es_connect
from indexing.templates import create_templates, drop_views
from ingest.enrich import Enricher
from ingest.pipeline import Incoming, process, speed_clicks
from ingest.topics import create_topics, delete_topics, pipeline_topics
from ingest.validate import Limits
from speed.docs import DocTable, render
from speed.state import PartitionState, SpeedClick
from storage.admin import create_table, drop_tables
from storage.writer import HBaseWriter, Row
from traffic.generate import publish
from traffic.harness import DaemonProcess, batch_throughput, batches_in, isolated


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


def bench_pipeline_and_rows(
    settings: Settings, values: list[bytes]
) -> tuple[float, list[Row], list[SpeedClick]]:
    """Events/s of validate + enrich + encode in-process; also returns the rows it built and
    the clicks as the speed layer sees them."""
    enricher = Enricher.from_settings(settings.ingest, geo_paths(settings))
    incoming = [Incoming(None, v, Source("bench", 0, i)) for i, v in enumerate(values)]
    now_ms = int(time.time() * 1000)
    limits = Limits.from_settings(settings.ingest)
    started = time.perf_counter()
    rows: list[Row] = []
    clicks: list[SpeedClick] = []
    for i in range(0, len(incoming), 500):
        batch = process(
            incoming[i : i + 500],
            enricher,
            limits,
            settings.hbase.salt_buckets,
            now_ms,
            session_timeout_ms=settings.ingest.session_timeout_ms,
        )
        rows.extend(batch.rows.items())
        clicks.extend(speed_clicks(batch))
    return len(values) / (time.perf_counter() - started), rows, clicks


def bench_speed_fold(
    settings: Settings,
    clicks: list[SpeedClick],
    arrive: Callable[[SpeedClick], SpeedClick] | None = None,
) -> dict[str, float]:
    """The speed layer's CPU ceiling (fold + apply + render, no I/O), and the memory its state
    takes per click kept (Python heap, tracemalloc; the sketches' C++ buffers are not in it,
    about 1-4 KiB per cached document)."""
    timeout_ms = settings.ingest.session_timeout_ms
    retention_ms = settings.speed.allowed_lateness_s * 1000 + timeout_ms
    cache_ms = settings.speed.doc_cache_minutes * 60_000

    def fold_all() -> tuple[PartitionState, DocTable]:
        state = PartitionState(0, timeout_ms, retention_ms)
        table = DocTable(settings.batch.hll_lg_k)
        evicted_at = 0
        for i in range(0, len(clicks), 500):
            if state.max_ts - cache_ms - evicted_at >= 60_000:  # as SpeedLayer does
                evicted_at = state.max_ts - cache_ms
                table.evict(0, evicted_at)
            batch = clicks[i : i + 500]
            if arrive is not None:  # inside the traced run: what the state keeps of it counts
                batch = [arrive(click) for click in batch]
            for doc in table.apply(state.fold(batch).contributions):
                render(doc, "bench")
        return state, table

    tracemalloc.start()
    state, table = fold_all()
    grown = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    kept = sum(len(t.humans) + len(t.bots) for t in state.users.values())
    documents = len(table.docs)
    del state, table
    started = time.perf_counter()
    fold_all()
    rate = len(clicks) / (time.perf_counter() - started)
    return {
        "events_per_s": rate,
        "clicks_kept": kept,
        "documents_in_memory": documents,
        "bytes_per_click_kept": grown / max(kept, 1),
    }


def with_long_path(click: SpeedClick) -> SpeedClick:
    """The click on its URL padded to the 8 KiB limit, in a string of its own (as parsing
    gives each click): what the speed state keeps must not grow with URL length."""
    return replace(click, url=(click.url + "/" + "p" * 8192)[:8192])


def bench_hbase_put(settings: Settings, rows: list[Row], batch_size: int) -> float:
    """Events/s of happybase batched puts of pre-built rows into a fresh table."""
    writer = HBaseWriter(settings.hbase)
    started = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        writer.write(rows[i : i + batch_size])
    elapsed = time.perf_counter() - started
    writer.close()
    return len(rows) / elapsed


def bench_daemon(settings: Settings, total: int, **env: str) -> dict[str, float]:
    """One daemon process over the whole topic: events/s between its first and last batch."""
    daemon = DaemonProcess.start(settings, "bench", "--exit-when-idle", "3", **env)
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


def print_report(
    figures: dict[str, float],
    speed: dict[str, float],
    long_urls: dict[str, float],
    daemon: dict[str, float],
) -> None:
    """The run's table and its memory and latency lines."""
    print(f"\n{'measure':<15} {'events/s':>10}  daemon / this")
    for key, value in figures.items():
        print(f"{key:<15} {value:>10.0f}  {figures['daemon'] / value:>6.2f}")
    print(
        f"speed layer: {speed['bytes_per_click_kept']:.0f} bytes of state per click kept "
        f"({speed['clicks_kept']:.0f} clicks, {speed['documents_in_memory']:.0f} documents cached)"
    )
    print(
        f"speed layer with 8 KiB paths: {long_urls['bytes_per_click_kept']:.0f} bytes per click "
        f"kept ({long_urls['bytes_per_click_kept'] / speed['bytes_per_click_kept']:.2f}x)"
    )
    print(
        f"daemon batch latency p50 {daemon['batch_ms_p50']:.0f} ms, "
        f"p99 {daemon['batch_ms_p99']:.0f} ms over {daemon['batches']:.0f} batches"
    )


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
    bare = isolated(base, name + "_bare")
    print(f"preparing {name}: topics, tables, {args.events} events ...", flush=True)
    for each in (settings, bare):
        create_topics(each.kafka)
        create_table(each, admin_runtime(each, progress=lambda _: None))
    create_table(put_settings, admin_runtime(put_settings, progress=lambda _: None))
    client = es_connect(settings.elasticsearch)
    create_templates(client, settings.elasticsearch)
    try:
        traffic = six_hours(base, args.events, args.seed, int(time.time() * 1000) - 6 * 3_600_000)
        total = len(traffic.messages)
        publish(traffic, settings.kafka, settings.kafka.clicks_topic, progress=lambda _: None)

        figures: dict[str, float] = {}
        print("kafka_consume ...", flush=True)
        figures["kafka_consume"] = bench_kafka_consume(settings, total)
        print("pipeline_cpu ...", flush=True)
        figures["pipeline_cpu"], rows, clicks = bench_pipeline_and_rows(
            settings, [m.value for m in traffic.messages]
        )
        print("speed_fold_cpu ...", flush=True)
        speed = bench_speed_fold(settings, clicks)
        figures["speed_fold_cpu"] = speed["events_per_s"]
        print("speed state with 8 KiB paths ...", flush=True)
        long_urls = bench_speed_fold(settings, clicks, with_long_path)
        print("hbase_put ...", flush=True)
        figures["hbase_put"] = bench_hbase_put(put_settings, rows, settings.ingest.batch_size)
        print("daemon ...", flush=True)
        daemon = bench_daemon(settings, total)
        figures["daemon"] = daemon["events_per_s"]
        print("daemon_no_speed ...", flush=True)
        publish(traffic, bare.kafka, bare.kafka.clicks_topic, progress=lambda _: None)
        figures["daemon_no_speed"] = bench_daemon(bare, total, CLICKSTREAM_SPEED__ENABLED="false")[
            "events_per_s"
        ]
    finally:
        for each in (settings, bare):
            delete_topics(each.kafka, pipeline_topics(each.kafka))
            drop_tables(each)
        drop_tables(put_settings)
        drop_views(client, settings.elasticsearch)
        client.close()

    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "messages": total,
        "batch_size": settings.ingest.batch_size,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "events_per_s": {k: round(v) for k, v in figures.items()},
        "daemon_vs_ceiling": {
            k: round(figures["daemon"] / figures[k], 3)
            for k in ("kafka_consume", "pipeline_cpu", "hbase_put", "speed_fold_cpu")
        },
        "speed_layer_cost": round(1 - figures["daemon"] / figures["daemon_no_speed"], 3),
        "speed_state": {k: round(v, 1) for k, v in speed.items()},
        "speed_state_8kib_paths": {k: round(v, 1) for k, v in long_urls.items()},
        "daemon_batches": daemon,
    }
    print_report(figures, speed, long_urls, daemon)
    save("ingest", report)


if __name__ == "__main__":
    main()
