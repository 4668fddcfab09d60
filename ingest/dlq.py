"""Dead-letter records: the original bytes unchanged, the reason and the source in headers."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.model import Rejection, Source

# Header names, stable for anyone who reads the dead-letter topic.
REASON = "clickstream.reason"
DETAIL = "clickstream.detail"
FIELD = "clickstream.field"
SOURCE_TOPIC = "clickstream.source.topic"
SOURCE_PARTITION = "clickstream.source.partition"
SOURCE_OFFSET = "clickstream.source.offset"
REJECTED_AT = "clickstream.rejected_at_ms"


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
    return DeadLetter(key, value, headers)


def header(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    """The value of header ``name`` as text, or None."""
    for key, value in headers or []:
        if key == name:
            return value.decode(errors="replace")
    return None
