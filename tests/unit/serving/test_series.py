"""The series planner and its buckets (pure)."""

from __future__ import annotations

import pytest

from clickstream.times import DAY_MS, HOUR_MS, MINUTE_MS
from indexing.views import LEVEL_ALL
from serving.errors import QueryError, RangeRuleError
from serving.plan import Plan
from serving.series import MAX_POINTS, Point, bucket_of, bucket_starts, points, series_plan

D = 20_000 * DAY_MS  # a UTC midnight


class TestBucketOf:
    @pytest.mark.parametrize(
        ("length", "expected"),
        [
            (30 * MINUTE_MS, "minute"),
            (3 * HOUR_MS, "minute"),
            (3 * HOUR_MS + 1, "hour"),
            (DAY_MS, "hour"),
            (3 * DAY_MS, "hour"),
            (7 * DAY_MS, "day"),
            (30 * DAY_MS, "day"),
        ],
    )
    def test_auto_follows_the_length(self, length: int, expected: str) -> None:
        assert bucket_of(None, D, D + length) == expected
        assert bucket_of("auto", D, D + length) == expected

    def test_a_named_bucket_is_kept_while_it_fits(self) -> None:
        assert bucket_of("Hour", D, D + 30 * DAY_MS) == "hour"
        assert bucket_of("minute", D, D + MAX_POINTS * MINUTE_MS) == "minute"

    def test_too_many_points_is_a_range_rule(self) -> None:
        with pytest.raises(RangeRuleError, match="1501 points"):
            bucket_of("minute", D, D + (MAX_POINTS + 1) * MINUTE_MS)

    def test_an_unknown_bucket_names_the_choices(self) -> None:
        with pytest.raises(QueryError, match="auto, minute, hour, day") as raised:
            bucket_of("week", D, D + DAY_MS)
        assert not isinstance(raised.value, RangeRuleError)
        assert raised.value.parameter == "bucket"


def test_bucket_starts_are_utc_aligned_and_cover_the_range() -> None:
    assert bucket_starts(D + 90 * MINUTE_MS, D + 3 * HOUR_MS + 1, HOUR_MS) == [
        D + HOUR_MS,
        D + 2 * HOUR_MS,
        D + 3 * HOUR_MS,
    ]


BASE = Plan(
    LEVEL_ALL,
    hours=((D + 20 * HOUR_MS, D + DAY_MS),),
    quarters=((D + 12 * HOUR_MS, D + 18 * HOUR_MS),),
    days=((D + DAY_MS, D + 3 * DAY_MS),),
    speed_hours=((D + 3 * DAY_MS + HOUR_MS, D + 3 * DAY_MS + 2 * HOUR_MS),),
    sealed_hours=((D + 3 * DAY_MS, D + 3 * DAY_MS + HOUR_MS),),
    speed_minutes=((D + 3 * DAY_MS + 2 * HOUR_MS, D + 3 * DAY_MS + 2 * HOUR_MS + 5 * MINUTE_MS),),
    open_end=True,
)


class TestSeriesPlan:
    def test_days_keep_the_plan(self) -> None:
        assert series_plan(BASE, "day") == BASE

    def test_hours_read_the_batch_part_as_hours(self) -> None:
        found = series_plan(BASE, "hour")
        assert found.hours == (
            (D + 12 * HOUR_MS, D + 18 * HOUR_MS),
            (D + 20 * HOUR_MS, D + 3 * DAY_MS),
        )
        assert (found.quarters, found.days) == ((), ())
        assert found.speed_hours == BASE.speed_hours
        assert found.sealed_hours == BASE.sealed_hours
        assert found.open_end

    def test_minutes_read_the_speed_part_as_minutes(self) -> None:
        found = series_plan(BASE, "minute")
        end = D + 3 * DAY_MS + 2 * HOUR_MS + 5 * MINUTE_MS
        assert found.speed_minutes == ((D + 3 * DAY_MS, end),)
        assert (found.speed_hours, found.sealed_hours) == ((), ())
        assert found.hours == series_plan(BASE, "hour").hours
        assert not found.open_end


def test_points_fill_every_bucket_and_keep_the_layers_apart() -> None:
    found = points(
        D + 30 * MINUTE_MS,
        D + 3 * HOUR_MS,
        "hour",
        batch={D: (5, 1)},
        speed={D + 2 * HOUR_MS: (7, 2)},
    )
    assert found == [
        Point(D, 5, 1, 0, 0),
        Point(D + HOUR_MS),
        Point(D + 2 * HOUR_MS, 0, 0, 7, 2),
    ]
    assert [(p.clicks, p.bot_clicks) for p in found] == [(5, 1), (0, 0), (7, 2)]
