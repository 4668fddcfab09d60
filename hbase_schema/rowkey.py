"""Row key: ``salt (1) | event time ms (8, big-endian) | user hash (8) | event hash (4)``.

The key is a pure function of the event, so a replayed message rewrites the same row. The salt is
``user_hash mod buckets``: writes spread over the pre-split regions, all clicks of one user share
a bucket, and a time-range read is one range scan ``[salt|t0, salt|t1)`` per bucket.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

KEY_LENGTH = 21
_LAYOUT = struct.Struct(">BQ8s4s")
MAX_TIMESTAMP_MS = 2**64 - 1


def user_hash(user_id: str) -> bytes:
    """8 stable bytes identifying a user (BLAKE2b: fast, keyless, stable across processes)."""
    return hashlib.blake2b(user_id.encode(), digest_size=8).digest()


def event_hash(event_id: str) -> bytes:
    """4 bytes of the event id: separates events of one user in the same millisecond."""
    return hashlib.blake2b(event_id.encode(), digest_size=4).digest()


def salt_of(user_id: str, buckets: int) -> int:
    """The salt bucket (first key byte) of a user's rows."""
    _check_buckets(buckets)
    return int.from_bytes(user_hash(user_id), "big") % buckets


@dataclass(frozen=True, slots=True)
class RowKey:
    """A decoded row key."""

    salt: int
    timestamp_ms: int
    user_hash: bytes
    event_hash: bytes


def encode_row_key(user_id: str, timestamp_ms: int, event_id: str, buckets: int) -> bytes:
    """The 21-byte row key of one event."""
    if not 0 <= timestamp_ms <= MAX_TIMESTAMP_MS:
        raise ValueError(f"timestamp_ms must be a non-negative 64-bit value, got {timestamp_ms}")
    uhash = user_hash(user_id)
    salt = int.from_bytes(uhash, "big") % _check_buckets(buckets)
    return _LAYOUT.pack(salt, timestamp_ms, uhash, event_hash(event_id))


def decode_row_key(key: bytes) -> RowKey:
    """The parts of a row key; ValueError if it is not 21 bytes."""
    if len(key) != KEY_LENGTH:
        raise ValueError(f"a row key is {KEY_LENGTH} bytes, got {len(key)}: {key!r}")
    salt, timestamp_ms, uhash, ehash = _LAYOUT.unpack(key)
    return RowKey(salt, timestamp_ms, uhash, ehash)


def scan_ranges(t0_ms: int, t1_ms: int, buckets: int) -> list[tuple[bytes, bytes]]:
    """``(row_start, row_stop)`` of each bucket's scan covering event times ``[t0, t1)``."""
    if not 0 <= t0_ms <= t1_ms <= MAX_TIMESTAMP_MS:
        raise ValueError(f"need 0 <= t0 <= t1, got [{t0_ms}, {t1_ms})")
    return [
        (struct.pack(">BQ", salt, t0_ms), struct.pack(">BQ", salt, t1_ms))
        for salt in range(_check_buckets(buckets))
    ]


def split_keys(buckets: int) -> list[bytes]:
    """Region boundaries of the pre-split table: one region per salt bucket."""
    return [bytes([salt]) for salt in range(1, _check_buckets(buckets))]


def _check_buckets(buckets: int) -> int:
    if not 1 <= buckets <= 256:
        raise ValueError(f"salt buckets must be 1..256 (one key byte), got {buckets}")
    return buckets
