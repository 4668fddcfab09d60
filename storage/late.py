"""The late-event ledger in HBase (layout in hbase_schema/late.py): mark, snapshot, clear."""

from __future__ import annotations

from collections.abc import Sequence

from clickstream.errors import SchemaError
from clickstream.settings import HBaseSettings
from hbase_schema.late import LATE_COLUMN, LATE_FAMILY, late_table
from storage.connection import connect


def ensure_late_table(settings: HBaseSettings) -> bool:
    """Create the ledger table if absent (one version, row bloom); True if created."""
    connection = connect(settings)
    try:
        name = late_table(settings.table)
        if name.encode() in connection.tables():
            return False
        connection.create_table(
            name,
            {
                LATE_FAMILY: {
                    "max_versions": 1,
                    "bloom_filter_type": "ROW",
                    "block_cache_enabled": True,
                }
            },
        )
        return True
    finally:
        connection.close()


def snapshot(settings: HBaseSettings) -> list[bytes]:
    """Every ledger key now (the ledger is small: one row per late event and hour)."""
    connection = connect(settings)
    try:
        table = connection.table(late_table(settings.table))
        return [key for key, _ in table.scan(filter=b"KeyOnlyFilter()", batch_size=5000)]
    except Exception as exc:
        if "TableNotFoundException" in repr(exc):
            raise SchemaError(
                f"no late-event table {late_table(settings.table)}: run `clickstream schema "
                "create` (it adds the table to a deployment made before it existed)"
            ) from None
        raise
    finally:
        connection.close()


def clear(settings: HBaseSettings, keys: Sequence[bytes]) -> None:
    """Delete exactly these keys (those a batch run snapshotted before it read HBase)."""
    connection = connect(settings)
    try:
        with connection.table(late_table(settings.table)).batch(batch_size=1000) as batch:
            for key in keys:
                batch.delete(key, columns=[LATE_COLUMN])
    finally:
        connection.close()
