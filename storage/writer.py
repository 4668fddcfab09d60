"""Batched, idempotent writes of click rows to the master dataset through happybase.

A failure to write is a RetriableError: the connection is dropped and reopened on the next
attempt, and because row keys are pure functions of the events, writing a batch again (in whole
or in part) leaves the same rows. The exception is a table that cannot take the rows as it is
(a missing column family or table, see storage/failures.py): a SchemaError naming the fix, since
no retry would ever succeed.
"""

from __future__ import annotations

from collections.abc import Sequence

import happybase
import structlog

from clickstream.errors import Failure, RetriableError, SchemaError
from clickstream.settings import HBaseSettings
from storage.connection import connect
from storage.failures import classify_hbase, families_of, missing_families_message

log = structlog.get_logger(__name__)

Row = tuple[bytes, dict[bytes, bytes]]


class HBaseWriter:
    """Writes rows to ``settings.table``; connects lazily, reconnects after a failure."""

    def __init__(self, settings: HBaseSettings) -> None:
        self._settings = settings
        self._connection: happybase.Connection | None = None

    def write(self, rows: Sequence[Row], table_name: str | None = None) -> None:
        """Put every row into ``table_name`` (default: the master dataset), ``batch_size`` at
        a time; RetriableError if any send failed, SchemaError if the table cannot take them."""
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
            name = table_name or self._settings.table
            if classify_hbase(exc) is Failure.CONFIGURATION:
                raise self._schema_error(name, rows, exc) from exc
            # Thrift transport errors, timeouts, refused connections, a region in transition:
            # all are worth retrying, none may lose the batch.
            self.close()
            raise RetriableError(
                f"HBase write to {self._settings.host}:{self._settings.port} failed: "
                f"{type(exc).__name__}: {exc}"[:500]
            ) from exc

    def _schema_error(self, name: str, rows: Sequence[Row], exc: Exception) -> SchemaError:
        """The permanent failure ``exc`` of a write to ``name``, naming the missing families
        (read from the table) when that is what it is."""
        wanted = families_of(column for _, cells in rows for column in cells)
        present: set[str] | None = None
        if self._connection is not None:
            try:
                present = {family.decode() for family in self._connection.table(name).families()}
            except Exception:  # noqa: BLE001 - the description is a courtesy; the error stands
                log.debug("hbase.families_unreadable", table=name)
        self.close()
        if present is not None and wanted - present:
            return SchemaError(missing_families_message(name, wanted - present, present))
        return SchemaError(
            f"HBase table {name} refuses the rows ({type(exc).__name__}: {exc}"[:400]
            + "): check it against `clickstream schema create`"
        )

    def close(self) -> None:
        """Drop the connection (the next write opens a new one)."""
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # noqa: BLE001 - closing a broken transport may fail; it is gone
                log.debug("hbase.close_failed")
            self._connection = None
