"""LateCutoff: which hours the batch may have done, from the watermark and the schedule."""

from __future__ import annotations

from structlog.testing import capture_logs

from clickstream.times import HOUR_MS, MINUTE_MS
from ingest.late import LateCutoff

TIMEOUT = 30 * MINUTE_MS
NOW_MS = 1_795_334_400_000 + 50 * MINUTE_MS  # 08:50Z


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


class TestLateCutoff:
    def test_the_later_of_watermark_and_schedule(self) -> None:
        """A watermark ahead of the schedule wins; behind it, the schedule's hour does."""
        clock = Clock(NOW_MS)
        ahead = LateCutoff(lambda: NOW_MS - 10 * MINUTE_MS, TIMEOUT, clock=clock)
        assert ahead() == NOW_MS - 10 * MINUTE_MS
        behind = LateCutoff(lambda: NOW_MS - 5 * HOUR_MS, TIMEOUT, clock=clock)
        # now - timeout = 08:20Z, floored to the hour a scheduled run would have finished.
        assert behind() == NOW_MS - 50 * MINUTE_MS

    def test_the_watermark_is_read_once_per_refresh(self) -> None:
        """Every message asks; the store is read only every refresh_s."""
        reads: list[int] = []

        def read() -> int:
            reads.append(1)
            return NOW_MS

        clock = Clock(NOW_MS)
        cutoff = LateCutoff(read, TIMEOUT, refresh_s=30, clock=clock)
        cutoff()
        clock.ms += 29_000
        cutoff()
        assert len(reads) == 1
        clock.ms += 1_000
        cutoff()
        assert len(reads) == 2

    def test_an_unreadable_watermark_keeps_the_last_and_the_schedule_bound(self) -> None:
        """Elasticsearch down: logged, never raised; the last value and the schedule hold."""
        values = iter([NOW_MS, None])

        def read() -> int | None:
            value = next(values)
            if value is None:
                raise ConnectionError("refused")
            return value

        clock = Clock(NOW_MS)
        cutoff = LateCutoff(read, TIMEOUT, refresh_s=1, clock=clock)
        assert cutoff() == NOW_MS
        clock.ms += 2_000
        with capture_logs() as logs:
            assert cutoff() == NOW_MS
        assert [entry["event"] for entry in logs] == ["late.watermark_unreadable"]
