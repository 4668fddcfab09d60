"""The batch job's part of the seam, end to end: the cube's rollups (every level, hour, quarter
day and day grain) equal the truth, the boundary moves, the speed days behind it are pruned."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan
from pyspark.sql import SparkSession

from clickstream.settings import IngestSettings, Settings
from clickstream.times import DAY_MS, HOUR_MS, MINUTE_MS
from indexing.boundary import speed_indices
from indexing.templates import read_boundary
from indexing.views import (
    COARSE_LEVELS,
    GRAIN_DAY,
    GRAIN_HOUR,
    GRAIN_QUARTER_DAY,
    LEVEL_KEYS,
    cube_id,
    cube_index,
)
from processing.job import run_batch
from serving.answer import Answer
from serving.params import MetricsQuery
from serving.service import MetricsService
from tests.integration.helpers import Spawn
from tests.paths import GEO_DB
from traffic.generate import Traffic, TrafficSpec, generate, publish
from traffic.population import GeoSample
from traffic.truth import GroupTruth

pytestmark = pytest.mark.integration

Measures = tuple[int, int, int, int, int]


def day_of_traffic(now_ms: int, events: int, seed: int) -> tuple[int, Traffic]:
    """Generated traffic spread over the whole UTC day before yesterday (complete, and well
    inside the accepted event age)."""
    day = now_ms - now_ms % DAY_MS - 2 * DAY_MS
    spec = TrafficSpec(
        start_ms=day,
        session_timeout_ms=IngestSettings().session_timeout_ms,
        events=events,
        hours=24,
        late_share=0,  # late deliveries land past the day's end
    )
    return day, generate(spec, seed=seed, geo=GeoSample.from_mmdb([GEO_DB], seed=seed))


def expected_cube(groups: list[GroupTruth]) -> dict[str, Measures]:
    """Rollup id -> (clicks, bot clicks, unique users, time-spent sum, count), from the truth:
    sums add up, users are a union of each group's distinct users."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    users: dict[str, set[str]] = defaultdict(set)
    for group in groups:
        assert group.users is not None
        for grain, size, levels in (
            (GRAIN_HOUR, HOUR_MS, COARSE_LEVELS),
            (GRAIN_QUARTER_DAY, 6 * HOUR_MS, tuple(LEVEL_KEYS)),
            (GRAIN_DAY, DAY_MS, tuple(LEVEL_KEYS)),
        ):
            start = group.hour_ms - group.hour_ms % size
            for level in levels:
                keys = LEVEL_KEYS[level]
                url = group.url if "url" in keys else None
                country = group.country if "country" in keys else None
                rollup = cube_id(level, grain, url, country, start)
                row = sums[rollup]
                row[0] += group.clicks
                row[1] += group.bot_clicks
                row[2] += group.time_spent_sum_ms
                row[3] += group.time_spent_count
                users[rollup] |= group.users
    return {key: (row[0], row[1], len(users[key]), row[2], row[3]) for key, row in sums.items()}


def measured_groups(answer: Answer, key: str) -> dict[str | None, tuple[int, int, bool]]:
    """Per group (by its ``key``, url or country): clicks, unique users, whether exact."""
    return {
        getattr(g, key): (
            g.metrics.clicks,
            g.metrics.unique_users.value,
            g.metrics.unique_users.exact,
        )
        for g in answer.groups
    }


def expected_groups(
    truth: dict[str, Measures], keys: Iterable[str | None], rollup: Callable[[str | None], str]
) -> dict[str | None, tuple[int, int, bool]]:
    """What :func:`measured_groups` must be: each group's rollup's clicks and users, exact."""
    return {key: (truth[rollup(key)][0], truth[rollup(key)][2], True) for key in keys}


def stored_cube(client: Elasticsearch, index: str) -> dict[str, dict[str, Any]]:
    """Every rollup document by id."""
    client.indices.refresh(index=index)
    return {
        hit["_id"]: hit["_source"]
        for hit in scan(client, index=index, query={"query": {"match_all": {}}})
    }


def test_batch_writes_the_cube_moves_the_boundary_and_prunes(
    pipeline: Settings, spawn: Spawn, views: Elasticsearch, spark: SparkSession
) -> None:
    """Every rollup (coarse levels per hour; every level per quarter day and day) equals the
    truth, exact
    unique users included; the boundary is the watermark; a speed day far behind it is
    dropped; the cube stays out of the readers' alias (ids are deterministic, so a re-run
    replaces: tests/unit/indexing/test_boundary.py)."""
    now = int(time.time() * 1000)
    day, traffic = day_of_traffic(now, events=3000, seed=41)
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    spawn("u", "--exit-when-idle", "3").finish()
    prefix = pipeline.elasticsearch.index_prefix
    old_day = f"{prefix}-speed-2020.01.01"
    views.index(index=old_day, document={"url": "x", "country": "ZZ", "start": 1577880000000})

    lines: list[str] = []
    # A day of 3,000 events: 6-hour scans keep the Spark tasks few (16 buckets x 5 slices).
    batch = pipeline.batch.model_copy(update={"time_slice_hours": 6})
    settings = pipeline.model_copy(update={"batch": batch})
    result = run_batch(spark, settings, day, day + DAY_MS, progress=lines.append)
    rolled = [line.split(":")[0] for line in lines if " rollups: " in line]
    assert rolled == ["quarter_day rollups", "day rollups"]

    index = cube_index(prefix)
    stored = stored_cube(views, index)
    truth = expected_cube(list(traffic.truth.groups))
    measured = {
        key: (
            doc["clicks"],
            doc["bot_clicks"],
            doc["unique_users"],
            doc["time_spent_sum_ms"],
            doc["time_spent_count"],
        )
        for key, doc in stored.items()
    }
    assert measured == truth
    for doc in stored.values():
        keys = LEVEL_KEYS[doc["level"]]
        assert (doc.get("url") is None) == ("url" not in keys)
        assert (doc.get("country") is None) == ("country" not in keys)
    day_all = stored[cube_id("all", GRAIN_DAY, None, None, day)]
    assert day_all["clicks"] == traffic.truth.summary.clicks

    assert result.boundary_ms == day + DAY_MS
    assert read_boundary(views, prefix) == day + DAY_MS
    assert old_day in result.pruned
    assert old_day not in speed_indices(views, prefix)
    assert not views.indices.exists_alias(name=f"{prefix}-views", index=index)
    assert views.count(index=index)["count"] == len(truth)  # nothing besides the rollups

    # The serving layer reads the coarsest level: a whole day is one rollup per group, exact.
    service = MetricsService(settings)
    try:
        whole = service.query(MetricsQuery(day, day + DAY_MS))
        by_country = service.query(MetricsQuery(day, day + DAY_MS, group_by=("country",)))
        check_a_cut_day(service, traffic, day)
        check_a_quarter_day(service, truth, day + 6 * HOUR_MS)
    finally:
        service.close()
    everything = truth[cube_id("all", GRAIN_DAY, None, None, day)]
    assert whole.total.documents == 1
    assert (whole.total.clicks, whole.total.unique_users.value) == (everything[0], everything[2])
    assert whole.total.unique_users.exact
    assert whole.total.time_spent_sum_ms == everything[3]
    countries = measured_groups(by_country, "country")
    assert countries == expected_groups(
        truth, countries, lambda country: cube_id("country", GRAIN_DAY, None, country, day)
    )
    assert by_country.group_count == sum(
        1 for g in stored.values() if g["level"] == "country" and g["grain"] == GRAIN_DAY
    )


def check_a_cut_day(service: MetricsService, traffic: Traffic, day: int) -> None:
    """From 01:30 to midnight: the hours that start in the range, read at the (all, all) level
    as 4 hours (02:00 to 06:00) and 3 quarter days; an estimate of the users."""
    cut = service.query(MetricsQuery(day + 90 * MINUTE_MS, day + DAY_MS))
    later = [g for g in traffic.truth.groups if g.hour_ms >= day + 2 * HOUR_MS]
    assert cut.total.clicks == sum(g.clicks for g in later)
    assert cut.total.documents == 7
    assert not cut.total.unique_users.exact


def check_a_quarter_day(service: MetricsService, truth: dict[str, Measures], start: int) -> None:
    """One whole quarter day by url: one rollup per url, exact, and the total too."""
    quarter = service.query(MetricsQuery(start, start + 6 * HOUR_MS, group_by=("url",)))
    urls = measured_groups(quarter, "url")
    assert urls == expected_groups(
        truth, urls, lambda url: cube_id("url", GRAIN_QUARTER_DAY, url, None, start)
    )
    assert quarter.total.unique_users.exact
    assert quarter.total.documents == 1
