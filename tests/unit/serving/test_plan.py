"""The planner: the coarsest documents that answer a query, tiled across the boundary."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickstream.times import DAY_MS, HOUR_MS, MINUTE_MS
from indexing.views import LEVEL_ALL, LEVEL_COUNTRY, LEVEL_URL, LEVEL_URL_COUNTRY
from serving.params import MetricsQuery
from serving.plan import Plan, level_of, plan

D = 1_795_305_600_000  # 2026-11-22T00:00:00Z


class TestLevel:
    @pytest.mark.parametrize(
        ("filters", "level"),
        [
            ({}, LEVEL_ALL),
            ({"group_by": ("country",)}, LEVEL_COUNTRY),
            ({"country": "DE"}, LEVEL_COUNTRY),
            ({"group_by": ("url",)}, LEVEL_URL),
            ({"url_prefix": "https://a/"}, LEVEL_URL),
            ({"group_by": ("url",), "country": "DE"}, LEVEL_URL_COUNTRY),
            ({"url_prefix": "https://a/", "group_by": ("country",)}, LEVEL_URL_COUNTRY),
        ],
    )
    def test_the_level_keeps_exactly_the_keys_filtered_or_grouped_by(
        self, filters: dict[str, object], level: str
    ) -> None:
        """No key the query needs is rolled up, and none it does not need is kept."""
        assert level_of(MetricsQuery(D, D + HOUR_MS, **filters)) == level  # type: ignore[arg-type]


class TestTiling:
    def test_thirty_days_behind_the_boundary_are_days_with_hour_edges(self) -> None:
        """Whole days read day rollups; the hours before the first midnight and after the last
        read hours; the speed part starts at the boundary, its minutes after its last hour."""
        query = MetricsQuery(D - 5 * HOUR_MS, D + 30 * DAY_MS + 90 * MINUTE_MS)
        boundary = D + 30 * DAY_MS
        assert plan(query, boundary) == Plan(
            LEVEL_ALL,
            hours=((D - 5 * HOUR_MS, D),),
            days=((D, D + 30 * DAY_MS),),
            speed_hours=((boundary, boundary + HOUR_MS),),
            speed_minutes=((boundary + HOUR_MS, boundary + 90 * MINUTE_MS),),
        )

    def test_an_hour_counts_when_it_starts_in_the_range(self) -> None:
        """A range starting mid-hour skips that hour; one ending mid-hour keeps it."""
        query = MetricsQuery(D + 30 * MINUTE_MS, D + 2 * HOUR_MS + 30 * MINUTE_MS)
        assert plan(query, D + DAY_MS).hours == ((D + HOUR_MS, D + 3 * HOUR_MS),)

    def test_no_batch_run_yet_is_all_speed(self) -> None:
        """Before the first batch run the speed layer holds everything."""
        query = MetricsQuery(D, D + 3 * DAY_MS)
        assert plan(query, None) == Plan(LEVEL_ALL, speed_hours=((D, D + 3 * DAY_MS),))

    def test_a_range_after_the_boundary_is_speed_only(self) -> None:
        """Nothing behind the boundary: no batch part."""
        query = MetricsQuery(D + 2 * HOUR_MS, D + 3 * HOUR_MS)
        assert plan(query, D + HOUR_MS) == Plan(
            LEVEL_ALL, speed_hours=((D + 2 * HOUR_MS, D + 3 * HOUR_MS),)
        )

    def test_a_range_before_the_boundary_has_no_speed_part(self) -> None:
        """One whole day behind the boundary: one day rollup per group, nothing else."""
        query = MetricsQuery(D, D + DAY_MS, group_by=("url",))
        assert plan(query, D + 2 * DAY_MS) == Plan(LEVEL_URL, days=((D, D + DAY_MS),))

    def test_less_than_a_quarter_day_is_hours(self) -> None:
        """No whole quarter day inside: hours only."""
        query = MetricsQuery(D + HOUR_MS, D + 5 * HOUR_MS)
        assert plan(query, D + DAY_MS) == Plan(LEVEL_ALL, hours=((D + HOUR_MS, D + 5 * HOUR_MS),))

    def test_a_range_across_midnight_reads_quarter_days_between_hours(self) -> None:
        """No whole day inside (03:00 to 20:00 the next day): the quarter days between, the
        hours at both ends, across the midnight."""
        query = MetricsQuery(D + 3 * HOUR_MS, D + DAY_MS + 20 * HOUR_MS)
        assert plan(query, D + 2 * DAY_MS) == Plan(
            LEVEL_ALL,
            hours=((D + 3 * HOUR_MS, D + 6 * HOUR_MS), (D + 42 * HOUR_MS, D + 44 * HOUR_MS)),
            quarters=((D + 6 * HOUR_MS, D + 42 * HOUR_MS),),
        )

    @given(
        start=st.integers(0, 40 * DAY_MS),
        length=st.integers(1, 40 * DAY_MS),
        behind=st.integers(0, 3 * DAY_MS),
    )
    def test_batch_tiles_cover_each_hour_once_at_the_coarsest_grain(
        self, start: int, length: int, behind: int
    ) -> None:
        """Any range behind the boundary: every hour starting in it is in exactly one tile,
        each tile is whole buckets of its grain, and at most 5 hours and 3 quarter days lie
        on each side of the days."""
        query = MetricsQuery(D + start, D + start + length)
        found = plan(query, query.to_ms + behind)
        covered: list[int] = []
        grains = ((found.hours, HOUR_MS), (found.quarters, 6 * HOUR_MS), (found.days, DAY_MS))
        for spans, size in grains:
            for lo, hi in spans:
                assert (lo % size, hi % size) == (0, 0)
                assert lo < hi
                covered.extend(range(lo, hi, HOUR_MS))
        first = -(-query.from_ms // HOUR_MS) * HOUR_MS
        assert sorted(covered) == list(range(first, query.to_ms, HOUR_MS))
        assert len(covered) == len(set(covered))
        assert sum((hi - lo) // HOUR_MS for lo, hi in found.hours) <= 10
        assert sum((hi - lo) // (6 * HOUR_MS) for lo, hi in found.quarters) <= 6


class TestSpeedTiling:
    B = D + 10 * HOUR_MS  # the boundary

    def test_the_last_minutes_are_minutes(self) -> None:
        """Last 5 minutes, mid-hour: five minute rollups (per partition), no hour."""
        now = self.B + 2 * HOUR_MS + 17 * MINUTE_MS + 12_345
        found = plan(MetricsQuery(now - 5 * MINUTE_MS, now), self.B)
        first = self.B + 2 * HOUR_MS + 13 * MINUTE_MS  # the first minute starting in the range
        assert found == Plan(LEVEL_ALL, speed_minutes=((first, first + 5 * MINUTE_MS),))

    def test_whole_hours_between_minute_edges(self) -> None:
        """From mid-hour to mid-hour: minutes, then whole hours, then minutes."""
        start, end = self.B + 20 * MINUTE_MS, self.B + 3 * HOUR_MS + 7 * MINUTE_MS
        assert plan(MetricsQuery(start, end), self.B) == Plan(
            LEVEL_ALL,
            speed_hours=((self.B + HOUR_MS, self.B + 3 * HOUR_MS),),
            speed_minutes=((start, self.B + HOUR_MS), (self.B + 3 * HOUR_MS, end)),
        )

    def test_a_minute_counts_when_it_starts_in_the_range(self) -> None:
        """A range starting mid-minute skips that minute; one ending mid-minute keeps it."""
        start, end = self.B + 30_000, self.B + 2 * MINUTE_MS + 1
        assert plan(MetricsQuery(start, end), self.B).speed_minutes == (
            (self.B + MINUTE_MS, self.B + 3 * MINUTE_MS),
        )

    def test_thirty_days_reaching_now(self) -> None:
        """The everyday question: days, edge quarter days and hours, speed hours and the
        current hour's minutes; at most 31 + 6 + 10 + 60 buckets however long the range."""
        now = self.B + HOUR_MS + 42 * MINUTE_MS
        found = plan(MetricsQuery(now - 30 * DAY_MS, now, group_by=("url",)), self.B)
        assert found.level == LEVEL_URL
        assert found.days == ((D - 29 * DAY_MS, D),)
        assert found.quarters == (
            (D - 29 * DAY_MS - 12 * HOUR_MS, D - 29 * DAY_MS),
            (D, D + 6 * HOUR_MS),
        )
        assert found.hours == ((D + 6 * HOUR_MS, self.B),)
        assert found.speed_hours == ((self.B, self.B + HOUR_MS),)
        assert found.speed_minutes == ((self.B + HOUR_MS, now),)


class TestSealedHours:
    B = D + 10 * HOUR_MS  # the boundary

    def test_whole_speed_hours_with_a_holding_seal_read_it(self) -> None:
        """Sealed hours are read from their seals, the others per partition; minutes and the
        open end are unchanged."""
        now = self.B + 4 * HOUR_MS + 10 * MINUTE_MS
        sealed = {self.B, self.B + HOUR_MS, self.B + 3 * HOUR_MS, self.B + 4 * HOUR_MS}
        found = plan(MetricsQuery(self.B, now), self.B, now + MINUTE_MS, sealed)
        assert found.sealed_hours == (
            (self.B, self.B + 2 * HOUR_MS),
            (self.B + 3 * HOUR_MS, self.B + 4 * HOUR_MS),
        )
        assert found.speed_hours == ((self.B + 2 * HOUR_MS, self.B + 3 * HOUR_MS),)
        assert found.speed_minutes == ((self.B + 4 * HOUR_MS, now),)

    def test_no_seal_changes_nothing(self) -> None:
        """Without seals the plan is the partition documents' plan."""
        query = MetricsQuery(self.B, self.B + 3 * HOUR_MS)
        assert plan(query, self.B, None, ()) == plan(query, self.B)
        assert plan(query, self.B).sealed_hours == ()


class TestOpenEnd:
    B = D + 10 * HOUR_MS  # the boundary

    def test_a_range_reaching_past_the_newest_data_reads_its_last_hour_whole(self) -> None:
        """Up to now, nothing newer folded: the unfinished hour is its hour rollup."""
        now = self.B + HOUR_MS + 42 * MINUTE_MS + 5
        newest_end = self.B + HOUR_MS + 42 * MINUTE_MS  # the newest minute ends before `now`
        found = plan(MetricsQuery(now - DAY_MS, now, group_by=("url",)), self.B, newest_end)
        assert found.speed_hours == ((self.B, self.B + 2 * HOUR_MS),)
        assert found.speed_minutes == ()
        assert found.open_end is True

    def test_data_past_the_range_keeps_the_minutes(self) -> None:
        """Newer minutes exist (the range ends before now): the hour would count them."""
        to = self.B + HOUR_MS + 20 * MINUTE_MS
        found = plan(MetricsQuery(self.B, to), self.B, to + MINUTE_MS)
        assert found.speed_minutes == ((self.B + HOUR_MS, to),)
        assert found.open_end is False

    def test_the_newest_minute_inside_the_range_counts_whole(self) -> None:
        """A minute counts when it starts in the range: newest minute starting before `to`."""
        to = self.B + 20 * MINUTE_MS + 1  # the minute at +20 starts inside
        found = plan(MetricsQuery(self.B, to), self.B, self.B + 21 * MINUTE_MS)
        assert found.speed_hours == ((self.B, self.B + HOUR_MS),)
        assert found.open_end is True

    def test_a_range_starting_inside_the_hour_stays_minutes(self) -> None:
        """The realtime last 5 minutes: its minutes, whatever the newest data."""
        now = self.B + 30 * MINUTE_MS
        found = plan(MetricsQuery(now - 5 * MINUTE_MS, now), self.B, now)
        assert found.speed_minutes == ((now - 5 * MINUTE_MS, now),)
        assert found.open_end is False
