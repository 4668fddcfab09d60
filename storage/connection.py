"""happybase connections built from settings; opened lazily, never at import time."""

from __future__ import annotations

import happybase

from clickstream.settings import HBaseSettings


def connect(settings: HBaseSettings) -> happybase.Connection:
    """An open happybase connection to the Thrift1 server (buffered transport, binary)."""
    connection = happybase.Connection(
        settings.host,
        settings.port,
        timeout=settings.timeout_ms,
        table_prefix=settings.namespace_prefix or None,
        autoconnect=False,
    )
    connection.open()
    return connection
