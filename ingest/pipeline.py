"""One consumed batch turned into HBase rows and dead-letter records: the pure middle of ingest.

No I/O: the consumer loop hands in messages and gets back what to write and which offsets the
batch covers. Every message ends as exactly one row or one dead-letter record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from clickstream.model import ClickEvent, EnrichedClick, Reason, Rejection, Source
from hbase_schema.late import LATE_COLUMN, late_keys
from hbase_schema.rows import to_row
from ingest.dlq import DeadLetter, dead_letter
from ingest.validate import Limits, parse_click
from speed.state import SpeedClick

Row = tuple[bytes, dict[bytes, bytes]]


class Enriches(Protocol):
    """What the pipeline needs of an enricher."""

    def enrich(self, event: ClickEvent) -> EnrichedClick:
        """The event with geo, agent and normalised URL."""
        ...


@dataclass(frozen=True, slots=True)
class Incoming:
    """A consumed Kafka message, reduced to what the pipeline reads."""

    key: bytes | None
    value: bytes | None
    source: Source


@dataclass(slots=True)
class ProcessedBatch:
    """What one batch produces: rows to put, records to dead-letter, offsets to commit."""

    rows: dict[bytes, dict[bytes, bytes]] = field(default_factory=dict)
    #: Ledger rows of events for hours the batch layer may already have processed.
    late: dict[bytes, dict[bytes, bytes]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    clicks: list[EnrichedClick] = field(default_factory=list)
    #: Row key and source of each entry of ``clicks`` (same order): what the speed layer folds.
    keys: list[tuple[bytes, Source]] = field(default_factory=list)
    #: (topic, partition) -> the next offset to consume, i.e. last processed + 1.
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    messages: int = 0


def process(
    messages: Sequence[Incoming],
    enricher: Enriches,
    limits: Limits,
    buckets: int,
    now_ms: int,
    *,
    late_before_ms: int | None = None,
    session_timeout_ms: int,
) -> ProcessedBatch:
    """Validate, enrich and encode every message; bad ones become dead-letter records.

    An event touching an hour before ``late_before_ms`` is also put in the late ledger.
    """
    batch = ProcessedBatch()
    for message in messages:
        source = message.source
        batch.messages += 1
        position = (source.topic, source.partition)
        batch.next_offsets[position] = max(batch.next_offsets.get(position, 0), source.offset + 1)
        parsed = parse_click(message.value, now_ms, limits)
        if isinstance(parsed, ClickEvent):
            try:
                click = enricher.enrich(parsed)
                key, cells = to_row(click, buckets, source)
            except Exception as exc:  # noqa: BLE001 - a bug for one event must not stop the rest
                parsed = Rejection(Reason.ENRICHMENT_FAILED, f"{type(exc).__name__}: {exc}"[:200])
            else:
                # A duplicate inside one batch maps to the same key: one put is enough.
                batch.rows[key] = cells
                batch.clicks.append(click)
                batch.keys.append((key, source))
                ts = click.event.timestamp_ms
                if late_before_ms is not None and ts - session_timeout_ms < late_before_ms:
                    for late_key in late_keys(key, ts, session_timeout_ms):
                        if int.from_bytes(late_key[:8], "big") < late_before_ms:
                            batch.late[late_key] = {LATE_COLUMN: b""}
                continue
        batch.rejected[parsed.reason.value] += 1
        batch.dead_letters.append(dead_letter(message.key, message.value, parsed, source, now_ms))
    return batch


def speed_clicks(batch: ProcessedBatch) -> list[SpeedClick]:
    """The batch's stored clicks as the speed layer folds them (consumption order)."""
    return [
        SpeedClick(
            partition=source.partition,
            offset=source.offset,
            user_id=click.event.user_id,
            ts=click.event.timestamp_ms,
            event_id=click.event.event_id,
            url=click.url_normalized,
            country=click.geo.country,
            is_bot=click.agent.is_bot,
            bot_rule=click.agent.bot_rule,
        )
        for click, (_, source) in zip(batch.clicks, batch.keys, strict=True)
    ]
