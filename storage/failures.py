"""What a failed HBase write means: worth retrying, or a table that can never take the rows.

Pure. HappyBase raises the Thrift exceptions of ``Hbase.thrift``: ``IOError`` for whatever the
server's Java client threw (its one field, ``message``, starts with the Java exception's class
name and nests the cause's), ``IllegalArgument`` for a request the server refuses as malformed.
Everything else (transport errors, timeouts, refused connections) is an outage.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Final

import happybase  # noqa: F401 - loads the Hbase_thrift module the exception types live in
from Hbase_thrift import IllegalArgument
from Hbase_thrift import IOError as HBaseIOError

from clickstream.errors import Failure

#: Server-side exceptions that no retry can cure: the table or a family of it is not there.
CONFIGURATION_EXCEPTIONS: Final = frozenset(
    {"NoSuchColumnFamilyException", "TableNotFoundException"}
)

# A Java class name as the server writes it: lower-case packages, then the class.
_JAVA_EXCEPTION = re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+([A-Z][A-Za-z0-9_$]*(?:Exception|Error))\b")


def server_exceptions(exc: BaseException) -> tuple[str, ...]:
    """The Java exception classes (simple names) an HBase Thrift ``IOError`` carries, outermost
    first; the server's stack trace is not read. Empty for any other exception."""
    if not isinstance(exc, HBaseIOError):
        return ()
    message = exc.message
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message or "")
    head = text.split("\n\tat ", 1)[0]
    return tuple(match.group(1) for match in _JAVA_EXCEPTION.finditer(head))


def classify_hbase(exc: BaseException) -> Failure:
    """CONFIGURATION when the table cannot take the rows as it is (a missing family or table,
    an argument the server refuses), else RETRIABLE. HBase has no document-level failure here:
    a row's cells are bounded far below HBase's limits by the event contract."""
    if isinstance(exc, IllegalArgument):
        return Failure.CONFIGURATION
    if CONFIGURATION_EXCEPTIONS.intersection(server_exceptions(exc)):
        return Failure.CONFIGURATION
    return Failure.RETRIABLE


def families_of(columns: Iterable[bytes]) -> set[str]:
    """The families of ``family:qualifier`` column names."""
    return {column.split(b":", 1)[0].decode() for column in columns}


def missing_families_message(table: str, missing: Collection[str], present: Collection[str]) -> str:
    """What the operator reads when ``table`` lacks ``missing`` families: the fix, never a guess
    that drops data."""
    wanted = ", ".join(sorted(missing))
    has = ", ".join(sorted(present)) or "none"
    first = sorted(missing)[0]
    return (
        f"HBase table {table} has no column family {wanted} (it has {has}): add it with the "
        f"HBase shell (alter '{table}', {{NAME => '{first}', VERSIONS => 1, BLOOMFILTER => "
        f"'ROW'}}), or drop the table and run `clickstream schema create`"
    )
