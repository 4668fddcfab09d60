"""Dead-letter records: the original bytes unchanged, the reason and the source in headers.

A record must fit the dead-letter topic. A message near the broker's maximum (rejected as
``too_large``) cannot be produced again with headers added, and a record that cannot be
produced would hold the whole batch back forever. So a value over :data:`MAX_VALUE_BYTES` is
replaced by a clearly marked JSON stub (its size, SHA-256 and first KiB) and a key over
:data:`MAX_KEY_BYTES` by its hash; headers say what was replaced. Nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from clickstream.errors import ConfigError
from clickstream.model import Rejection, Source
from clickstream.settings import KafkaSettings

# Header names, stable for anyone who reads the dead-letter topic.
REASON = "clickstream.reason"
DETAIL = "clickstream.detail"
FIELD = "clickstream.field"
SOURCE_TOPIC = "clickstream.source.topic"
SOURCE_PARTITION = "clickstream.source.partition"
SOURCE_OFFSET = "clickstream.source.offset"
REJECTED_AT = "clickstream.rejected_at_ms"
STUB = "clickstream.stub"  # "value" or "key": what was replaced
ORIGINAL_SIZE = "clickstream.original_size"
ORIGINAL_SHA256 = "clickstream.original_sha256"

#: Half the broker's default record limit (1 MiB): room for the key and headers whatever they hold.
MAX_VALUE_BYTES = 512 * 1024
MAX_KEY_BYTES = 16 * 1024
_HEAD_BYTES = 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record for the dead-letter topic."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter(
    key: bytes | None, value: bytes | None, rejection: Rejection, source: Source, now_ms: int
) -> DeadLetter:
    """The dead-letter record of a rejected message: same key and bytes, reasons in headers."""
    headers = [
        (REASON, rejection.reason.value.encode()),
        (DETAIL, rejection.detail.encode()),
        (SOURCE_TOPIC, source.topic.encode()),
        (SOURCE_PARTITION, str(source.partition).encode()),
        (SOURCE_OFFSET, str(source.offset).encode()),
        (REJECTED_AT, str(now_ms).encode()),
    ]
    if rejection.field is not None:
        headers.append((FIELD, rejection.field.encode()))
    if key is not None and len(key) > MAX_KEY_BYTES:
        key = b"sha256:" + hashlib.sha256(key).hexdigest().encode()
        headers.append((STUB, b"key"))
    if value is not None and len(value) > MAX_VALUE_BYTES:
        digest = hashlib.sha256(value).hexdigest()
        headers += [
            (STUB, b"value"),
            (ORIGINAL_SIZE, str(len(value)).encode()),
            (ORIGINAL_SHA256, digest.encode()),
        ]
        value = _stub(value, digest)
    return DeadLetter(key, value, headers)


def _stub(value: bytes, digest: str) -> bytes:
    """What stands in for a value too large to dead-letter: size, hash, the first KiB."""
    head = value[:_HEAD_BYTES].decode("utf-8", errors="backslashreplace")
    body = {"clickstream_stub": True, "size": len(value), "sha256": digest, "head": head}
    return json.dumps(body).encode()


def header(
    headers: Iterable[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
    name: str,
) -> str | None:
    """The value of header ``name`` as text, or None."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or []
    for key, value in pairs:
        if key == name and value is not None:
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return None


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A committed dead-letter record as read back."""

    reason: str
    source: str
    value: bytes


@dataclass(frozen=True, slots=True)
class DlqRecord:
    """A committed record of the dead-letter topic as stored: where it sits, key, value, headers."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, str | bytes | None], ...]

    @property
    def reason(self) -> str:
        """The rejection reason code (``unknown`` when the header is missing)."""
        return header(self.headers, REASON) or "unknown"

    @property
    def detail(self) -> str:
        """The readable detail of the rejection."""
        return header(self.headers, DETAIL) or ""

    @property
    def source(self) -> str:
        """Where the original was read: ``topic:partition:offset``."""
        parts = (SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET)
        return ":".join(header(self.headers, name) or "?" for name in parts)

    @property
    def rejected_at_ms(self) -> int | None:
        """When the daemon rejected it (epoch ms), or None without a readable header."""
        text = header(self.headers, REJECTED_AT)
        return int(text) if text is not None and text.isdigit() else None

    @property
    def is_stub(self) -> bool:
        """True when its key or value stands in for an original too large to keep."""
        return any(name == STUB for name, _ in self.headers)


def scan_dead_letters(
    settings: KafkaSettings, starts: Mapping[int, int] | None = None, idle_s: float = 2.0
) -> Iterator[DlqRecord]:
    """The committed records of the dead-letter topic, in each partition from ``starts``
    (partition -> first offset; default: every partition from its start) to its end, or idle."""
    topic = settings.dlq_topic
    consumer = Consumer(
        {
            **settings.client_config(),
            "group.id": "clickstream-dlq-reader",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        unknown = sorted(set(starts or {}) - set(partitions))
        if unknown:
            raise ConfigError(
                f"{topic} has no partition {unknown[0]} (it has {sorted(partitions)})"
            )
        first = dict(starts) if starts is not None else dict.fromkeys(partitions, 0)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in first
        }
        remaining = {p for p, end in ends.items() if end > first[p]}
        consumer.assign([TopicPartition(topic, p, first[p]) for p in sorted(remaining)])
        idle_since = time.monotonic()
        # Transaction markers take the last offsets, so "the end" is reached when a record at
        # (or past) end - 1 arrives, or, for a partition whose tail was aborted, by idling.
        while remaining and time.monotonic() - idle_since < idle_s:
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            idle_since = time.monotonic()
            partition, offset = message.partition() or 0, message.offset() or 0
            raw = message.headers() or ()
            headers = tuple(raw.items() if isinstance(raw, Mapping) else raw)
            yield DlqRecord(partition, offset, message.key(), message.value(), headers)
            if offset + 1 >= ends[partition] - 1:
                remaining.discard(partition)
    finally:
        consumer.close()


def read_dead_letters(settings: KafkaSettings, idle_s: float = 2.0) -> list[StoredDeadLetter]:
    """Every committed record of the dead-letter topic (read until its end, or idle)."""
    return [
        StoredDeadLetter(
            record.reason,
            f"{header(record.headers, SOURCE_PARTITION)}:{header(record.headers, SOURCE_OFFSET)}",
            record.value or b"",
        )
        for record in scan_dead_letters(settings, idle_s=idle_s)
    ]


def count_dead_letters(settings: KafkaSettings) -> Counter[str]:
    """Committed dead-letter records by reason."""
    return Counter(record.reason for record in read_dead_letters(settings))
