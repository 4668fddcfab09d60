"""Batch cost follows the range it reads, not the table's size (`make bench-batch`).

One hour of data is processed (median of 3 timed runs after a warm-up), then ten times as many
events are written into other days of the same table and the same hour is processed again.
With salted range scans the second runtime should match the first; a full-table scan would
grow ~11x. Rows go straight to HBase through the ingest pipeline (no Kafka: not what is
measured). Prints and saves bench/results/batch-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
from datetime import UTC, datetime

from pyspark.sql import SparkSession
from results_file import save

from clickstream.model import Source
from clickstream.settings import Settings, load_settings
from clickstream.times import HOUR_MS
from commands.defaults import admin_runtime, geo_paths
from indexing.client import connect as es_connect
from indexing.templates import create_templates, drop_views
from indexing.views import ViewNames
from ingest.enrich import Enricher
from ingest.pipeline import Incoming, process
from ingest.validate import Limits
from processing.job import run_batch, spark_session
from storage.admin import create_table, drop_tables
from storage.writer import HBaseWriter
from traffic.generate import TrafficSpec, generate
from traffic.harness import isolated
from traffic.population import GeoSample


def load(
    settings: Settings, base: Settings, start_ms: int, hours: float, events: int, *, seed: int
) -> int:
    """Generate events in ``[start, start + hours)`` and write their rows; how many rows."""
    geo = GeoSample.from_mmdb(geo_paths(base), seed=seed)
    traffic = generate(
        TrafficSpec(
            start_ms=start_ms,
            session_timeout_ms=settings.ingest.session_timeout_ms,
            events=events,
            hours=hours,
            malformed_share=0,
            late_share=0,
        ),
        seed=seed,
        geo=geo,
    )
    enricher = Enricher.from_settings(settings.ingest, geo_paths(base))
    writer = HBaseWriter(settings.hbase)
    limits = Limits.from_settings(settings.ingest)
    now_ms = int(time.time() * 1000)
    values = [m.value for m in traffic.messages]
    rows = 0
    for i in range(0, len(values), 1000):
        batch = process(
            [
                Incoming(None, v, Source("bench", 0, i + j))
                for j, v in enumerate(values[i : i + 1000])
            ],
            enricher,
            limits,
            settings.hbase.salt_buckets,
            now_ms,
            session_timeout_ms=settings.ingest.session_timeout_ms,
        )
        writer.write(list(batch.rows.items()))
        rows += len(batch.rows)
    writer.close()
    return rows


def timed_runs(spark: SparkSession, settings: Settings, hour_ms: int, runs: int) -> list[float]:
    """Seconds of each batch run over ``[hour, hour + 1h)`` (after one untimed warm-up)."""
    run_batch(spark, settings, hour_ms, hour_ms + HOUR_MS, progress=lambda _: None)
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        run_batch(spark, settings, hour_ms, hour_ms + HOUR_MS, progress=lambda _: None)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    """Measure, print, save."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="events in the hour")
    parser.add_argument("--factor", type=int, default=10, help="other days' data, x events")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    base = load_settings()
    name = f"bbench_{secrets.token_hex(3)}"
    settings = isolated(base, name)
    hour = (int(time.time() * 1000) // HOUR_MS - 48) * HOUR_MS
    create_table(settings, admin_runtime(settings, progress=lambda _: None))
    client = es_connect(settings.elasticsearch)
    create_templates(client, settings.elasticsearch)
    spark = spark_session(base, app="clickstream-batch-bench")
    try:
        print(f"writing {args.events} events into one hour ...", flush=True)
        in_hour = load(settings, base, hour, 1, args.events, seed=1)
        before = timed_runs(spark, settings, hour, args.runs)
        print(f"writing {args.factor}x more into other days ...", flush=True)
        # Days before the hour, ending a day before it: nothing of it lies in the read range.
        other = load(settings, base, hour - 4 * 24 * HOUR_MS, 72, args.events * args.factor, seed=2)
        after = timed_runs(spark, settings, hour, args.runs)
    finally:
        spark.stop()
        drop_views(client, settings.elasticsearch)
        client.close()
        drop_tables(settings)

    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "row_puts_in_hour": in_hour,
        "row_puts_in_other_days": other,
        "runs": args.runs,
        "seconds_before": [round(s, 2) for s in before],
        "seconds_after": [round(s, 2) for s in after],
        "median_before": round(statistics.median(before), 2),
        "median_after": round(statistics.median(after), 2),
        "ratio_after_before": round(statistics.median(after) / statistics.median(before), 3),
        "index": ViewNames(name).batch_index,
    }
    print(json.dumps(report, indent=2))
    save("batch", report)


if __name__ == "__main__":
    main()
