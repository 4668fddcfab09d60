"""The late-event ledger's keys: how many distinct events wait behind the boundary."""

from __future__ import annotations

from clickstream.times import HOUR_MS, MINUTE_MS
from hbase_schema import encode_row_key
from hbase_schema.late import late_keys, waiting_events

TIMEOUT = 30 * MINUTE_MS
BOUNDARY = 1_795_334_400_000  # 2026-11-22T08:00Z


def keys_of(user: str, timestamp_ms: int) -> list[bytes]:
    return late_keys(encode_row_key(user, timestamp_ms, f"e-{user}", 16), timestamp_ms, TIMEOUT)


class TestWaitingEvents:
    def test_counts_each_event_once_whatever_the_hours_it_touches(self) -> None:
        """An event at 05:10 has keys for 05:00 and 04:00: one event waiting."""
        keys = keys_of("a", BOUNDARY - 3 * HOUR_MS + 10 * MINUTE_MS)
        assert len(keys) == 2
        assert waiting_events(keys, BOUNDARY) == 1

    def test_keys_at_or_past_the_boundary_are_not_waiting(self) -> None:
        """The speed layer answers hours from the boundary on: only earlier keys wait; an event
        at 08:10 whose earlier hour (07:00) is behind the boundary still waits for it."""
        behind = keys_of("a", BOUNDARY - 2 * HOUR_MS)
        straddling = keys_of("b", BOUNDARY + 10 * MINUTE_MS)
        ahead = keys_of("c", BOUNDARY + 2 * HOUR_MS)
        assert waiting_events(behind + straddling + ahead, BOUNDARY) == 2

    def test_before_the_first_run_nothing_waits(self) -> None:
        """No boundary: every answer comes from the speed layer."""
        assert waiting_events(keys_of("a", BOUNDARY - 2 * HOUR_MS), None) == 0
