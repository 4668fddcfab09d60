"""The time boundary's pure parts: alias filters and actions, reading it back, what to prune."""

from __future__ import annotations

from datetime import UTC, datetime

from clickstream.settings import ElasticsearchSettings
from indexing.boundary import (
    alias_actions,
    indices_to_prune,
    speed_index_span,
)
from indexing.templates import template_bodies
from indexing.views import (
    GRAIN_DAY,
    GRAIN_HOUR,
    LEVEL_ALL,
    LEVEL_COUNTRY,
    LEVEL_URL,
    LEVEL_URL_COUNTRY,
    batch_filter,
    boundary_of,
    cube_id,
    cube_index,
    speed_filter,
)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


BOUNDARY = ms("2026-11-22T10:00:00")


class TestFilters:
    def test_batch_filter_is_strictly_before(self) -> None:
        """The batch index shows hours before the boundary only."""
        assert batch_filter(BOUNDARY) == {
            "range": {"start": {"lt": BOUNDARY, "format": "epoch_millis"}}
        }

    def test_speed_filter_is_at_or_after(self) -> None:
        """Speed indices show their (url, country, minute) documents from the boundary on."""
        assert speed_filter(BOUNDARY) == {
            "bool": {
                "filter": [
                    {"term": {"level": "url_country"}},
                    {"term": {"grain": "minute"}},
                    {"range": {"start": {"gte": BOUNDARY, "format": "epoch_millis"}}},
                ]
            }
        }

    def test_speed_filter_without_a_boundary_still_hides_the_rollups(self) -> None:
        """Before the first batch run every minute shows, but never the speed rollups: the
        alias's readers (Kibana) would count each click eight times."""
        assert speed_filter(None) == {
            "bool": {"filter": [{"term": {"level": "url_country"}}, {"term": {"grain": "minute"}}]}
        }

    def test_boundary_is_read_back_from_the_batch_filter(self) -> None:
        """What batch_filter writes, boundary_of reads."""
        assert boundary_of(batch_filter(BOUNDARY)) == BOUNDARY

    def test_other_filters_hold_no_boundary(self) -> None:
        """An unfiltered alias or another shape yields None."""
        assert boundary_of(None) is None
        assert boundary_of({}) is None
        assert boundary_of({"term": {"url": "x"}}) is None
        assert boundary_of(speed_filter(BOUNDARY)) is None


class TestAliasActions:
    def test_one_request_switches_batch_and_every_speed_index(self) -> None:
        """The batch index gets `< boundary`, each speed index `>= boundary`, in one list."""
        actions = alias_actions("p", ["p-speed-2026.11.22", "p-speed-2026.11.21"], BOUNDARY)
        assert actions == [
            {"add": {"index": "p-batch-v1", "alias": "p-views", "filter": batch_filter(BOUNDARY)}},
            {
                "add": {
                    "index": "p-speed-2026.11.21",
                    "alias": "p-views",
                    "filter": speed_filter(BOUNDARY),
                }
            },
            {
                "add": {
                    "index": "p-speed-2026.11.22",
                    "alias": "p-views",
                    "filter": speed_filter(BOUNDARY),
                }
            },
        ]


class TestSpeedTemplateAlias:
    def test_minutes_only_before_the_first_batch_run(self) -> None:
        """With no boundary, a new speed index joins the alias showing its minute views."""
        body = template_bodies(ElasticsearchSettings(index_prefix="p"))["p-speed"]
        assert body["template"]["aliases"] == {"p-views": {"filter": speed_filter(None)}}

    def test_filtered_from_the_boundary(self) -> None:
        """With a boundary, a new speed index joins the alias filtered from it."""
        body = template_bodies(ElasticsearchSettings(index_prefix="p"), BOUNDARY)["p-speed"]
        assert body["template"]["aliases"] == {"p-views": {"filter": speed_filter(BOUNDARY)}}

    def test_batch_template_has_no_alias(self) -> None:
        """The batch index joins the alias only with a filter, when the boundary moves."""
        body = template_bodies(ElasticsearchSettings(index_prefix="p"), BOUNDARY)["p-batch"]
        assert "aliases" not in body["template"]


class TestPrune:
    def test_day_of_a_speed_index(self) -> None:
        """`{prefix}-speed-YYYY.MM.DD` holds that UTC day; other names hold none."""
        day = ms("2026-11-22T00:00:00")
        assert speed_index_span("p", "p-speed-2026.11.22") == (day, day + 86_400_000)
        assert speed_index_span("p", "p-sealed-2026.11.22", "sealed") == (day, day + 86_400_000)
        assert speed_index_span("p", "q-speed-2026.11.22") is None
        assert speed_index_span("p", "p-speed-2026.02.30") is None
        assert speed_index_span("p", "p-speed-2026.11.22-old") is None
        assert speed_index_span("a.b", "axb-speed-2026.11.22") is None

    def test_only_days_wholly_behind_by_keep_days_go(self) -> None:
        """keep 1: a day ending at least one day before the boundary is dropped."""
        indices = [f"p-speed-2026.11.{day}" for day in (19, 20, 21, 22)]
        boundary = ms("2026-11-22T10:00:00")
        # 11.20 ends 11.21 00:00, 34 h before; 11.21 ends 10 h before (kept); 11.22 is current.
        assert indices_to_prune("p", indices, boundary, keep_days=1) == [
            "p-speed-2026.11.19",
            "p-speed-2026.11.20",
        ]
        assert indices_to_prune("p", indices, boundary, keep_days=0) == [
            "p-speed-2026.11.19",
            "p-speed-2026.11.20",
            "p-speed-2026.11.21",
        ]
        assert indices_to_prune("p", indices, boundary, keep_days=5) == []

    def test_a_day_ending_exactly_at_the_cutoff_goes(self) -> None:
        """The boundary at midnight with keep 0 drops the day that just ended."""
        midnight = ms("2026-11-22T00:00:00")
        assert indices_to_prune("p", ["p-speed-2026.11.21"], midnight, 0) == ["p-speed-2026.11.21"]
        assert indices_to_prune("p", ["p-speed-2026.11.21"], midnight - 1, 0) == []
        assert indices_to_prune("p", ["p-speed-2026.11.20"], midnight, 1) == ["p-speed-2026.11.20"]
        assert indices_to_prune("p", ["p-speed-2026.11.20"], midnight - 1, 1) == []

    def test_hourly_minute_indices_go_hours_behind(self) -> None:
        """`{prefix}-speed-YYYY.MM.DD.HH` holds that hour's minute rollups: dropped once the
        hour ends minute_keep_hours before the boundary, while the day's index stays."""
        assert speed_index_span("p", "p-speed-2026.11.22.07") == (
            ms("2026-11-22T07:00:00"),
            ms("2026-11-22T08:00:00"),
        )
        assert speed_index_span("p", "p-speed-2026.11.22.24") is None
        names = [f"p-speed-2026.11.22.{hour:02d}" for hour in (7, 8, 9, 10)]
        names.append("p-speed-2026.11.22")
        boundary = ms("2026-11-22T10:00:00")
        assert indices_to_prune("p", names, boundary, keep_days=1, minute_keep_hours=1) == [
            "p-speed-2026.11.22.07",
            "p-speed-2026.11.22.08",
        ]
        assert indices_to_prune("p", names, boundary, keep_days=1, minute_keep_hours=0) == [
            "p-speed-2026.11.22.07",
            "p-speed-2026.11.22.08",
            "p-speed-2026.11.22.09",
        ]

    def test_foreign_indices_are_never_pruned(self) -> None:
        """Names not of this prefix's speed pattern are left alone."""
        names = ["p-batch-v1", "p-speed-x", "other-speed-2020.01.01", "p-state"]
        assert indices_to_prune("p", names, BOUNDARY, 0) == []


class TestCube:
    def test_index_is_outside_the_alias_pattern(self) -> None:
        """The cube is its own index, not a view index: the alias never counts it twice."""
        assert cube_index("p") == "p-cube-v1"
        assert not cube_index("p").startswith(("p-batch-", "p-speed-"))

    def test_ids_are_deterministic_and_distinct_per_level_and_grain(self) -> None:
        """Same key, same id; a url and a country spelt alike at different levels differ, and
        the hour and the day starting at the same instant differ."""
        hour = ms("2026-11-22T00:00:00")
        same = cube_id(LEVEL_URL, GRAIN_HOUR, "u", None, hour)
        assert same == cube_id(LEVEL_URL, GRAIN_HOUR, "u", None, hour)
        ids = {
            cube_id(LEVEL_URL, GRAIN_HOUR, "DE", None, hour),
            cube_id(LEVEL_COUNTRY, GRAIN_HOUR, None, "DE", hour),
            cube_id(LEVEL_ALL, GRAIN_HOUR, None, None, hour),
            cube_id(LEVEL_ALL, GRAIN_HOUR, None, None, hour + 3_600_000),
            cube_id(LEVEL_ALL, GRAIN_DAY, None, None, hour),
            cube_id(LEVEL_URL_COUNTRY, GRAIN_DAY, "DE", "DE", hour),
        }
        assert len(ids) == 6
