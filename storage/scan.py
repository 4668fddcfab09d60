"""Time-range reads of the master dataset: one range scan per salt bucket, never a full scan."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from clickstream.settings import HBaseSettings
from hbase_schema import scan_ranges
from storage.connection import connect


def scan_time_range(
    settings: HBaseSettings,
    t0_ms: int,
    t1_ms: int,
    *,
    columns: Sequence[bytes] | None = None,
    buckets: Sequence[int] | None = None,
    caching: int = 1000,
) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    """Rows with event time in ``[t0, t1)``: ``[salt|t0, salt|t1)`` for each bucket in turn."""
    ranges = scan_ranges(t0_ms, t1_ms, settings.salt_buckets)
    connection = connect(settings)
    try:
        table = connection.table(settings.table)
        for salt in buckets if buckets is not None else range(settings.salt_buckets):
            start, stop = ranges[salt]
            yield from table.scan(
                row_start=start, row_stop=stop, columns=columns, batch_size=caching
            )
    finally:
        connection.close()
