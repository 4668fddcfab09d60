"""How long a daemon takes to restore the speed layer's state from its changelog, at the size the
README documents (one daemon at 1,000 events/s, the default window of 1 h lateness + 30 min
session timeout: 5.4 M clicks kept).

    make bench-restore        # or: .venv/bin/python bench/restore_bench.py --events-per-s 1000

The changelog is written with the speed layer's own encoder (``encode_timeline``, one record per
user, as the daemon checkpoints them) to a fresh topic, then each partition is restored with the
daemon's ``restore`` and timed. A compacted topic holds about one record per live user; up to an
hour of superseded records (the uncompacted head, ``segment.ms``) comes on top. Printed and saved
to bench/results/restore-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import random
import resource
import secrets
import time
from datetime import UTC, datetime

from confluent_kafka import Producer
from results_file import save

from clickstream.settings import Settings, load_settings
from clickstream.times import MINUTE_MS
from ingest.topics import create_topics, delete_topics, pipeline_topics
from speed.changelog import PARTITION_KEY, encode_partition, encode_timeline, restore, user_key
from speed.state import PartitionState, Timeline
from traffic.harness import isolated


def timeline(rng: random.Random, clicks: int, start_ms: int, window_ms: int) -> Timeline:
    """One user's kept clicks: a session's worth of human page views inside the window."""
    first = start_ms + rng.randrange(window_ms - clicks * 120_000)  # all inside the window
    humans = []
    ts = first
    for _ in range(clicks):
        ts += rng.randrange(5_000, 120_000)
        url = f"https://shop.example.com/category/{rng.randrange(150)}/item-{rng.randrange(40)}"
        country = rng.choice(("US", "DE", "FR", "GB", "JP", "BR", "IN", "NL"))
        humans.append((ts, secrets.token_hex(8), (url, country, ts - ts % MINUTE_MS)))
    return Timeline(humans, set())


def write_changelog(
    settings: Settings, users: int, clicks_per_user: int, seed: int, window_ms: int
) -> int:
    """One record per user (and the partition records), as the daemon checkpoints them; the
    bytes written."""
    topic = settings.kafka.speed_changelog_topic
    partitions = settings.kafka.partitions
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    producer = Producer({**settings.kafka.client_config(), "linger.ms": 50})
    written = 0
    for n in range(users):
        value = encode_timeline(timeline(rng, clicks_per_user, now_ms - window_ms, window_ms))
        written += len(value)
        while True:
            try:
                producer.produce(
                    topic, key=user_key(f"user-{n}"), value=value, partition=n % partitions
                )
                break
            except BufferError:
                producer.poll(0.5)
        if n % 100_000 == 0 and n:
            print(f"  {n:,} users written", flush=True)
    for partition in range(partitions):
        state = PartitionState(partition, settings.ingest.session_timeout_ms, window_ms)
        state.max_ts = now_ms
        state.next_offset = 1
        producer.produce(
            topic, key=PARTITION_KEY, value=encode_partition(state), partition=partition
        )
    producer.flush(120)
    return written


def restore_all(settings: Settings, window_ms: int) -> list[dict[str, float]]:
    """Restore each partition as a daemon does on assignment, timed."""
    rows = []
    for partition in range(settings.kafka.partitions):
        started = time.perf_counter()
        restored = restore(
            settings.kafka,
            settings.kafka.speed_changelog_topic,
            partition,
            session_timeout_ms=settings.ingest.session_timeout_ms,
            retention_ms=window_ms,
        )
        seconds = time.perf_counter() - started
        kept = sum(len(t.humans) for t in restored.state.users.values())
        rows.append(
            {
                "partition": partition,
                "records": restored.records,
                "users": len(restored.state.users),
                "clicks": kept,
                "seconds": round(seconds, 2),
                "malformed": restored.malformed,
            }
        )
        print(
            f"  partition {partition}: {restored.records:,} records, {kept:,} clicks in "
            f"{seconds:.1f} s ({restored.records / seconds:,.0f} records/s)",
            flush=True,
        )
        del restored
    return rows


def main() -> None:
    """Write the changelog, restore every partition, print and save the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events-per-s", type=int, default=1000)
    parser.add_argument("--clicks-per-user", type=int, default=8, help="kept per user (default 8)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    base = load_settings()
    settings = isolated(base, f"bench_restore_{secrets.token_hex(3)}")
    window_s = base.speed.allowed_lateness_s + base.ingest.session_timeout_s
    window_ms = window_s * 1000
    clicks = args.events_per_s * window_s
    users = clicks // args.clicks_per_user
    print(
        f"{clicks:,} clicks kept ({args.events_per_s}/s x {window_s} s) as {users:,} users over "
        f"{settings.kafka.partitions} partitions: writing the changelog ...",
        flush=True,
    )
    create_topics(settings.kafka)
    try:
        started = time.perf_counter()
        written = write_changelog(settings, users, args.clicks_per_user, args.seed, window_ms)
        print(f"written {written / 2**20:.0f} MiB in {time.perf_counter() - started:.0f} s")
        print("restoring ...", flush=True)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        rows = restore_all(settings, window_ms)
        total_s = time.perf_counter() - started
        rss_growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    finally:
        delete_topics(settings.kafka, pipeline_topics(settings.kafka))

    restored_clicks = sum(r["clicks"] for r in rows)
    if restored_clicks != clicks:
        raise SystemExit(f"restored {restored_clicks} clicks of {clicks}: the restore lost state")
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "events_per_s": args.events_per_s,
        "window_s": window_s,
        "users": users,
        "clicks": clicks,
        "changelog_mib": round(written / 2**20, 1),
        "restore_s": round(total_s, 1),
        "records_per_s": round(sum(r["records"] for r in rows) / total_s),
        "clicks_per_s": round(restored_clicks / total_s),
        "peak_rss_growth_mib": round(rss_growth_mib),
        "partitions": rows,
    }
    print(
        f"\nrestore of {clicks:,} clicks ({users:,} users, {written / 2**20:.0f} MiB): "
        f"{total_s:.1f} s, {report['records_per_s']:,} records/s, "
        f"peak RSS +{rss_growth_mib:.0f} MiB"
    )
    save("restore", report)


if __name__ == "__main__":
    main()
