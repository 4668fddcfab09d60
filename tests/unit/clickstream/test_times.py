"""The one time module: units, the ISO-8601 rule (a UTC offset is required), exact ms."""

from __future__ import annotations

import pytest

from clickstream.times import (
    HOUR_MS,
    NotIsoTimeError,
    NoUtcOffsetError,
    hour_floor,
    iso,
    parse_ms,
)


class TestParse:
    @pytest.mark.parametrize(
        ("text", "ms"),
        [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-11-22T10:00:00+02:00", 1_795_334_400_000),
            ("2026-11-22T08:00:00.0015Z", 1_795_334_400_001),
        ],
    )
    def test_times_with_an_offset_read_exactly(self, text: str, ms: int) -> None:
        """Offsets are honoured; sub-millisecond digits are floored, never rounded up."""
        assert parse_ms(text) == ms

    def test_a_time_without_an_offset_is_refused(self) -> None:
        """Never read as the machine's local time (processing/main.py once did)."""
        with pytest.raises(NoUtcOffsetError, match="no UTC offset"):
            parse_ms("2026-11-22T10:00:00")

    def test_text_that_is_no_time_is_refused(self) -> None:
        """Its own error type, so callers can say which rule failed."""
        with pytest.raises(NotIsoTimeError, match="not an ISO-8601 time"):
            parse_ms("yesterday")


class TestFormat:
    def test_iso_round_trips_with_milliseconds_only_when_present(self) -> None:
        """Whole seconds print without a fraction; milliseconds keep three digits."""
        assert iso(1_795_334_400_000) == "2026-11-22T08:00:00Z"
        assert iso(1_795_334_400_007) == "2026-11-22T08:00:00.007Z"
        assert parse_ms(iso(1_795_334_400_007)) == 1_795_334_400_007

    def test_hour_floor(self) -> None:
        """The start of the UTC hour."""
        assert hour_floor(HOUR_MS * 5 + 59_999) == HOUR_MS * 5
