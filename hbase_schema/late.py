"""The late-event ledger: processed hours that got new events, for the batch to recompute.

Table ``<table>_late``, family ``late``; row key ``hour start ms (8, big-endian) | event row key``
for every hour the event touches: its own hour and the hour of ``ts - session timeout`` (the
previous click of that user, whose time spent the event may change). Puts are idempotent (a
replay writes the same keys) and the number of rows is the number of late events waiting.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

from clickstream.times import hour_floor

LATE_FAMILY: Final = "late"
LATE_COLUMN: Final = b"late:e"


def late_table(table: str) -> str:
    """The ledger table of the master dataset ``table``."""
    return f"{table}_late"


def late_keys(event_key: bytes, timestamp_ms: int, session_timeout_ms: int) -> list[bytes]:
    """Ledger keys of one late event: one per hour whose views it changes."""
    hours = {
        hour_floor(timestamp_ms),
        hour_floor(max(0, timestamp_ms - session_timeout_ms)),
    }
    return [struct.pack(">Q", hour) + event_key for hour in sorted(hours)]


def hour_of(late_key: bytes) -> int:
    """The hour (start, epoch ms) a ledger key marks."""
    (hour,) = struct.unpack(">Q", late_key[:8])
    return int(hour)


def closed_until_ms(now_ms: int, session_timeout_ms: int) -> int:
    """The end of the last hour whose sessions are closed: a click up to one session timeout
    later can still change an hour's time spent, so a batch run ends here at the latest, and
    ingest treats the hours before it as possibly batch-processed already."""
    return hour_floor(now_ms - session_timeout_ms)


def waiting_events(keys: Iterable[bytes], boundary_ms: int | None) -> int:
    """Distinct late events the batch views behind the boundary do not hold yet: distinct event
    keys (after the 8-byte hour) among the keys of hours before the boundary. Hours at or past
    it are the speed layer's, and before the first run (no boundary) nothing waits."""
    if boundary_ms is None:
        return 0
    return len({key[8:] for key in keys if hour_of(key) < boundary_ms})
