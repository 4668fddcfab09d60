"""`clickstream batch-status`, its pure part: what it prints and when it exits 3."""

from __future__ import annotations

import pytest

from clickstream.times import HOUR_MS, MINUTE_MS, parse_ms
from commands.batch_status import BatchStatus, as_dict, default_max_lag_ms, exit_code, render
from commands.cli import build_parser
from indexing.lock import Lease
from indexing.state import Watermark

TIMEOUT = 30 * MINUTE_MS
NOW = parse_ms("2026-11-22T10:40Z")
BOUNDARY = parse_ms("2026-11-22T10:00Z")
LIMIT = default_max_lag_ms(TIMEOUT)


def status(
    boundary: int | None = BOUNDARY,
    watermark: int | None = BOUNDARY,
    lock: Lease | None = None,
    late: int | None = 0,
    late_error: str | None = None,
) -> BatchStatus:
    last = None if watermark is None else (watermark - 3 * HOUR_MS, watermark)
    updated = None if watermark is None else NOW - 5 * MINUTE_MS
    return BatchStatus(
        now_ms=NOW,
        watermark=Watermark(watermark, last, updated),
        boundary_ms=boundary,
        lock=lock,
        late_waiting=late,
        late_error=late_error,
    )


def lines(text: str) -> dict[str, str]:
    """The report's lines by label."""
    return {line[:14].strip(): line[14:] for line in text.splitlines()}


class TestLimit:
    def test_default_is_two_hours_plus_the_session_timeout(self) -> None:
        """A healthy hourly timer keeps the lag under timeout + 1 h; an hour of slack on top."""
        assert default_max_lag_ms(TIMEOUT) == 2 * HOUR_MS + TIMEOUT


class TestExitCode:
    def test_a_boundary_within_the_limit_is_healthy(self) -> None:
        """40 min behind, 2 h 30 m allowed: exit 0."""
        assert exit_code(status(), LIMIT) == 0

    def test_a_boundary_exactly_at_the_limit_is_still_healthy(self) -> None:
        """The limit is the most lag allowed, itself included."""
        assert exit_code(status(boundary=NOW - LIMIT), LIMIT) == 0

    def test_a_boundary_past_the_limit_exits_3(self) -> None:
        """One millisecond more: lagging."""
        assert exit_code(status(boundary=NOW - LIMIT - 1), LIMIT) == 3

    def test_no_boundary_yet_exits_3(self) -> None:
        """Before the first batch run nothing is exact: not healthy."""
        assert exit_code(status(boundary=None, watermark=None), LIMIT) == 3


class TestRender:
    def test_shows_the_last_run_its_range_and_when(self) -> None:
        """The watermark document's last range and update time, with its age."""
        shown = lines(render(status(), LIMIT))
        assert shown["last run"] == (
            "[2026-11-22T07:00:00Z, 2026-11-22T10:00:00Z) at 2026-11-22T10:35:00Z (5m ago)"
        )
        assert shown["watermark"] == "2026-11-22T10:00:00Z"

    def test_shows_the_boundary_lag_and_the_limit(self) -> None:
        """Lag behind now, and the limit it is held to."""
        shown = lines(render(status(), LIMIT))
        assert shown["boundary"] == "2026-11-22T10:00:00Z, 40m behind now (limit 2h 30m)"
        assert shown["status"] == "ok"

    def test_a_lagging_boundary_says_so_on_the_last_line(self) -> None:
        """The verdict names the lag and the limit."""
        late = NOW - 5 * HOUR_MS - 10 * MINUTE_MS
        text = render(status(boundary=late, watermark=late), LIMIT)
        assert text.splitlines()[-1] == (
            "status        LAGGING: the boundary is 5h 10m behind now, more than 2h 30m"
        )

    def test_before_the_first_run_says_there_is_no_batch_run_yet(self) -> None:
        """No watermark and no boundary: the report says what to do."""
        shown = lines(render(status(boundary=None, watermark=None), LIMIT))
        assert shown["last run"] == "none: no batch run yet"
        assert shown["boundary"] == "none"
        assert shown["status"].startswith("NO BATCH RUN YET")
        assert "clickstream batch --from" in shown["status"]

    def test_a_boundary_behind_the_watermark_is_pointed_out(self) -> None:
        """A run that advanced the watermark but stopped before moving the boundary."""
        shown = lines(render(status(boundary=BOUNDARY - HOUR_MS), LIMIT))
        assert "behind the watermark" in shown["boundary"]

    def test_a_free_lock(self) -> None:
        """No run holds it."""
        assert lines(render(status(), LIMIT))["lock"] == "free"

    def test_a_held_lock_names_the_holder_and_the_expiry(self) -> None:
        """Who runs, since when, until when."""
        lease = Lease("host:42:ab", NOW - 10 * MINUTE_MS, NOW + 50 * MINUTE_MS)
        assert lines(render(status(lock=lease), LIMIT))["lock"] == (
            "held by host:42:ab since 2026-11-22T10:30:00Z, expires 2026-11-22T11:30:00Z (in 50m)"
        )

    def test_an_expired_lock_is_flagged(self) -> None:
        """A crashed run's lock: the next run takes it over."""
        lease = Lease("host:42:ab", NOW - 2 * HOUR_MS, NOW - HOUR_MS)
        shown = lines(render(status(lock=lease), LIMIT))["lock"]
        assert shown.startswith("EXPIRED at 2026-11-22T09:40:00Z")
        assert "host:42:ab" in shown
        assert "next run takes it over" in shown

    def test_late_events_waiting_or_why_unknown(self) -> None:
        """The ledger's distinct events behind the boundary, or the error reading it."""
        assert lines(render(status(late=7), LIMIT))["late events"] == (
            "7 waiting for the next batch run"
        )
        unknown = lines(render(status(late=None, late_error="thrift down"), LIMIT))
        assert unknown["late events"] == "unknown: thrift down"


class TestJson:
    def test_the_facts_as_plain_data(self) -> None:
        """--json: the same facts, for monitoring and for scripts such as `make run`."""
        data = as_dict(status(late=4), LIMIT)
        assert data["watermark"] == data["boundary"] == "2026-11-22T10:00:00Z"
        assert data["last_range"] == ["2026-11-22T07:00:00Z", "2026-11-22T10:00:00Z"]
        assert data["boundary_lag_ms"] == 40 * MINUTE_MS
        assert (data["lock"], data["late_events_waiting"], data["status"]) == (None, 4, "ok")

    def test_lagging_and_never_run(self) -> None:
        """The verdict matches the exit code."""
        assert as_dict(status(boundary=NOW - LIMIT - 1), LIMIT)["status"] == "lagging"
        never = as_dict(status(boundary=None, watermark=None), LIMIT)
        assert (never["status"], never["watermark"], never["boundary"]) == ("never_run", None, None)


class TestCommand:
    def test_max_lag_minutes_is_an_option_defaulting_to_the_computed_limit(self) -> None:
        """`--max-lag-minutes` parses to minutes; absent, the handler uses the default."""
        parsed = build_parser().parse_args(["batch-status", "--max-lag-minutes", "90"])
        assert parsed.max_lag_minutes == 90
        assert build_parser().parse_args(["batch-status"]).max_lag_minutes is None

    def test_help_describes_the_exit_code(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`--help` says when it exits 3."""
        with pytest.raises(SystemExit):
            build_parser().parse_args(["batch-status", "--help"])
        assert "exit 3" in capsys.readouterr().out
