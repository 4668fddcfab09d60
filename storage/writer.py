"""Batched, idempotent writes of click rows to the master dataset through happybase.

Any failure to write is a RetriableError: the connection is dropped and reopened on the next
attempt, and because row keys are pure functions of the events, writing a batch again (in whole
or in part) leaves the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import happybase
import structlog

from clickstream.errors import RetriableError
from clickstream.settings import HBaseSettings
from storage.connection import connect

log = structlog.get_logger(__name__)

Row = tuple[bytes, dict[bytes, bytes]]


class HBaseWriter:
    """Writes rows to ``settings.table``; connects lazily, reconnects after a failure."""

    def __init__(self, settings: HBaseSettings) -> None:
        self._settings = settings
        self._connection: happybase.Connection | None = None

    def write(self, rows: Sequence[Row], table_name: str | None = None) -> None:
        """Put every row into ``table_name`` (default: the master dataset), ``batch_size`` at
        a time; RetriableError if any send failed."""
        if not rows:
            return
        try:
            if self._connection is None:
                self._connection = connect(self._settings)
            table = self._connection.table(table_name or self._settings.table)
            with table.batch(batch_size=self._settings.batch_size) as batch:
                for key, cells in rows:
                    batch.put(key, cells)
        except Exception as exc:
            # Thrift transport errors, timeouts, refused connections, a region in transition,
            # a missing table: all are worth retrying, none may lose the batch.
            self.close()
            hint = ""
            if "TableNotFound" in repr(exc):
                name = table_name or self._settings.table
                hint = f" (no table {name}: run `clickstream schema create`)"
            raise RetriableError(
                f"HBase write to {self._settings.host}:{self._settings.port} failed: "
                f"{type(exc).__name__}: {exc}{hint}"[:500]
            ) from exc

    def close(self) -> None:
        """Drop the connection (the next write opens a new one)."""
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # noqa: BLE001 - closing a broken transport may fail; it is gone
                log.debug("hbase.close_failed")
            self._connection = None
