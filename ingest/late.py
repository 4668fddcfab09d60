"""Which events are late: those for hours the batch layer may already have turned into views."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from clickstream.settings import ElasticsearchSettings
from hbase_schema.late import closed_until_ms
from indexing.client import connect
from indexing.state import read_watermark

log = structlog.get_logger(__name__)


class LateCutoff:
    """Hours before the returned instant may be in the batch views: the later of the stored
    watermark (re-read every ``refresh_s`` through ``read``) and the last hour a scheduled run
    would have done.

    Erring early is harmless (an hour is recomputed for nothing); missing a processed hour is
    not, hence the schedule bound when the watermark cannot be read.
    """

    def __init__(
        self,
        read: Callable[[], int | None],
        session_timeout_ms: int,
        refresh_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._read = read
        self._timeout_ms = session_timeout_ms
        self._refresh_s = refresh_s
        self._clock = clock
        self._watermark: int | None = None
        self._read_at = float("-inf")

    def __call__(self) -> int:
        """The cutoff, epoch ms."""
        now = self._clock()
        if now - self._read_at >= self._refresh_s:
            self._read_at = now
            try:
                self._watermark = self._read()
            except Exception as exc:  # noqa: BLE001 - keep the last value; the bound still holds
                log.warning("late.watermark_unreadable", error=str(exc)[:200])
        scheduled = closed_until_ms(int(now * 1000), self._timeout_ms)
        return max(scheduled, self._watermark or 0)


def watermark_reader(settings: ElasticsearchSettings) -> Callable[[], int | None]:
    """Reads the batch watermark from Elasticsearch (a client per read: it happens rarely)."""

    def read() -> int | None:
        client = connect(settings)
        try:
            return read_watermark(client, settings.index_prefix).completed_until_ms
        finally:
            client.close()

    return read
