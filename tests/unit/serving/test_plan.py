"""The planner: the coarsest documents that answer a query, tiled across the boundary."""

from __future__ import annotations

import pytest

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
        read hours; the speed views start at the boundary."""
        query = MetricsQuery(D - 5 * HOUR_MS, D + 30 * DAY_MS + 90 * MINUTE_MS)
        boundary = D + 30 * DAY_MS + HOUR_MS
        assert plan(query, boundary) == Plan(
            LEVEL_ALL,
            hours=((D - 5 * HOUR_MS, D), (D + 30 * DAY_MS, boundary)),
            days=((D, D + 30 * DAY_MS),),
            speed_from=boundary,
        )

    def test_an_hour_counts_when_it_starts_in_the_range(self) -> None:
        """A range starting mid-hour skips that hour; one ending mid-hour keeps it."""
        query = MetricsQuery(D + 30 * MINUTE_MS, D + 2 * HOUR_MS + 30 * MINUTE_MS)
        assert plan(query, D + DAY_MS).hours == ((D + HOUR_MS, D + 3 * HOUR_MS),)

    def test_no_batch_run_yet_is_all_speed(self) -> None:
        """Before the first batch run the speed layer holds everything."""
        query = MetricsQuery(D, D + 3 * DAY_MS)
        assert plan(query, None) == Plan(LEVEL_ALL, (), (), D)

    def test_a_range_after_the_boundary_is_speed_only(self) -> None:
        """Nothing behind the boundary: no batch part."""
        query = MetricsQuery(D + 2 * HOUR_MS, D + 3 * HOUR_MS)
        assert plan(query, D + HOUR_MS) == Plan(LEVEL_ALL, (), (), D + 2 * HOUR_MS)

    def test_a_range_before_the_boundary_has_no_speed_part(self) -> None:
        """One whole day behind the boundary: one day rollup per group, nothing else."""
        query = MetricsQuery(D, D + DAY_MS, group_by=("url",))
        assert plan(query, D + 2 * DAY_MS) == Plan(LEVEL_URL, (), ((D, D + DAY_MS),), None)

    def test_less_than_a_day_is_hours(self) -> None:
        """No whole day inside: hours only."""
        query = MetricsQuery(D + HOUR_MS, D + 5 * HOUR_MS)
        assert plan(query, D + DAY_MS).hours == ((D + HOUR_MS, D + 5 * HOUR_MS),)
        assert plan(query, D + DAY_MS).days == ()
