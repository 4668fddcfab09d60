"""Queries reaching now over traffic ingested for real, at 1,000 events/s density (`make
bench-serving-live`).

    make bench-serving-live     # or: .venv/bin/python bench/serving_live.py --events 600000

Generated traffic (600,000 events over the last 10 minutes of event time, i.e. 1,000 events/s;
bots, duplicates and out-of-order events, no malformed or hours-late ones so the whole truth is
inside the last hour) is published to a topic of its own and ingested by one real
`clickstream ingest` process into HBase and the speed layer. Then a real `clickstream serve`
answers, through HTTP, the last hour reaching now: the total, the top 100 URLs and the top 100
countries, each --repetitions times (the range shifted by a second each time). Every answer must
equal the ground truth exactly in clicks, bot clicks and time spent (sum and count), for the total
and for every group shown; its unique users must hold the truth within their bounds. Prints the
medians (target <= 300 ms) and saves bench/results/serving-live-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import httpx
from results_file import save

from clickstream.settings import load_settings
from clickstream.times import MINUTE_MS, iso
from commands.defaults import admin_runtime, geo_paths
from indexing.client import connect as es_connect
from indexing.templates import create_templates, drop_views
from ingest.topics import create_topics, delete_topics, pipeline_topics
from storage.admin import create_table, drop_tables
from traffic.generate import Traffic, TrafficSpec, generate, publish
from traffic.harness import ApiProcess, DaemonProcess, isolated
from traffic.population import GeoSample

Figures = tuple[int, int, int, int]
QUERIES = {"total": {}, "top 100 urls": {"group_by": "url"}, "by country": {"group_by": "country"}}


def truth_by(traffic: Traffic, key: str | None) -> dict[str | None, Figures]:
    """(clicks, bot clicks, time-spent sum, count) per url / per country / in all."""
    sums: dict[str | None, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for group in traffic.truth.groups:
        row = sums[None if key is None else getattr(group, key)]
        for i, value in enumerate(
            (group.clicks, group.bot_clicks, group.time_spent_sum_ms, group.time_spent_count)
        ):
            row[i] += value
    return {k: (a, b, c, d) for k, (a, b, c, d) in sums.items()}


def figures(measures: dict[str, Any]) -> Figures:
    """The same four figures from an answer's total or group."""
    return (
        measures["clicks"],
        measures["bot_clicks"],
        measures["time_spent_sum_ms"],
        measures["time_spent_count"],
    )


def check(body: dict[str, Any], traffic: Traffic, group_by: str | None) -> list[str]:
    """What in the answer differs from the truth (empty: exact)."""
    wrong = []
    if figures(body["total"]) != truth_by(traffic, None)[None]:
        wrong.append(f"total {figures(body['total'])} != {truth_by(traffic, None)[None]}")
    users = body["total"]["unique_users"]
    if not users["lower_bound"] <= traffic.truth.unique_users <= users["upper_bound"]:
        wrong.append(f"unique users {users} do not hold {traffic.truth.unique_users}")
    if group_by is not None:
        truth = truth_by(traffic, group_by)
        for group in body["groups"]:
            if figures(group) != truth.get(group[group_by]):
                wrong.append(f"{group[group_by]}: {figures(group)} != {truth.get(group[group_by])}")
        ranked = sorted(truth.items(), key=lambda item: (-item[1][0], item[0] or ""))
        expected = [key for key, _ in ranked[: body["top"]]]
        if [group[group_by] for group in body["groups"]] != expected:
            wrong.append(f"the top {body['top']} {group_by}s are not the truth's")
    return wrong


def main() -> None:
    """Generate, ingest, query, check, print, save."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=600_000, help="events (600,000)")
    parser.add_argument("--minutes", type=float, default=10.0, help="event-time span (10)")
    parser.add_argument("--repetitions", type=int, default=20, help="answers per query (20)")
    args = parser.parse_args()

    base = load_settings()
    settings = isolated(base, f"bench_live_{secrets.token_hex(3)}")
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - int(args.minutes * MINUTE_MS)
    print(f"generating {args.events:,} events over [{iso(start_ms)}, {iso(now_ms)}) ...")
    traffic = generate(
        TrafficSpec(
            start_ms=start_ms,
            session_timeout_ms=settings.ingest.session_timeout_ms,
            events=args.events,
            hours=args.minutes / 60,
            malformed_share=0,
            late_share=0,
        ),
        seed=7,
        geo=GeoSample.from_mmdb(geo_paths(base), seed=7),
    )
    create_topics(settings.kafka)
    create_table(settings, admin_runtime(settings, progress=lambda _: None))
    client = es_connect(settings.elasticsearch)
    create_templates(client, settings.elasticsearch)
    api: ApiProcess | None = None
    try:
        sent = publish(traffic, settings.kafka, settings.kafka.clicks_topic)
        print(f"ingesting {sent:,} messages with one daemon ...", flush=True)
        began = time.monotonic()
        DaemonProcess.start(settings, "live", "--exit-when-idle", "5").finish(timeout=3600)
        ingest_s = time.monotonic() - began
        client.indices.refresh(index=f"{settings.elasticsearch.index_prefix}-*")
        api = ApiProcess.start(settings)
        if time.time() * 1000 - start_ms > 50 * MINUTE_MS:
            raise SystemExit("ingesting took so long that the last hour misses the first events")
        answers = measure(api.base_url, traffic, now_ms, args.repetitions)
    finally:
        if api is not None:
            api.stop()
        delete_topics(settings.kafka, pipeline_topics(settings.kafka))
        drop_tables(settings)
        drop_views(client, settings.elasticsearch)
        client.close()
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "events": args.events,
        "messages": len(traffic.messages),
        "event_time_minutes": args.minutes,
        "ingest_s_with_exit_when_idle_5s": round(ingest_s, 1),
        "queries": answers,
        "target_median_s": 0.3,
    }
    print(f"ingested in {ingest_s:.0f} s (including the 5 s idle wait)")
    for name, figures_of in answers.items():
        print(
            f"  last hour, {name:14} median {figures_of['median_s'] * 1000:6.0f} ms  "
            f"p90 {figures_of['p90_s'] * 1000:6.0f} ms  documents {figures_of['documents']:>6}  "
            f"exact: {'yes' if not figures_of['wrong'] else figures_of['wrong'][:3]}"
        )
    save("serving-live", report)
    if any(q["wrong"] for q in answers.values()):
        raise SystemExit("an answer differs from the ground truth")


def measure(
    base_url: str, traffic: Traffic, end_ms: int, repetitions: int
) -> dict[str, dict[str, Any]]:
    """Each query ``repetitions`` times over the hour reaching now (every event is before
    ``end_ms``): timings and the check."""
    found: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=base_url, timeout=60) as http:
        for name, extra in QUERIES.items():
            seconds, wrong, documents = [], [], 0
            for repetition in range(repetitions + 1):
                to_ms = max(int(time.time() * 1000), end_ms) + repetition * 1000
                params = {"from": iso(to_ms - 60 * MINUTE_MS), "to": iso(to_ms), **extra}
                began = time.perf_counter()
                response = http.get("/v1/metrics", params=params)
                elapsed = time.perf_counter() - began
                response.raise_for_status()
                body = response.json()
                if repetition:  # the first one warms up
                    seconds.append(elapsed)
                wrong = check(body, traffic, extra.get("group_by"))
                documents = body["total"]["documents"] + sum(
                    group["documents"] for group in body["groups"]
                )
            found[name] = {
                "median_s": round(statistics.median(seconds), 4),
                "p90_s": round(sorted(seconds)[int(0.9 * len(seconds))], 4),
                "documents": documents,
                "wrong": wrong,
            }
    return found


if __name__ == "__main__":
    main()
