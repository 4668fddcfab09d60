"""The acceptance run at full scale, on the local stack (`make acceptance`).

200,000 generated events (1 % malformed of 13 kinds, 2 % duplicate deliveries, bots, late and
out-of-order events) go through one daemon that is SIGKILLed at three random instants and
restarted each time, then meets a 30 s stop of the HBase Thrift server. At the end:
HBase rows == distinct valid events, dead letters == malformed messages with their reasons,
per (url, country, hour) clicks == the ground truth; the speed layer's minute views, summed
per (url, country, hour), == the ground truth in clicks, time spent and bots, and the merged
answer's totals too; then the batch job over the first half of the hours, every view document
== the ground truth and the merged totals unchanged across the moved boundary. Prints and
saves a JSON report.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import time
from collections import Counter
from datetime import UTC, datetime

from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan
from results_file import save

from clickstream.settings import Settings, load_settings
from clickstream.times import HOUR_MS
from commands.defaults import admin_runtime, geo_paths
from commands.stack.manager import Stack
from hbase_schema import columns
from indexing.client import connect as es_connect
from indexing.templates import create_templates, drop_views
from indexing.views import ViewNames, view_id
from ingest.dlq import read_dead_letters
from ingest.topics import create_topics, delete_topics, pipeline_topics
from processing.job import run_batch, spark_session
from serving.params import MetricsQuery
from serving.service import MetricsService
from storage.admin import create_table, drop_tables
from storage.connection import connect
from traffic.generate import LATE_MAX_MS, Traffic, TrafficSpec, generate, publish
from traffic.harness import DaemonProcess, committed, isolated
from traffic.population import GeoSample

#: Generated traffic delivers 1 % of events 1-3 h late: the speed window must cover them.
LATENESS = {"CLICKSTREAM_SPEED__ALLOWED_LATENESS_S": str(LATE_MAX_MS // 1000)}


def prepare(settings: Settings) -> Elasticsearch:
    """The run's topics, pre-split table and view templates; a client on its indices."""
    create_topics(settings.kafka)
    create_table(settings, admin_runtime(settings, progress=lambda _: None))
    client = es_connect(settings.elasticsearch)
    create_templates(client, settings.elasticsearch)
    return client


def six_hours(base: Settings, events: int, seed: int, start_ms: int) -> Traffic:
    """``events`` generated events over the 6 hours from ``start_ms`` (IPs from the stack's
    geo database)."""
    return generate(
        TrafficSpec(
            start_ms=start_ms,
            session_timeout_ms=base.ingest.session_timeout_ms,
            events=events,
            hours=6,
        ),
        seed=seed,
        geo=GeoSample.from_mmdb(geo_paths(base), seed=seed),
    )


def _wait(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout}s")


def check(settings: Settings, traffic: Traffic) -> dict[str, object]:
    """Compare HBase and the dead-letter topic with the ground truth; the findings."""
    connection = connect(settings.hbase)
    try:
        wanted = [columns.IS_BOT, columns.TIMESTAMP_MS, columns.URL_NORMALIZED, columns.COUNTRY]
        rows = dict(connection.table(settings.hbase.table).scan(columns=wanted, batch_size=1000))
    finally:
        connection.close()
    groups: Counter[tuple[str, str, int]] = Counter()
    for cells in rows.values():
        if cells[columns.IS_BOT] != b"1":
            hour = int(cells[columns.TIMESTAMP_MS]) // HOUR_MS * HOUR_MS
            groups[
                (cells[columns.URL_NORMALIZED].decode(), cells[columns.COUNTRY].decode(), hour)
            ] += 1
    truth = {(g.url, g.country, g.hour_ms): g.clicks for g in traffic.truth.groups if g.clicks}
    letters = read_dead_letters(settings.kafka)
    expected = Counter(m.reason.value for m in traffic.messages if m.reason is not None)
    got = Counter(letter.reason for letter in letters)
    return {
        "hbase_rows": len(rows),
        "distinct_valid_events": traffic.truth.summary.valid_events,
        "rows_equal_events": len(rows) == traffic.truth.summary.valid_events,
        "dead_letters": len(letters),
        "malformed_messages": sum(expected.values()),
        "dead_letters_by_reason_equal": got == expected,
        "dead_letter_kinds": len(got),
        "groups_equal_truth": dict(groups) == truth,
        "groups": len(truth),
    }


def run_scenario(
    settings: Settings, stack: Stack, total: int, rng: random.Random, outage_s: float
) -> dict[str, object]:
    """Three SIGKILLs at random instants mid-stream, then a Thrift outage; the figures."""
    started = time.monotonic()
    kills = []
    # Three random instants spread over the first two thirds of the run (the outage follows).
    for target in sorted(rng.uniform(0.05, 0.65) for _ in range(3)):
        daemon = DaemonProcess.start(settings, "accept", **LATENESS)
        _wait(lambda target=target: committed(settings) >= target * total, 600)
        time.sleep(rng.uniform(0.0, 0.5))  # anywhere inside a batch or between two
        daemon.kill()
        kills.append(committed(settings))
        print(f"SIGKILL at {kills[-1]}/{total} committed", flush=True)

    daemon = DaemonProcess.start(settings, "accept", "--exit-when-idle", "10", **LATENESS)
    floor = committed(settings)
    _wait(lambda: committed(settings) > floor, 120)
    print(
        f"stopping the Thrift server for {outage_s:.0f}s at "
        f"{committed(settings)}/{total} committed",
        flush=True,
    )
    stack.stop_server("thrift")
    time.sleep(outage_s)
    alive_through_outage = daemon.process.poll() is None
    stack.up()
    daemon.finish(timeout=900)
    return {
        "messages": total,
        "kills_at_committed": kills,
        "outage_s": outage_s,
        "daemon_alive_through_outage": alive_through_outage,
        "wall_s": round(time.monotonic() - started, 1),
    }


def merged_totals(settings: Settings, t0_ms: int, t1_ms: int) -> tuple[int, int, int, int]:
    """(clicks, bot clicks, time-spent sum, count) of the serving layer's merged answer."""
    with MetricsService(settings) as service:
        total = service.query(MetricsQuery(from_ms=t0_ms, to_ms=t1_ms)).total
    return (total.clicks, total.bot_clicks, total.time_spent_sum_ms, total.time_spent_count)


def truth_totals(traffic: Traffic) -> tuple[int, int, int, int]:
    """The same four figures from the ground truth."""
    t = traffic.truth.totals()
    return (t.clicks, t.bot_clicks, t.time_spent_sum_ms, t.time_spent_count)


def check_speed(
    settings: Settings, traffic: Traffic, t0_ms: int, t1_ms: int, grain: str = "minute"
) -> dict[str, object]:
    """Speed views per (url, country, hour) and the merged totals against the truth. The
    (url, country) views of ``grain``: minutes (dropped an hour behind the boundary once a
    batch has run) or hours (kept with the day)."""
    client = es_connect(settings.elasticsearch)
    try:
        pattern = f"{settings.elasticsearch.index_prefix}-speed-*"
        client.indices.refresh(index=pattern)
        sums: dict[tuple[str, str, int], list[int]] = {}
        # The (url, country) views; the rollups above them are checked by the tests.
        views = {
            "bool": {"filter": [{"term": {"level": "url_country"}}, {"term": {"grain": grain}}]}
        }
        for hit in scan(client, index=pattern, query={"query": views}):
            doc = hit["_source"]
            key = (doc["url"], doc["country"], doc["start"] // HOUR_MS * HOUR_MS)
            row = sums.setdefault(key, [0, 0, 0, 0])
            for i, field in enumerate(
                ("clicks", "bot_clicks", "time_spent_sum_ms", "time_spent_count")
            ):
                row[i] += doc[field]
    finally:
        client.close()
    truth = {
        (g.url, g.country, g.hour_ms): [
            g.clicks,
            g.bot_clicks,
            g.time_spent_sum_ms,
            g.time_spent_count,
        ]
        for g in traffic.truth.groups
    }
    observed = {k: v for k, v in sums.items() if v[0] or v[1]}
    mismatched = sum(1 for k in truth.keys() | observed.keys() if truth.get(k) != observed.get(k))
    return {
        "speed_groups_equal_truth": mismatched == 0,
        "speed_mismatched_groups": mismatched,
        "merged_totals_equal_truth": merged_totals(settings, t0_ms, t1_ms) == truth_totals(traffic),
    }


def check_batch(
    base: Settings, settings: Settings, traffic: Traffic, t0_ms: int, t1_ms: int
) -> dict[str, object]:
    """Run the batch layer over the span; compare every view document with the truth."""
    es = settings.elasticsearch
    client = es_connect(es)
    spark = spark_session(base)
    try:
        # The first half only: the boundary lands inside the data, speed answers the rest.
        seam = t0_ms + (t1_ms - t0_ms) // 2 // HOUR_MS * HOUR_MS
        result = run_batch(spark, settings, t0_ms, seam)
        index = ViewNames(es.index_prefix).batch_index
        client.indices.refresh(index=index)
        docs = {
            hit["_id"]: hit["_source"]
            for hit in scan(client, index=index, query={"query": {"match_all": {}}})
        }
        fields = ("clicks", "unique_users", "time_spent_sum_ms", "time_spent_count", "bot_clicks")
        truth = {
            view_id(g.url, g.country, g.hour_ms): (
                g.clicks,
                g.unique_users,
                g.time_spent_sum_ms,
                g.time_spent_count,
                g.bot_clicks,
            )
            for g in traffic.truth.groups
            if g.hour_ms < seam
        }
        mismatches = sum(
            1
            for doc_id, values in truth.items()
            if tuple(docs.get(doc_id, {}).get(f) for f in fields) != values
        )
        return {
            "batch_seconds": round(result.seconds, 1),
            "batch_views": len(docs),
            "batch_views_equal_truth": mismatches == 0 and len(docs) == len(truth),
            "batch_mismatched_views": mismatches,
            "merged_totals_unchanged_after_batch": merged_totals(settings, t0_ms, t1_ms)
            == truth_totals(traffic),
        }
    finally:
        spark.stop()
        client.close()


def main() -> None:
    """Run the scenario once; exit non-zero if any check fails."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--outage-s", type=float, default=30)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    base = load_settings()
    name = f"accept_{secrets.token_hex(3)}"
    settings = isolated(base, name)
    stack = Stack(base, progress=lambda line: print(f"  [stack] {line}", flush=True))
    client = prepare(settings)
    rng = random.Random(args.seed)
    report: dict[str, object] = {"when": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        # Whole hours, so the batch layer can process exactly the generated span.
        start = (int(time.time() * 1000) // HOUR_MS - 7) * HOUR_MS
        traffic = six_hours(base, args.events, args.seed, start)
        total = len(traffic.messages)
        print(
            f"publishing {total} messages ({traffic.truth.summary.duplicates} duplicates, "
            f"{sum(traffic.truth.summary.malformed.values())} malformed) ...",
            flush=True,
        )
        publish(traffic, settings.kafka, settings.kafka.clicks_topic, progress=lambda _: None)

        report.update(run_scenario(settings, stack, total, rng, args.outage_s))
        report.update(check(settings, traffic))
        report.update(check_speed(settings, traffic, start, start + 7 * HOUR_MS))
        report.update(check_batch(base, settings, traffic, start, start + 6 * HOUR_MS))
    finally:
        stack.up()
        delete_topics(settings.kafka, pipeline_topics(settings.kafka))
        drop_tables(settings)
        drop_views(client, settings.elasticsearch)
        client.close()

    print(json.dumps(report, indent=2))
    save("acceptance", report)
    ok = all(
        report[k]
        for k in (
            "rows_equal_events",
            "dead_letters_by_reason_equal",
            "groups_equal_truth",
            "daemon_alive_through_outage",
            "speed_groups_equal_truth",
            "merged_totals_equal_truth",
            "batch_views_equal_truth",
            "merged_totals_unchanged_after_batch",
        )
    )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
