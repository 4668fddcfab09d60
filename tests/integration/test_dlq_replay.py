"""`clickstream dlq replay` on the real stack: a dry run produces nothing, a replay produces
exactly the chosen originals, and replaying again never counts an event twice."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, TopicPartition
from elasticsearch import Elasticsearch

from clickstream.settings import Settings
from clickstream.times import MINUTE_MS, iso
from commands.cli import main
from hbase_schema import columns
from ingest.dlq import DlqRecord, count_dead_letters, scan_dead_letters
from storage.connection import connect
from tests.integration.helpers import Spawn
from traffic.sender import Sender

pytestmark = pytest.mark.integration

Pair = tuple[bytes | None, bytes | None]


def click(user: str, ts_ms: int, **fields: object) -> Pair:
    """A click keyed by its user, as a producer sends it (country given, so no ip needed)."""
    body = {"user_id": user, "timestamp": ts_ms, "url": f"https://shop.example/{user}"}
    body |= {"country": "DE", **fields}
    return user.encode(), json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def stored_rows(settings: Settings) -> dict[bytes, dict[bytes, bytes]]:
    """Every row of the test's table, without the source cell (a replay rewrites a row with
    its new offset there, and nothing else)."""
    connection = connect(settings.hbase)
    try:
        rows = connection.table(settings.hbase.table).scan()
        return {key: {c: v for c, v in cells.items() if c != columns.SOURCE} for key, cells in rows}
    finally:
        connection.close()


def speed_clicks(client: Elasticsearch, settings: Settings) -> int:
    """Clicks summed over the test's speed views (their (all, all) hour rollups)."""
    index = f"{settings.elasticsearch.index_prefix}-speed-*"
    client.indices.refresh(index=index, allow_no_indices=True)
    result = client.search(
        index=index,
        size=0,
        query={"bool": {"filter": [{"term": {"level": "all"}}, {"term": {"grain": "hour"}}]}},
        aggs={"clicks": {"sum": {"field": "clicks"}}},
        allow_no_indices=True,
    )
    return int(result["aggregations"]["clicks"]["value"])


def end_offsets(settings: Settings) -> dict[int, int]:
    """The clicks topic's end offset per partition."""
    topic = settings.kafka.clicks_topic
    consumer = Consumer({**settings.kafka.client_config(), "group.id": "replay-test"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def read_since(settings: Settings, starts: dict[int, int]) -> list[Pair]:
    """The clicks topic's records from ``starts`` to its current end."""
    topic, ends = settings.kafka.clicks_topic, end_offsets(settings)
    consumer = Consumer({**settings.kafka.client_config(), "group.id": "replay-test"})
    remaining = {p for p, end in ends.items() if end > starts[p]}
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in remaining])
    pairs: list[Pair] = []
    deadline = time.monotonic() + 20
    try:
        while remaining and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            pairs.append((message.key(), message.value()))
            if (message.offset() or 0) + 1 >= ends[message.partition() or 0]:
                remaining.discard(message.partition() or 0)
    finally:
        consumer.close()
    assert not remaining, "the clicks topic could not be read to its end"
    return pairs


def dead_letters(settings: Settings, reason: str) -> list[DlqRecord]:
    """The committed dead letters of one reason."""
    return [r for r in scan_dead_letters(settings.kafka) if r.reason == reason]


def replay(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """Run `clickstream dlq replay` in this process; its output."""
    assert main(["dlq", "replay", *words]) == 0
    return capsys.readouterr().out


def test_replay_produces_exactly_the_chosen_and_never_counts_twice(
    pipeline: Settings,
    spawn: Spawn,
    views: Elasticsearch,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Dry run: nothing produced. Replay: exactly the chosen originals; still-bad ones are
    dead-lettered once more and --since leaves them apart; once the cause is fixed (the future
    window widened) replayed events land once, and replaying them again changes nothing."""
    monkeypatch.setenv("CLICKSTREAM_KAFKA__CLICKS_TOPIC", pipeline.kafka.clicks_topic)
    monkeypatch.setenv("CLICKSTREAM_KAFKA__DLQ_TOPIC", pipeline.kafka.dlq_topic)
    now = int(time.time() * 1000)
    valid = [click(f"v{i}", now - (i + 1) * MINUTE_MS) for i in range(4)]
    no_url = [click(f"m{i}", now, url=None) for i in range(3)]
    # 20 minutes ahead: rejected by the default window (300 s), fixable by widening it.
    ahead = [click(f"f{i}", now + 20 * MINUTE_MS) for i in range(2)]
    with Sender(pipeline.kafka, pipeline.kafka.clicks_topic) as sender:
        for key, value in valid + no_url + ahead:
            sender.send(key, value or b"")
    spawn("r", "--exit-when-idle", "2").finish()
    rows = stored_rows(pipeline)
    assert len(rows) == 4
    first = dead_letters(pipeline, "missing_field")
    assert Counter(r.value for r in first) == Counter(value for _, value in no_url)
    assert count_dead_letters(pipeline.kafka) == {"missing_field": 3, "timestamp_out_of_range": 2}

    # A dry run says what it would do and produces nothing.
    ends = end_offsets(pipeline)
    out = replay(capsys, "--reason", "missing_field", "--dry-run")
    assert "dry run: would replay 3 to" in out
    assert "missing_field  rejected " in out
    assert ": required field url is missing" in out
    assert end_offsets(pipeline) == ends

    # The replay produces exactly the chosen originals, key and bytes unchanged.
    out = replay(capsys, "--reason", "missing_field")
    assert f"replayed 3 to {pipeline.kafka.clicks_topic} (3 acknowledged)" in out
    assert Counter(read_since(pipeline, ends)) == Counter(no_url)

    # Still malformed: each is dead-lettered once more, with the same reason; no row changes.
    spawn("r", "--exit-when-idle", "2").finish()
    assert stored_rows(pipeline) == rows
    again = [r for r in dead_letters(pipeline, "missing_field") if r not in first]
    assert Counter(r.value for r in again) == Counter(value for _, value in no_url)
    last_first = max(r.rejected_at_ms or 0 for r in first)
    assert all((r.rejected_at_ms or 0) > last_first for r in again)

    # --since after the first rejections selects only the second generation.
    out = replay(capsys, "--reason", "missing_field", "--since", iso(last_first + 1), "--dry-run")
    assert "would replay 3" in out
    dlq = pipeline.kafka.dlq_topic
    assert all(f"{dlq}:{r.partition}:{r.offset} " in out for r in again)
    assert not any(f"{dlq}:{r.partition}:{r.offset} " in out for r in first)
    # Without it, the re-rejected copies are the same events: each is chosen once.
    assert "would replay 3" in replay(capsys, "--reason", "missing_field", "--dry-run")

    # The cause fixed (a wider future window), the replayed events land once; a second replay
    # after they are stored changes neither HBase nor the speed views.
    fixed = {"CLICKSTREAM_INGEST__MAX_FUTURE_S": "3600"}
    clicks_before = speed_clicks(views, pipeline)
    assert "replayed 2" in replay(capsys, "--reason", "timestamp_out_of_range")
    spawn("r", "--exit-when-idle", "2", **fixed).finish()
    landed = stored_rows(pipeline)
    assert len(landed) == 6
    assert {cells[columns.USER_ID] for cells in landed.values()} >= {b"f0", b"f1"}
    assert speed_clicks(views, pipeline) == clicks_before + 2

    assert "replayed 2" in replay(capsys, "--reason", "timestamp_out_of_range")
    spawn("r", "--exit-when-idle", "2", **fixed).finish()
    assert stored_rows(pipeline) == landed
    assert speed_clicks(views, pipeline) == clicks_before + 2
    assert len(dead_letters(pipeline, "timestamp_out_of_range")) == 2
