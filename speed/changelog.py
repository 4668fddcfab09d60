"""The speed state's changelog: a compacted Kafka topic, one record per user, as Kafka Streams
keeps its stores.

Record ``k`` on changelog partition ``p`` is the timeline of user ``k`` of clicks partition
``p`` (a tombstone once it expires); the record keyed ``PARTITION_KEY`` holds the partition's
newest event time and next offset. Records go out in the same Kafka transaction as the input
offsets, so the restored state is exactly the state at the committed offset.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from clickstream.errors import RetriableError, SchemaError
from clickstream.settings import KafkaSettings
from speed.state import MINUTE_MS, Entry, PartitionState, Timeline

PARTITION_KEY = b"\x00partition"
FORMAT = 2


@dataclass(frozen=True, slots=True)
class Record:
    """One changelog record to produce: ``value`` None is a tombstone."""

    partition: int
    key: bytes
    value: bytes | None


def encode_timeline(timeline: Timeline) -> bytes:
    """A user's timeline as compact JSON."""
    body = {
        "v": FORMAT,
        "h": [[ts, event_id, url, country] for ts, event_id, (url, country, _) in timeline.humans],
        "b": sorted([ts, event_id] for ts, event_id in timeline.bots),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode_timeline(value: bytes, state: PartitionState | None = None) -> Timeline:
    """The timeline :func:`encode_timeline` wrote (doc keys shared through ``state``).

    Format 1 (the first release) kept row keys instead of bot event ids; its bot clicks are
    read back with the row key standing in for the event id, which only matters for the dedup
    of a bot click re-delivered across the upgrade. A newer format is refused: the state was
    written by a newer daemon, and guessing would corrupt it.
    """
    try:
        body = json.loads(value)
        version = body.get("v")
    except (ValueError, AttributeError) as exc:
        raise SchemaError(f"unreadable speed changelog record: {exc}") from exc
    if version not in (1, FORMAT):
        raise SchemaError(
            f"speed changelog record format {version!r} is newer than this daemon reads "
            f"({FORMAT}): run the newer release"
        )
    try:
        humans: list[Entry] = []
        for item in body["h"]:
            ts, event_id, url, country = item if version == FORMAT else _format_1(item)
            key = (url, country, ts - ts % MINUTE_MS)
            humans.append((ts, event_id, state.doc_key(key) if state is not None else key))
        bots = {(ts, eid) for ts, eid in body["b"]} if version == FORMAT else _bots_1(body["b"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SchemaError(f"unreadable speed changelog record: {exc}") from exc
    return Timeline(humans, bots)


def _format_1(item: list[object]) -> tuple[int, str, str, str]:
    ts, event_id, _row_key, url, country = item
    return int(str(ts)), str(event_id), str(url), str(country)


def _bots_1(items: list[list[object]]) -> set[tuple[int, str]]:
    return {(int(str(ts)), f"rowkey:{key}") for key, ts in items}


def encode_partition(state: PartitionState) -> bytes:
    """The partition record: newest event time and next offset."""
    return json.dumps({"v": FORMAT, "max_ts": state.max_ts, "next": state.next_offset}).encode()


def records_for(state: PartitionState, changed: set[str], expired: set[str]) -> list[Record]:
    """The records that checkpoint ``state`` after a fold touched ``changed`` users."""
    records = [
        Record(state.partition, user.encode(), encode_timeline(state.users[user]))
        for user in sorted(changed)
        if user in state.users
    ]
    records.extend(Record(state.partition, user.encode(), None) for user in sorted(expired))
    records.append(Record(state.partition, PARTITION_KEY, encode_partition(state)))
    return records


def restore(
    settings: KafkaSettings,
    topic: str,
    partition: int,
    *,
    session_timeout_ms: int,
    retention_ms: int,
    timeout_s: float = 60.0,
) -> PartitionState:
    """Rebuild one partition's state from the changelog (committed records only)."""
    state = PartitionState(partition, session_timeout_ms, retention_ms)
    for key, value in _read(settings, topic, partition, timeout_s):
        if key == PARTITION_KEY:
            if value is not None:
                body = json.loads(value)
                state.max_ts, state.next_offset = int(body["max_ts"]), int(body["next"])
        elif value is None:
            state.users.pop(key.decode(), None)
        else:
            state.users[key.decode()] = decode_timeline(value, state)
    return state


def _read(
    settings: KafkaSettings, topic: str, partition: int, timeout_s: float
) -> Iterator[tuple[bytes, bytes | None]]:
    consumer = Consumer(
        {
            **settings.client_config(),
            "group.id": f"{topic}-restore",  # never commits; assign() needs no group
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None or partition not in metadata.partitions:
            raise SchemaError(
                f"no partition {partition} in the speed changelog topic {topic}: run "
                "`clickstream schema create` (it needs as many partitions as the clicks topic)"
            )
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high <= low:
            return
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return
                    raise RetriableError(f"reading the speed changelog failed: {error}")
                key = message.key()
                if key is not None:
                    yield key, message.value()
        raise RetriableError(f"restoring {topic}[{partition}] took over {timeout_s:.0f}s")
    except KafkaException as exc:
        raise RetriableError(f"cannot read the speed changelog {topic}: {exc}") from exc
    finally:
        consumer.close()
