"""The batch run's range rules, pure: no gap past the watermark, no hour whose sessions are open."""

from __future__ import annotations

import pytest

from clickstream.errors import ConfigError
from clickstream.times import MINUTE_MS, parse_ms
from hbase_schema.late import closed_until_ms
from processing.job import check_gap, resolve_range

TIMEOUT = 30 * MINUTE_MS
WATERMARK = parse_ms("2026-11-22T06:00Z")
NOW = parse_ms("2026-11-22T10:40Z")  # sessions are closed up to 10:10, so hours up to 10:00
LATEST = parse_ms("2026-11-22T10:00Z")


def resolve(
    since: str | None, until: str | None, watermark: int | None = WATERMARK, now: int = NOW
) -> tuple[int, int]:
    return resolve_range(
        None if since is None else parse_ms(since),
        None if until is None else parse_ms(until),
        watermark_ms=watermark,
        now_ms=now,
        session_timeout_ms=TIMEOUT,
    )


class TestLatestEnd:
    def test_is_the_hour_holding_now_minus_the_session_timeout(self) -> None:
        """Sessions of an hour can change until one timeout after its end."""
        assert closed_until_ms(NOW, TIMEOUT) == LATEST

    def test_moves_exactly_one_timeout_after_the_hour_ends(self) -> None:
        """At 10:30 the 09:00 hour's sessions are closed; a millisecond earlier they are not."""
        assert closed_until_ms(parse_ms("2026-11-22T10:30Z"), TIMEOUT) == LATEST
        assert closed_until_ms(parse_ms("2026-11-22T10:29:59.999Z"), TIMEOUT) == parse_ms(
            "2026-11-22T09:00Z"
        )


class TestDefaultRange:
    def test_runs_from_the_watermark_to_the_latest_end(self) -> None:
        """No range given: every closed hour since the watermark."""
        assert resolve(None, None) == (WATERMARK, LATEST)

    def test_is_empty_when_the_watermark_is_at_the_latest_end(self) -> None:
        """Nothing to do yet: the range is empty, never backwards."""
        assert resolve(None, None, watermark=LATEST) == (LATEST, LATEST)
        ahead = LATEST + 2 * 60 * MINUTE_MS
        assert resolve(None, None, watermark=ahead) == (ahead, ahead)

    def test_before_the_first_run_a_range_is_required(self) -> None:
        """No watermark, no range: the error says to give --from/--to."""
        with pytest.raises(ConfigError, match="--from/--to"):
            resolve(None, None, watermark=None)


class TestGap:
    def test_a_start_past_the_watermark_is_refused_naming_it_and_the_fix(self) -> None:
        """Starting after the watermark would leave hours the boundary then hides."""
        with pytest.raises(ConfigError) as caught:
            resolve("2026-11-22T08:00Z", "2026-11-22T09:00Z")
        message = str(caught.value)
        assert "watermark 2026-11-22T06:00:00Z" in message
        assert "[2026-11-22T06:00:00Z, 2026-11-22T08:00:00Z)" in message
        assert "--from 2026-11-22T06:00:00Z" in message

    def test_a_start_at_the_watermark_is_accepted(self) -> None:
        """The next run continues exactly where the last one ended."""
        assert resolve("2026-11-22T06:00Z", "2026-11-22T09:00Z") == (
            WATERMARK,
            parse_ms("2026-11-22T09:00Z"),
        )

    def test_a_start_before_the_watermark_is_a_rerun_and_accepted(self) -> None:
        """Re-running processed hours is idempotent: no gap, nothing refused."""
        assert resolve("2026-11-22T01:00Z", "2026-11-22T03:00Z") == (
            parse_ms("2026-11-22T01:00Z"),
            parse_ms("2026-11-22T03:00Z"),
        )

    def test_before_the_first_run_any_start_is_accepted(self) -> None:
        """No watermark yet: the first range is the operator's choice."""
        assert resolve("2026-11-20T00:00Z", "2026-11-21T00:00Z", watermark=None) == (
            parse_ms("2026-11-20T00:00Z"),
            parse_ms("2026-11-21T00:00Z"),
        )

    def test_check_gap_alone_follows_the_same_rule(self) -> None:
        """What run_batch checks under the lock: past the watermark refused, else accepted."""
        check_gap(WATERMARK, WATERMARK)
        check_gap(WATERMARK - 60 * MINUTE_MS, WATERMARK)
        check_gap(WATERMARK + 60 * MINUTE_MS, None)
        with pytest.raises(ConfigError, match="past the watermark"):
            check_gap(WATERMARK + 60 * MINUTE_MS, WATERMARK)


class TestOpenSessions:
    def test_an_end_past_the_latest_end_is_refused_naming_the_latest_allowed_hour(self) -> None:
        """Hours whose sessions can still change are not processed."""
        with pytest.raises(ConfigError) as caught:
            resolve("2026-11-22T06:00Z", "2026-11-22T11:00Z")
        message = str(caught.value)
        assert "--to 2026-11-22T11:00:00Z" in message
        assert "latest allowed end is 2026-11-22T10:00:00Z" in message
        assert "30 min" in message

    def test_an_end_at_the_latest_end_is_accepted(self) -> None:
        """The last closed hour is the last one a run may include."""
        assert resolve("2026-11-22T06:00Z", "2026-11-22T10:00Z") == (WATERMARK, LATEST)

    def test_applies_before_the_first_run_too(self) -> None:
        """No watermark does not make open hours closed."""
        with pytest.raises(ConfigError, match="latest allowed end"):
            resolve("2026-11-22T06:00Z", "2026-11-22T11:00Z", watermark=None)
